"""Search-trial speed: a trial's training step against the bare network, with the loss's and the data path's shares.

    cd search && python benchmark.py                    # CPU: a small network; CUDA: the paper's network and batch
    cd search && python benchmark.py --TRIAL_EPOCHS=2   # also time real epochs on a 25,331-image synthetic cache

bound = the bare network (ContrastiveNet.forward: one backbone pass per view, whole image and 2 patches, so each
view has its own BatchNorm statistics; both linear heads; a plain mean loss, backward, SGD step) on pre-made float
tensors; trial = ContrastiveTrainer.step (views made on the device from the uint8 cache, the same per-view passes and
heads, BankNCE loss + bank update, SGD step). Both count source images (batch / step time; each source image gives
3 views). Bound and trial alternate round by round, so a change in the machine's load hits both sides alike. The
last line printed is one JSON object.
"""
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from common.arch import genotypes as G  # noqa: E402
from common.config import ConfigError, config_names, configure, format_config, run_cli  # noqa: E402
from common.contrastive.loss import BankNCE  # noqa: E402
from common.contrastive.trainer import ContrastiveSettings, ContrastiveTrainer, check_amp  # noqa: E402
from common.contrastive.views import ViewMaker  # noqa: E402
from common.device import device_name, device_preset, pick_device, runtime  # noqa: E402
from common.search.candidate import candidate  # noqa: E402

# -----------------------------------------------------------------------------
# what is trained (the PRESET for the device may change these; see PRESETS)
GENOTYPE = "CNAS_ISIC_s5"  # the candidate trained: a name in common/arch/genotypes.py, a best_genotype.json or a run folder
INIT_CHANNELS = 32  # C
LAYERS = 8  # cells; reductions at 1/3 and 2/3 depth
BATCH_SIZE = 256  # source images per step (each gives 3 views)
IMAGE_SIZE = 32  # px, side of the cached images and of every view
N_IMAGES = 25331  # synthetic uint8 images in the cache = memory bank rows (ISIC 2019's training set)
NEGATIVES = None  # negatives per image; None = 2 * (BATCH_SIZE - 1), as in the paper
PROJ_DIM = 256  # representation (bank row) size
LR = 1e-3  # SGD learning rate
MOMENTUM = 0.9  # SGD momentum
TAU = 0.07  # NCE temperature
BANK_MOMENTUM = 0.5  # memory bank EMA weight of the old entry
PATCH_WEIGHT = 0.5  # loss = w * NCE(bank, patches) + (1 - w) * NCE(bank, whole image)
# timing
WARMUP = 2  # untimed steps of each kind first (allocator, caches, cuDNN autotuning)
ROUNDS = 5  # rounds that each time every kind of step; the table shows medians over rounds
STEPS_PER_ROUND = 1  # timed network steps of each kind per round (the cheap loss/data parts repeat CHEAP_CALLS)
CHEAP_CALLS = 10  # timed calls per round of the loss alone and of the data path alone
NAIVE_ROUNDS = 3  # rounds of one per-sample reference loop call against CHEAP_CALLS vectorised calls
COMPARE_LAYOUT = True  # also time the bound in the other memory layout (an extra row per AMP mode, ROUNDS // 2 steps)
TRIAL_EPOCHS = 0  # > 0: also time fill_bank + this many real epochs over the N_IMAGES cache, per AMP mode
PROJECT_EPOCHS = 10  # epochs of a paper trial, for the projected seconds per trial
# system
DEVICE = "auto"  # 'auto' (cuda > mps > cpu) | 'cpu' | 'cuda' | 'cuda:1' | 'mps'
PRESET = "auto"  # 'auto' ('cuda' on a CUDA device, else 'cpu') | 'cpu' | 'cuda'
AMP = "auto"  # 'auto' (bf16 and off on CUDA, off elsewhere) | 'bf16' | 'fp16' (GPU only; loss-scaled) | 'off'
CHANNELS_LAST = True  # layout of the headline rows (NHWC; faster on CUDA and for depthwise convs on CPU)
THREADS = None  # CPU threads for torch (None = torch's default)
SEED = 0  # images, weights and every random draw
# -----------------------------------------------------------------------------
PRESETS = {
    "cuda": {},  # the constants above: the paper's network (C=32, 8 cells) and batch 256
    # sized to finish in about a minute on a 2-core CPU; the bank keeps ISIC 2019's size so nce_ms is real
    "cpu": dict(INIT_CHANNELS=16, LAYERS=5, BATCH_SIZE=64),
}
TARGETS = {"ratio": 0.8, "loss_share": 0.05, "data_share": 0.05, "naive_speedup": 10}  # issue 4's "done when"


