"""Step memory: estimate a training step's peak from small probe steps, and stop early when it cannot fit."""
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import ConfigError

HEADROOM = 0.9  # use at most this share of the memory the device has available
PROBE_BATCH = 4  # images in the first probe step; the second has twice as many
BACKWARD_OVERHEAD = 1.2  # CPU peak / bytes saved for backward (gradients, temporaries): 1.0-1.17 measured
MIN_BATCH = 2  # the NCE loss needs another image in the batch to draw negatives from
CGROUP_ROOT = Path("/sys/fs/cgroup")  # where Linux shows this container's memory limit
_UNLIMITED = 1 << 60  # bytes; cgroup v1 reports "no limit" as a number close to 2**63


@dataclass(frozen=True)
class StepMemory:
    """Peak bytes of one training step as a line in the batch size: fixed + per_image * batch."""

    fixed: float  # bytes that do not grow with the batch (weights, their gradients, optimizer state, ...)
    per_image: float  # bytes each image of the batch adds (activations kept for backward, and their gradients)
    device: torch.device

    def bytes_at(self, batch_size):
        return int(max(self.fixed + self.per_image * batch_size, 0))


def format_bytes(n):
    """1.56e10 -> '15.6 GB' (decimal units, as `free -h` and nvidia-smi print them, roughly)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _meminfo(key):
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # the file counts kB
    except OSError:
        pass
    return None


def _read_int(path):
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max" (cgroup v2, no limit) -> None


def _stat_value(path, key):
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def _cgroup_room():
    """Bytes left under this process's container memory limit (cgroup v2, then v1), or None without a limit.

    In a container MemAvailable shows the host's memory, but the kernel kills the process at the container's limit.
    Reclaimable page cache (inactive files) counts as room, as it does in MemAvailable.
    """
    root = CGROUP_ROOT
    for limit_file, usage_file, stat_key in (("memory.max", "memory.current", "inactive_file"),
                                             ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes",
                                              "total_inactive_file")):
        limit, usage = _read_int(root / limit_file), _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < _UNLIMITED:
            cache = _stat_value((root / usage_file).parent / "memory.stat", stat_key)
            return max(limit - usage + cache, 0)
    return None


def available_bytes(device, cached=True):
    """Bytes a training step on `device` can still take, or None when the platform does not say.

    cpu: MemAvailable (Linux), capped by a container's memory limit; else free physical pages (os.sysconf).
    cuda: free device memory plus what this process's tensors hold (a probe's peak counts them too), plus with
    `cached` the blocks PyTorch's allocator keeps cached (reusable by this process only: pass cached=False when the
    steps will run in other processes, e.g. trials in worker processes or Ray actors).
    mps: the recommended working set minus what the Metal driver has allocated.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        held = torch.cuda.memory_reserved(device) if cached else torch.cuda.memory_allocated(device)
        return int(free + held)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        if mps is None or not hasattr(mps, "recommended_max_memory"):
            return None
        return max(int(mps.recommended_max_memory() - mps.driver_allocated_memory()), 0)
    room = _meminfo("MemAvailable")
    if room is None:
        try:
            room = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # macOS has no SC_AVPHYS_PAGES
            room = None
    cgroup = _cgroup_room()
    if cgroup is not None:
        room = cgroup if room is None else min(room, cgroup)
    return room


def _saved_for_backward(step_fn, batch):
    """Bytes one step keeps for its backward pass, each storage counted once (views share their base's)."""
    storages = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
        except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, some subclasses)
            return t
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step_fn(batch)
    return sum(storages.values())


