"""Where and how tensors run: device choice, autocast precision and memory format, shared by search and eval."""
import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import ConfigError, parse_overrides
from common.machine import cpu_name
from common.runs import atomic_write_json

RUNTIME_FILE = "runtime.json"  # the resolved runtime a run started with, compared on resume

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors run: the device, the autocast dtype (None = fp32) and the memory format."""

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def inputs(self, x):
        """A batch (N, 3, H, W) on the device, in the model's memory format."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.to(self.device, non_blocking=True, memory_format=fmt)

    def place(self, model):
        return model.to(self.device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)

    def record(self):
        """What a run folder keeps to compare on resume: the resolved choices, not the 'auto' settings."""
        dtype = str(self.dtype).replace("torch.", "") if self.dtype is not None else "off"
        return {"device_type": self.device.type, "autocast": dtype, "channels_last": self.channels_last}

    def __str__(self):
        dtype = str(self.dtype).replace("torch.", "") if self.dtype is not None else "off"
        return f"{self.device}, autocast {dtype}, channels_last {'on' if self.channels_last else 'off'}"


def pick_device(name="auto"):
    """'auto' -> cuda, else mps, else cpu; an explicit device that is not there raises ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--DEVICE={name}: not a device; use auto, cpu, cuda, cuda:1 or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--DEVICE={name}: CUDA is not available here; use --DEVICE=auto or cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--DEVICE={name}: MPS is not available here; use --DEVICE=auto or cpu")
    return device


def device_preset(argv, defaults, gpu_preset, device_name="DEVICE", preset_name="PRESET"):
    """For scripts whose PRESET 'auto' means "the GPU preset on CUDA, else 'cpu'": argv with --PRESET=<resolved>.

    defaults: the script's constants (the names config_names() finds), read for PRESET and DEVICE."""
    given = parse_overrides(argv, defaults)
    preset = given.get(preset_name, defaults[preset_name])
    if preset == "auto":
        preset = gpu_preset if pick_device(given.get(device_name, defaults[device_name])).type == "cuda" else "cpu"
    return [*argv, f"--{preset_name}={preset}"]


def runtime(device="auto", amp="auto", channels_last="auto"):
    """Runtime from the settings. amp 'auto' = bf16 autocast on CUDA, off elsewhere; channels_last 'auto' = on for
    CUDA and the CPU (DARTS cells trained 1.3-1.7x faster in it on a 2-core CPU), off for MPS."""
    device = pick_device(device)
    if amp not in AMP_CHOICES:
        raise ConfigError(f"--AMP={amp}: choose one of {', '.join(AMP_CHOICES)}")
    if channels_last not in CHANNELS_LAST_CHOICES:
        raise ConfigError(f"--CHANNELS_LAST={channels_last}: choose one of {', '.join(CHANNELS_LAST_CHOICES)}")
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "fp16" and device.type == "cpu":
        raise ConfigError("--AMP=fp16 needs a GPU; use --AMP=bf16 or off on the CPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
    last = channels_last == "on" or (channels_last == "auto" and device.type in ("cuda", "cpu"))
    return Runtime(device, dtype, last)


def check_resumed_runtime(run_dir, rt, allow_change=False):
    """A new run records its resolved runtime; a resumed one must match it (a CUDA bf16 run resumed on a CPU would
    otherwise go on in fp32 mid-run) unless `allow_change` (ALLOW_RUNTIME_CHANGE) says so."""
    path = Path(run_dir) / RUNTIME_FILE
    now = rt.record()
    if path.exists():
        before = json.loads(path.read_text())
        differ = {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v}
        if differ and not allow_change:
            shown = ", ".join(f"{k} {a} then vs {b} now" for k, (a, b) in differ.items())
            raise ConfigError(f"{run_dir} was started with another runtime ({shown}); resume on the same kind of "
                              "device, or pass --ALLOW_RUNTIME_CHANGE=True to go on anyway")
        if not differ:
            return now
    atomic_write_json(path, now)
    return now


def device_name(device):
    """The GPU's name for a CUDA device, else the processor's: what a measured figure should be reported with."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