# ---- configuration ---------------------------------------------------------------------------------------
def resolve_preset(argv):
    """PRESET 'auto' -> 'cuda' when DEVICE resolves to a CUDA device, else 'cpu'; returns argv naming it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return device_preset(argv, {k: globals()[k] for k in config_names(globals())}, "cuda")


def amp_modes(amp, device):
    """The AMP settings to measure: 'auto' -> ['bf16', 'off'] on CUDA (both), ['off'] elsewhere; else the one asked
    for, if contrastive training takes it (check_amp) and this device has it (runtime: fp16 needs a GPU)."""
    if amp == "auto":
        return ["bf16", "off"] if device.type == "cuda" else ["off"]
    runtime(str(device), check_amp(amp))
    return [amp]


def amp_dtype(rt):
    """The dtype the heads emit under this runtime's autocast (what BankNCE receives in a real step)."""
    with rt.autocast():
        return F.linear(torch.zeros(1, 1, device=rt.device), torch.zeros(1, 1, device=rt.device)).dtype


# ---- timing helpers --------------------------------------------------------------------------------------
def synchronize(device):
    """Wait for queued kernels (CUDA only: CPU work is already done when the call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, n, device):
    """Milliseconds per call of fn, over n calls, synchronised around the timed region."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000 / n


def interleaved(tasks, rounds, warmup, device):
    """{name: (fn, calls per round)} -> {name: median ms per call}.

    Each round times every task once, the order reversing every round, so a change in the machine's load
    while this runs reaches every task alike.
    """
    for fn, _ in tasks.values():
        for _ in range(warmup):
            fn()
    names, times = list(tasks), {name: [] for name in tasks}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn, calls = tasks[name]
            times[name].append(time_ms(fn, calls, device))
    return {name: statistics.median(t) for name, t in times.items()}


# ---- the pieces being timed ------------------------------------------------------------------------------
def synthetic_images(n, size, seed, device):
    """(N, S, S, 3) uint8 noise standing in for the decoded cache (the step's cost does not depend on content)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g).to(device)


def random_bank(n, dim, seed, device):
    """(N, D) unit rows, so the cosines (and the softmax) look like a filled bank's."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=g), dim=1).to(device)


def index_stream(n, batch, generator, device):
    """Endless batches of indices cut from fresh permutations (made outside the timed region, like an epoch's)."""
    while True:
        yield from torch.randperm(n, generator=generator, device=device)[: n - n % batch].split(batch)


def make_trainer(cfg, images, views, device, amp, channels_last):
    """A ContrastiveTrainer as a search trial builds one, its bank filled with random unit rows instead of fill_bank()."""
    genotype, _ = G.resolve(cfg["GENOTYPE"])
    settings = ContrastiveSettings(
        rt=runtime(str(device), amp, "on" if channels_last else "off"), batch_size=cfg["BATCH_SIZE"], lr=cfg["LR"],
        momentum=cfg["MOMENTUM"], weight_decay=0.0, tau=cfg["TAU"], bank_momentum=cfg["BANK_MOMENTUM"],
        patch_weight=cfg["PATCH_WEIGHT"], proj_dim=cfg["PROJ_DIM"], negatives_per_image=cfg["NEGATIVES"], seed=cfg["SEED"],
    )
    trainer = ContrastiveTrainer(candidate(genotype, cfg["INIT_CHANNELS"], cfg["LAYERS"]), images, views, settings)
    trainer.criterion.bank.vectors.copy_(random_bank(len(images), cfg["PROJ_DIM"], cfg["SEED"], device))
    return trainer