def _step_peak(step_fn, batch, device):
    """Peak bytes of one step at `batch`: the allocator's peak on CUDA, an estimate from saved tensors elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step_fn(batch)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)  # absolute: resident tensors (weights, bank, images) too
    # CPU and MPS report no peak: what backward needs, plus its gradients and temporaries. What is resident
    # already (weights, bank, cached images) is already out of MemAvailable.
    return BACKWARD_OVERHEAD * _saved_for_backward(step_fn, batch)


def probe_step(step_fn, device, probe_batch=PROBE_BATCH, batch_size=None, params=()):
    """Measure step_fn at `probe_batch` and 2 * `probe_batch` images and fit a line: a StepMemory.

    step_fn(b) runs one full training step (forward, backward, optimizer step) on b images. It really trains:
    give it a throwaway copy of the model and optimizer. A first step at `probe_batch` warms up (optimizer state,
    cuDNN's algorithm choice) and is not measured. When `batch_size` is at most 2 * `probe_batch` the step is
    measured at `batch_size` itself, with nothing to extrapolate. params: the model's parameters; off CUDA their
    gradients and one optimizer buffer each (SGD momentum) are added, which no saved tensor shows.
    """
    device = torch.device(device)
    state = 0 if device.type == "cuda" else 2 * sum(p.numel() * p.element_size() for p in params)
    step_fn(probe_batch)
    if batch_size is not None and batch_size <= 2 * probe_batch:
        return StepMemory(float(_step_peak(step_fn, batch_size, device) + state), 0.0, device)
    small = _step_peak(step_fn, probe_batch, device)
    large = _step_peak(step_fn, 2 * probe_batch, device)
    per_image = max((large - small) / probe_batch, 0.0)
    # Linear in the batch: activations are. The NCE negatives, (B, 2(B-1), D), grow as B^2 and are underestimated,
    # by about 134 MB at batch 256 with D=256, which BACKWARD_OVERHEAD covers many times over.
    return StepMemory(small - per_image * probe_batch + state, per_image, device)


def _suggest(bytes_needed, batch_size, per_image, budget):
    """The largest power of two below batch_size whose estimate fits the budget, or None."""
    if not batch_size or batch_size <= MIN_BATCH:
        return None
    # without a measured slope, assume all of it grows with the batch (optimistic where part of it is fixed)
    per_image = per_image if per_image is not None else bytes_needed / batch_size
    candidate = 1 << ((batch_size - 1).bit_length() - 1)  # largest power of two below batch_size
    while candidate >= MIN_BATCH:
        if bytes_needed - (batch_size - candidate) * per_image <= budget:
            return candidate
        candidate //= 2
    return None


def check_fits(bytes_needed, device, setting="BATCH_SIZE", *, batch_size=None, per_image=None, headroom=HEADROOM,
               available=None, network_hint=None):
    """Raise ConfigError (one line naming `setting` and a smaller value) when a step will not fit on `device`.

    available: bytes the device has (default: available_bytes(device)); when unknown the check passes.
    network_hint: what to lower when even the smallest batch would not fit (default: a smaller network, more memory).
    Returns the available bytes it compared against, or None.
    """
    device = torch.device(device)
    available = available_bytes(device) if available is None else available
    if available is None:
        return None
    budget = headroom * available
    if bytes_needed <= budget:
        return available
    shown = f"{setting}={batch_size}" if batch_size else setting
    message = (f"{shown}: one training step needs about {format_bytes(bytes_needed)} on {device}, "
               f"but only {format_bytes(available)} is available ({headroom:.0%} usable)")
    smaller = _suggest(bytes_needed, batch_size, per_image, budget)
    if smaller is not None:
        message += f"; try --{setting}={smaller}"
    else:
        hint = network_hint or "use a smaller network or a machine with more memory"
        message += f"; even {setting}={MIN_BATCH} would not fit: {hint}"
    raise ConfigError(message)


def memory_line(bytes_needed, device, available=None):
    """'step memory: about 2.0 GB per step on cpu (18.9 GB available)' — printed beside the device."""
    available = available_bytes(device) if available is None else available
    room = f"{format_bytes(available)} available" if available is not None else "available memory unknown"
    return f"step memory: about {format_bytes(bytes_needed)} per step on {torch.device(device)} ({room})"


@dataclass(frozen=True, kw_only=True)
class FitCheck:
    """How check_step judges and tells whether a step fits: the setting its one-line error names, how many such steps
    share the device, what to lower when no batch fits, and where the memory line goes."""

    setting: str = "BATCH_SIZE"
    sharing: int = 1  # steps running at once on the device (trials in parallel, processes on one machine)
    available: int | None = None  # bytes the device has; None: measure them (available_bytes)
    network_hint: str | None = None  # None: check_fits's default (a smaller network, more memory)
    log: Callable[[str], object] = print
    note: str = ""  # appended to the memory line, e.g. " (pre-training)"


def check_step(mem, device, batch_size, check=FitCheck()):
    """Print the memory line of a measured step (StepMemory) at `batch_size`, check.sharing steps at a time on
    `device`; raise ConfigError (one line naming check.setting) when they cannot fit. Returns the bytes needed."""
    need = mem.bytes_at(batch_size) * check.sharing
    available = available_bytes(device) if check.available is None else check.available
    shared = f" ({check.sharing} trials at a time)" if check.sharing > 1 else ""
    check.log(memory_line(need, device, available) + shared + check.note)
    check_fits(need, device, check.setting, batch_size=batch_size, per_image=mem.per_image * check.sharing,
               available=available, network_hint=check.network_hint)
    return need
