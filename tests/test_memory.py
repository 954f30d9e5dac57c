"""Step memory: probe steps extrapolate to the full batch; a step that cannot fit stops with a line naming BATCH_SIZE."""
import pytest
import torch
import torch.nn as nn

import common.memory as M
from common.config import ConfigError
from common.labeled import step_memory

IN, HIDDEN, OUT = 256, 512, 10  # toy MLP widths


def _toy_step():
    """A real training step on a toy MLP; returns (step_fn, calls, model)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    calls = []

    def step(b):
        calls.append(b)
        loss = model(torch.randn(b, IN)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, calls, model


def test_probe_extrapolates_the_toy_model_to_the_full_batch():
    step, calls, model = _toy_step()
    mem = M.probe_step(step, "cpu", probe_batch=4)
    assert calls == [4, 4, 8]  # one warm-up step, then the two probes: the full batch never runs
    # per image, backward keeps the input row and the ReLU output (the second Linear's input is the same storage)
    assert mem.per_image == pytest.approx(M.BACKWARD_OVERHEAD * (IN + HIDDEN) * 4, rel=0.02)
    for b in (64, 256):  # the line through two small probes meets a direct measurement far out
        direct = M.BACKWARD_OVERHEAD * M._saved_for_backward(step, b)
        assert mem.bytes_at(b) == pytest.approx(direct, rel=0.01)
    with_params = M.probe_step(step, "cpu", probe_batch=4, params=model.parameters())
    weights = sum(p.numel() * 4 for p in model.parameters())
    assert with_params.fixed - mem.fixed == pytest.approx(2 * weights, rel=0.01)  # gradient + momentum buffer


def test_a_small_batch_is_measured_directly():
    step, calls, _ = _toy_step()
    need = M.probe_step(step, "cpu", probe_batch=4, batch_size=6).bytes_at(6)
    assert calls == [4, 6]
    assert need == pytest.approx(M.BACKWARD_OVERHEAD * M._saved_for_backward(step, 6), rel=0.01)


def test_cuda_uses_the_allocator_peak(monkeypatch):
    """The CUDA path reads max_memory_allocated after each probe (faked here: no GPU on CI)."""
    peak = {}

    def step(b):
        peak["bytes"] = 1_000_000 + 3_000 * b  # resident + per image

    for name, fn in {"synchronize": lambda d=None: None, "reset_peak_memory_stats": lambda d=None: peak.clear(),
                     "max_memory_allocated": lambda d=None: peak["bytes"]}.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    mem = M.probe_step(step, torch.device("cuda"), probe_batch=4)
    assert mem.fixed == pytest.approx(1_000_000) and mem.per_image == pytest.approx(3_000)
    assert mem.bytes_at(256) == 1_000_000 + 3_000 * 256


def test_check_fits_stops_with_one_line_naming_batch_size(monkeypatch):
    gb = 10**9
    monkeypatch.setattr(M, "available_bytes", lambda device: 8 * gb)  # a small machine
    with pytest.raises(ConfigError) as err:
        M.check_fits(15.6 * gb, "cpu", batch_size=256, per_image=15.6 * gb / 256)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("BATCH_SIZE=256")
    assert "15.6 GB" in msg and "8.0 GB" in msg and "cpu" in msg
    assert msg.endswith("try --BATCH_SIZE=64")  # 128 would need 7.8 GB > 90% of 8 GB; 64 needs 3.9 GB

    with pytest.raises(ConfigError, match="even BATCH_SIZE=2 would not fit"):
        M.check_fits(15.6 * gb, "cpu", batch_size=256, per_image=1e6, available=1 * gb)  # the fixed part alone
    with pytest.raises(ConfigError, match=r"^NEGATIVES=100: .*try --NEGATIVES=32$"):
        M.check_fits(2 * gb, "cpu", "NEGATIVES", batch_size=100, available=1 * gb)  # proportional guess: 32 -> 0.64

    assert M.check_fits(3 * gb, "cpu", batch_size=256) == 8 * gb  # fits: returns what it compared against
    monkeypatch.setattr(M, "available_bytes", lambda device: None)
    assert M.check_fits(10**15, "cpu", batch_size=256) is None  # unknown memory: no check, no false alarm


def test_headroom_is_kept():
    with pytest.raises(ConfigError):
        M.check_fits(95, "cpu", batch_size=4, available=100)  # 95 > 90% of 100
    assert M.check_fits(90, "cpu", batch_size=4, available=100) == 100


def test_available_bytes_on_this_cpu():
    room = M.available_bytes("cpu")
    total = M._meminfo("MemTotal")
    assert isinstance(room, int) and 0 < room
    if total is not None:
        assert room <= total


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_container_limit_caps_available_memory(tmp_path, monkeypatch, version):
    mib = 2**20
    if version == "v2":
        (tmp_path / "memory.max").write_text(f"{512 * mib}\n")
        (tmp_path / "memory.current").write_text(f"{300 * mib}\n")
        (tmp_path / "memory.stat").write_text(f"anon 1\ninactive_file {100 * mib}\n")
    else:
        (tmp_path / "memory").mkdir()
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text(f"{512 * mib}\n")
        (tmp_path / "memory" / "memory.usage_in_bytes").write_text(f"{300 * mib}\n")
        (tmp_path / "memory" / "memory.stat").write_text(f"cache 5\ntotal_inactive_file {100 * mib}\n")
    monkeypatch.setattr(M, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(M, "_meminfo", lambda key: 16 * 2**30)  # the host's MemAvailable, as a container sees it
    assert M.available_bytes("cpu") == 312 * mib  # limit - usage + reclaimable cache, below the host's MemAvailable

    (tmp_path / "memory.max").write_text("max\n")  # v2 without a limit
    if version == "v1":
        (tmp_path / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert M.available_bytes("cpu") == 16 * 2**30


def test_memory_line_and_format():
    assert M.format_bytes(15.6e9) == "15.6 GB" and M.format_bytes(2_500_000) == "2.5 MB" and M.format_bytes(12) == "12 B"
    line = M.memory_line(2e9, "cpu", available=18.9e9)
    assert line == "step memory: about 2.0 GB per step on cpu (18.9 GB available)"


def test_cuda_available_counts_cached_blocks_only_for_this_process(monkeypatch):
    """A probe in the process that trains may reuse its allocator's cache; one whose steps run elsewhere (a worker,
    a Ray actor) counts only free memory plus its own live tensors (faked: no GPU on CI)."""
    gb = 10**9
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda d=None: (10 * gb, 80 * gb))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d=None: 6 * gb)  # cached blocks + live tensors
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: 1 * gb)  # live tensors (the images)
    assert M.available_bytes("cuda:0") == 16 * gb
    assert M.available_bytes("cuda:0", cached=False) == 11 * gb


def test_check_step_prints_and_stops(capsys):
    step, calls, model = _toy_step()
    lines = []
    mem = M.probe_step(step, "cpu", batch_size=6, params=model.parameters())
    M.check_step(mem, "cpu", 6, M.FitCheck(available=10**12, log=lines.append))
    assert calls == [4, 6] and mem.bytes_at(6) > 0 and lines[0].startswith("step memory: about")
    with pytest.raises(ConfigError, match=r"^BATCH_SIZE=64: .*(try --BATCH_SIZE=\d+|would not fit: lower IMAGE_SIZE)"):
        M.check_step(M.probe_step(step, "cpu", batch_size=64), "cpu", 64,
                     M.FitCheck(available=100_000, network_hint="lower IMAGE_SIZE", log=lines.append))
    with pytest.raises(ConfigError, match=r"^BATCH_SIZE=64: "):
        M.check_step(mem, "cpu", 64, M.FitCheck(sharing=2, available=1_000, log=lines.append))
    assert lines[-1].endswith("(2 trials at a time)")


def test_check_classifier_memory_names_the_networks_levers_when_no_batch_fits():
    """A labeled step on a 'device' of 1 kB: the line names BATCH_SIZE and, by default, IMAGE_SIZE / INIT_CHANNELS;
    the global RNG stream is as it was."""
    lines, rng = [], torch.get_rng_state()
    spec = step_memory.LabeledStep(image_size=8, n_classes=3)
    build = lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))  # noqa: E731
    with pytest.raises(ConfigError, match=r"^BATCH_SIZE=16: .*would not fit: lower IMAGE_SIZE or INIT_CHANNELS$"):
        step_memory.check_classifier_memory(build, spec, batch_size=16, device="cpu",
                                            check=M.FitCheck(available=1_000, log=lines.append))
    assert lines[0].startswith("step memory: about") and torch.equal(rng, torch.get_rng_state())