def bound_step(trainer, whole, patches):
    """The bare network's step: one backbone pass per view + both heads, a plain mean loss, backward, SGD step (through
    the trainer's gradient scaler, as its own step: a no-op unless fp16)."""
    rt = trainer.rt
    with rt.autocast():
        f_whole, f_patch = trainer.net(rt.inputs(whole), [rt.inputs(p) for p in patches])
    loss = f_whole.float().mean() + f_patch.float().mean()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()


def nce_step(criterion, idx, f_whole, f_patch, generator):
    """BankNCE forward + bank update + backward through the loss, down to the (leaf) features."""
    f_whole.grad = f_patch.grad = None
    criterion(idx, f_whole, f_patch, generator).backward()


# ---- the per-sample reference loop (what issue 4 compares the vectorised loss against) ------------------------
def naive_bank_nce(bank, idx, whole, patch, negatives, tau, patch_weight):
    """BankNCE's loss written as a plain loop over the batch: one image, one term, its K negatives at a time.

    bank (N, D) unit rows; idx (B,); whole, patch (B, D); negatives (B, K). Returns the scalar loss.
    """
    total = 0.0
    for i, row in enumerate(idx.tolist()):
        for weight, feats in ((patch_weight, patch), (1 - patch_weight, whole)):
            f = feats[i].float()
            f = f / f.norm().clamp_min(1e-12)  # (D,)
            pos = bank[row].dot(f) / tau  # cos(bank_i, f_i) / tau
            neg = bank[negatives[i]].mv(f) / tau  # (K,) cos(f_i, bank_j) / tau
            logits = torch.cat([pos.view(1), neg])
            total = total + weight * (torch.logsumexp(logits, 0) - logits[0])  # cross-entropy, positive = target
    return total / len(idx)


@torch.no_grad()
def naive_bank_update(bank, idx, whole, momentum):
    """The EMA bank update, one image at a time: bank_i <- normalise(m * bank_i + (1 - m) * normalise(f_i))."""
    for i, row in enumerate(idx.tolist()):
        f = whole[i].float()
        mixed = momentum * bank[row] + (1 - momentum) * f / f.norm().clamp_min(1e-12)
        bank[row] = mixed / mixed.norm().clamp_min(1e-12)


def naive_step(bank, idx, whole, patch, negatives, cfg):
    whole.grad = patch.grad = None
    naive_bank_nce(bank, idx, whole, patch, negatives, cfg["TAU"], cfg["PATCH_WEIGHT"]).backward()
    naive_bank_update(bank, idx, whole.detach(), cfg["BANK_MOMENTUM"])


def check_naive_matches(criterion, idx, seed, cfg):
    """Assert the vectorised BankNCE and the per-sample loop agree: loss, feature gradients and updated bank."""
    dev, b, d = idx.device, len(idx), criterion.bank.vectors.shape[1]
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(b, d, generator=g).to(dev).requires_grad_() for _ in range(2)]
    k = criterion.negatives_per_image or 2 * (b - 1)
    draw = torch.Generator(device=dev).manual_seed(seed)
    negatives = criterion.bank.sample_negatives(idx, k, draw)  # the draw BankNCE makes first, from the same state
    bank = criterion.bank.vectors.clone()

    loss = criterion(idx, feats[0], feats[1], torch.Generator(device=dev).manual_seed(seed))
    grads = torch.autograd.grad(loss, feats)
    ref_feats = [f.detach().clone().requires_grad_() for f in feats]
    ref = naive_bank_nce(bank, idx, ref_feats[0], ref_feats[1], negatives, cfg["TAU"], cfg["PATCH_WEIGHT"])
    ref_grads = torch.autograd.grad(ref, ref_feats)
    naive_bank_update(bank, idx, ref_feats[0].detach(), cfg["BANK_MOMENTUM"])

    diff = abs(loss.item() - ref.item())
    assert diff <= 1e-4 * max(1.0, abs(ref.item())), f"BankNCE loss {loss.item()} != per-sample loop {ref.item()}"
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, rtol=1e-3, atol=1e-6), "BankNCE gradients differ from the per-sample loop"
    assert torch.allclose(criterion.bank.vectors, bank, atol=1e-5), "bank update differs from the per-sample loop"
    return diff


# ---- measurements --------------------------------------------------------------------------------------------
def measure(cfg, device, images, views, amp, channels_last, bound_only=False, log=print):
    """One configuration: {'amp', 'channels_last', 'bound_ms', 'trial_ms', 'nce_ms', 'data_ms', ...} (medians)."""
    trainer = make_trainer(cfg, images, views, device, amp, channels_last)
    batches = index_stream(len(images), cfg["BATCH_SIZE"], trainer.generator, device)
    whole, patches = views(images[next(batches)], trainer.generator)  # the bound's pre-made inputs
    steps = cfg["STEPS_PER_ROUND"]
    tasks = {"bound": (lambda: bound_step(trainer, whole, patches), steps)}
    if not bound_only:
        tasks["trial"] = (lambda: trainer.step(next(batches)), steps)
        criterion = BankNCE(len(images), cfg["PROJ_DIM"], cfg["TAU"], cfg["BANK_MOMENTUM"], cfg["PATCH_WEIGHT"],
                            cfg["NEGATIVES"]).to(device)
        criterion.bank.vectors.copy_(random_bank(len(images), cfg["PROJ_DIM"], cfg["SEED"] + 1, device))
        dtype = amp_dtype(trainer.rt)
        feats = [torch.randn(cfg["BATCH_SIZE"], cfg["PROJ_DIM"], device=device).to(dtype).requires_grad_()
                 for _ in range(2)]
        nce = lambda: nce_step(criterion, next(batches), feats[0], feats[1], trainer.generator)  # noqa: E731
        tasks["nce"] = (nce, cfg["CHEAP_CALLS"])
        tasks["data"] = (lambda: views(images[next(batches)], trainer.generator), cfg["CHEAP_CALLS"])  # index + views
    layout = "channels_last" if channels_last else "contiguous"
    log(f"timing {'bound' if bound_only else 'bound, trial, nce, data'} | amp {amp} | {layout} ...")
    rounds = max(1, cfg["ROUNDS"] // 2) if bound_only else cfg["ROUNDS"]
    ms = interleaved(tasks, rounds, 1 if bound_only else cfg["WARMUP"], device)
    row = {"amp": amp, "channels_last": channels_last, "bound_ms": ms["bound"],
           "bound_img_s": cfg["BATCH_SIZE"] * 1000 / ms["bound"]}
    if not bound_only:
        row.update(trial_ms=ms["trial"], trial_img_s=cfg["BATCH_SIZE"] * 1000 / ms["trial"],
                   ratio=ms["bound"] / ms["trial"], nce_ms=ms["nce"], loss_share=ms["nce"] / ms["trial"],
                   data_ms=ms["data"], data_share=ms["data"] / ms["trial"])
    trainer = None  # the timed closures hold this name: free the network before the next configuration
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def measure_naive(cfg, device, log=print):
    """(naive_ms, nce_ms at fp32, max loss difference): the per-sample loop against BankNCE, same bank and negatives."""
    n, b, d = cfg["N_IMAGES"], cfg["BATCH_SIZE"], cfg["PROJ_DIM"]
    criterion = BankNCE(n, d, cfg["TAU"], cfg["BANK_MOMENTUM"], cfg["PATCH_WEIGHT"], cfg["NEGATIVES"]).to(device)
    criterion.bank.vectors.copy_(random_bank(n, d, cfg["SEED"] + 2, device))
    g = torch.Generator(device=device).manual_seed(cfg["SEED"])
    idx = torch.randperm(n, generator=g, device=device)[:b]
    diff = check_naive_matches(criterion, idx, cfg["SEED"], cfg)
    log(f"check: BankNCE and the per-sample loop agree (loss difference {diff:.2e}; gradients and bank match)")

    k = cfg["NEGATIVES"] or 2 * (b - 1)
    negatives = criterion.bank.sample_negatives(idx, k, g)
    bank = criterion.bank.vectors.clone()
    feats = [torch.randn(b, d, device=device).requires_grad_() for _ in range(2)]
    naive = lambda: naive_step(bank, idx, feats[0], feats[1], negatives, cfg)  # noqa: E731
    fast = lambda: nce_step(criterion, idx, feats[0], feats[1], g)  # noqa: E731
    ms = interleaved({"naive": (naive, 1), "fast": (fast, cfg["CHEAP_CALLS"])}, cfg["NAIVE_ROUNDS"], 1, device)
    return ms["naive"], ms["fast"], diff


def time_real_trial(cfg, device, images, views, amp, log=print):
    """fill_bank + TRIAL_EPOCHS epochs of a real trial (the loop run_trial runs); seconds and a per-trial projection."""
    trainer = make_trainer(cfg, images, views, device, amp, cfg["CHANNELS_LAST"])
    synchronize(device)
    start = time.perf_counter()
    trainer.fill_bank()
    synchronize(device)
    fill_s, epoch_s = time.perf_counter() - start, []
    for epoch in range(cfg["TRIAL_EPOCHS"]):
        start = time.perf_counter()
        loss = trainer.train_epoch()  # syncs at its end (.item())
        epoch_s.append(time.perf_counter() - start)
        log(f"real trial | amp {amp} | epoch {epoch + 1}/{cfg['TRIAL_EPOCHS']} | loss {loss:.4f} | {epoch_s[-1]:.1f} s")
    steady = statistics.median(epoch_s[1:] or epoch_s)  # the first epoch pays for autotuning and warm-up
    per_epoch = (len(images) // cfg["BATCH_SIZE"]) * cfg["BATCH_SIZE"]
    del trainer
    return {"amp": amp, "fill_bank_s": fill_s, "epoch_s": epoch_s, "epoch_img_s": per_epoch / steady,
            "projected_trial_s": fill_s + cfg["PROJECT_EPOCHS"] * steady}


# ---- report --------------------------------------------------------------------------------------------------
def print_table(result, log=print):
    r = result
    log(f"\ndevice {r['device']} ({r['device_name']}) | torch {r['torch']} | {r['threads']} threads | "
        f"genotype {r['genotype']}")
    log(f"network C={r['init_channels']}, {r['layers']} cells | batch {r['batch_size']} source images x 3 views of "
        f"{r['image_size']} px | bank {r['n_images']:,} x {r['proj_dim']} | {r['negatives']} negatives per image")
    log("img/s counts source images on both sides: batch / step time (each source image gives 3 views)")
    log("bound = network (one pass per view) + heads + mean loss + backward + SGD on pre-made tensors; "
        "trial = ContrastiveTrainer.step; data = cache index + views (cache on the device)")
    head = f"{'amp':<5} {'layout':<13} {'bound img/s':>11} {'trial img/s':>11} {'ratio':>6} {'step ms':>8} " \
           f"{'nce ms':>7} {'loss':>6} {'data ms':>7} {'data':>6}"
    log(head + "\n" + "-" * len(head))
    for row in r["rows"]:
        layout = "channels_last" if row["channels_last"] else "contiguous"
        line = f"{row['amp']:<5} {layout:<13} {row['bound_img_s']:>11.1f}"
        if "trial_ms" in row:
            line += (f" {row['trial_img_s']:>11.1f} {row['ratio']:>6.2f} {row['trial_ms']:>8.1f} {row['nce_ms']:>7.2f}"
                     f" {row['loss_share']:>6.1%} {row['data_ms']:>7.2f} {row['data_share']:>6.1%}")
        else:
            line += f" {'(bound only)':>11}"
        log(line)
    log(f"loss + bank update: per-sample loop {r['naive_nce_ms']:.1f} ms vs vectorised {r['nce_fp32_ms']:.2f} ms "
        f"(fp32, {r['naive_speedup']:.0f}x)")
    for t in r.get("real_trials", []):
        log(f"real trial ({t['amp']}): fill_bank {t['fill_bank_s']:.1f} s, epochs "
            f"{', '.join(f'{s:.1f}' for s in t['epoch_s'])} s ({t['epoch_img_s']:.0f} img/s) -> "
            f"{r['project_epochs']} epochs ~ {t['projected_trial_s']:.0f} s per trial")
    met = ", ".join(f"{k} {'ok' if ok else 'MISSED'}" for k, ok in r["targets_met"].items())
    log(f"targets: {met}")


def main(argv=None):
    # ---- config ------------------------------------------------------------------------------------------
    cfg, from_preset = configure(globals(), resolve_preset(argv), PRESETS)
    device = pick_device(cfg["DEVICE"])
    if cfg["THREADS"]:
        torch.set_num_threads(cfg["THREADS"])
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as search.py: fixed 32 px shapes
    if cfg["BATCH_SIZE"] > cfg["N_IMAGES"]:
        raise ConfigError(f"BATCH_SIZE {cfg['BATCH_SIZE']} exceeds N_IMAGES {cfg['N_IMAGES']}; lower it or add images")
    modes = amp_modes(cfg["AMP"], device)
    try:
        G.resolve(cfg["GENOTYPE"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"config:\n{format_config(cfg, from_preset)}")

    # ---- data: a synthetic uint8 cache on the device, as search.py holds the real one -------------------------
    images = synthetic_images(cfg["N_IMAGES"], cfg["IMAGE_SIZE"], cfg["SEED"], device)
    views = ViewMaker(cfg["IMAGE_SIZE"])

    # ---- measure -----------------------------------------------------------------------------------------
    rows = []
    for amp in modes:
        rows.append(measure(cfg, device, images, views, amp, cfg["CHANNELS_LAST"]))
        if cfg["COMPARE_LAYOUT"]:
            rows.append(measure(cfg, device, images, views, amp, not cfg["CHANNELS_LAST"], bound_only=True))
    naive_ms, nce_fp32_ms, diff = measure_naive(cfg, device)
    real = [time_real_trial(cfg, device, images, views, amp) for amp in modes] if cfg["TRIAL_EPOCHS"] > 0 else []

    # ---- report: the headline is the first AMP mode in the chosen layout ------------------------------------
    head = rows[0]
    result = {
        "bound_img_s": round(head["bound_img_s"], 1), "trial_img_s": round(head["trial_img_s"], 1),
        "ratio": round(head["ratio"], 3), "loss_share": round(head["loss_share"], 4),
        "data_share": round(head["data_share"], 4), "nce_ms": round(head["nce_ms"], 3),
        "naive_nce_ms": round(naive_ms, 2), "nce_fp32_ms": round(nce_fp32_ms, 3),
        "naive_speedup": round(naive_ms / nce_fp32_ms, 1), "naive_loss_diff": diff,
        "bound_ms": round(head["bound_ms"], 2), "trial_ms": round(head["trial_ms"], 2),
        "data_ms": round(head["data_ms"], 3), "device": str(device), "device_name": device_name(device),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "preset": cfg["PRESET"],
        "amp": head["amp"], "channels_last": head["channels_last"], "genotype": cfg["GENOTYPE"],
        "init_channels": cfg["INIT_CHANNELS"], "layers": cfg["LAYERS"], "batch_size": cfg["BATCH_SIZE"],
        "image_size": cfg["IMAGE_SIZE"], "n_images": cfg["N_IMAGES"], "proj_dim": cfg["PROJ_DIM"],
        "negatives": cfg["NEGATIVES"] or 2 * (cfg["BATCH_SIZE"] - 1), "rounds": cfg["ROUNDS"],
        "steps_per_round": cfg["STEPS_PER_ROUND"], "project_epochs": cfg["PROJECT_EPOCHS"],
        "rows": [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows],
    }
    if real:
        result["real_trials"] = [{k: [round(s, 2) for s in v] if isinstance(v, list) else
                                  (round(v, 2) if isinstance(v, float) else v) for k, v in t.items()} for t in real]
        result["projected_trial_s"] = result["real_trials"][0]["projected_trial_s"]
    result["targets_met"] = {
        "ratio": result["ratio"] >= TARGETS["ratio"], "loss_share": result["loss_share"] <= TARGETS["loss_share"],
        "data_share": result["data_share"] <= TARGETS["data_share"],
        "naive_speedup": result["naive_speedup"] >= TARGETS["naive_speedup"],
    }
    print_table(result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    run_cli(main)
