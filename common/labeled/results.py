"""The results of a finished training: metrics.json (the selected model once on test, the headline; on val; the last
epoch on val), prediction CSVs, figures, Grad-CAM pictures, the model card with its checked ONNX export, and the
printed report."""
import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from common import runs
from common.arch.baselines import cam_layer
from common.data.datasets import LabeledData
from common.figures import plot_confusion_matrix, plot_training_curves
from common.labeled import model_card
from common.labeled.cam import GradCAM, pick_cam_samples, save_cam_figure
from common.labeled.checkpoints import BEST, CKPT, HISTORY, load_checkpoint
from common.labeled.data import SPLIT_FILE
from common.labeled.epochs import evaluate
from common.labeled.metrics import write_predictions_csv
from common.labeled.model import Architecture

CARD, ONNX, ONNX_REJECTED = "model_card.json", "model.onnx", "model_rejected.onnx"
CAM_DIR = "cam"
ONNX_CHECK_IMAGES = 16  # validation images run through both PyTorch and onnxruntime
HEADLINE = ("accuracy", "balanced_accuracy", "auc_macro", "recall", "n")  # metrics.json's top level: test's


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """What the results say about the run they come from."""

    cfg: dict  # the resolved settings
    data: LabeledData
    architecture: Architecture
    split_sha1: str  # of split.csv's bytes
    started: float  # time.time() when the command started


# ----------------------------------------------------------------------------- scores, metrics.json, figures


def score(model, loader, criterion, classes, rt, epoch, csv_path=None):
    """(metrics section: the full metric dict plus loss and epoch, the Scored); writes the predictions CSV (image,
    one probability column per class) when csv_path is given."""
    scored = evaluate(model, loader, criterion, classes, rt)
    if csv_path is not None:
        records = loader.dataset.records
        write_predictions_csv(csv_path, [records[j].image_id for j in scored.index], scored.probs, classes)
    return {**scored.metrics, "loss": scored.loss, "epoch": epoch}, scored


def save_results(run_dir, model, loaders, criterion, state, info, rt):
    """The three numbers, kept apart: the last epoch on val, the selected (best.pt) model on val, and the selected
    model once on test, the headline. Predictions CSVs, metrics.json and figures come from the same probabilities;
    model_card.json describes the selected model. Returns (metrics, CAM files, model card)."""
    cfg, data, classes = info.cfg, info.data, info.data.classes
    # the weights in memory are the last epoch's: just trained, or loaded from ckpt.pt by a resumed run
    val_last, _ = score(model, loaders.val, criterion, classes, rt, state["epoch"])
    best = load_checkpoint(run_dir / BEST, need=("model", "epoch"))
    model.load_state_dict(best["model"])
    val_sel, val_scored = score(model, loaders.val, criterion, classes, rt, best["epoch"], run_dir / "predictions_val.csv")
    test, _ = score(model, loaders.test, criterion, classes, rt, best["epoch"], run_dir / "predictions_test.csv")
    metrics = {
        **{k: test[k] for k in HEADLINE},
        "headline": "test",
        "selected_by": "validation balanced_accuracy",
        "best_epoch": best["epoch"], "epochs": cfg["EPOCHS"],
        "test": test, "val_selected": val_sel, "val_last": val_last,
        "split_sha1": info.split_sha1,
        "dataset": {"layout": data.layout, "root": str(data.root), "classes": list(classes),
                    "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
                    "n_labeled": len(data.train) if data.labeled is None else len(data.labeled),
                    "carved": list(data.carved)},
        "genotype": info.architecture.genotype_dict(), "genotype_source": info.architecture.source,
        "arch": cfg["ARCH"],
        "train_seconds": round(sum(h["seconds"] for h in state["history"]), 1),
        "wall_seconds": round(time.time() - info.started, 1),
    }
    runs.atomic_write_json(run_dir / "metrics.json", metrics)
    plot_confusion_matrix(test["confusion_matrix"], classes, run_dir / "confusion_matrix.png",
                          label=f"test, epoch {best['epoch']}")
    plot_confusion_matrix(val_sel["confusion_matrix"], classes, run_dir / "confusion_matrix_val.png",
                          label=f"validation, epoch {best['epoch']}")
    plot_training_curves(state["history"], run_dir / "curves.png")
    cams = save_cams(model, loaders.val.dataset, val_scored, classes, cfg, rt, run_dir / CAM_DIR)
    card = write_model_card(run_dir, model, loaders.val, info.architecture.source, cfg, rt)
    return metrics, cams, card


# ----------------------------------------------------------------------------- Grad-CAM


def unnormalise(x, mean, std):
    """(3, H, W) normalised tensor -> (H, W, 3) uint8: the image the network saw."""
    img = x.float() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def save_cams(model, dataset, scored, classes, cfg, rt, out_dir):
    """Grad-CAM figures of a seeded mix (N_CAM, SEED) of correct and wrong predictions in `scored` (an evaluate() of
    `dataset`); returns the files."""
    preds = scored.probs.argmax(1)
    files = []
    for pos in pick_cam_samples(scored.labels, preds, cfg["N_CAM"], cfg["SEED"]):
        x, y, j = dataset[int(scored.index[pos])]
        cam, _ = GradCAM(model, cam_layer(model))(x.unsqueeze(0).to(rt.device), int(preds[pos]))
        true_name, pred_name = classes[y], classes[int(preds[pos])]
        path = out_dir / f"{len(files):02d}_{Path(str(dataset.records[j].image_id)).stem}_{true_name}_as_{pred_name}.png"
        save_cam_figure(path, unnormalise(x, cfg["MEAN"], cfg["STD"]), cam, true_name, pred_name,
                        float(scored.probs[pos, preds[pos]]))
        files.append(path)
    return files


# ----------------------------------------------------------------------------- model card, ONNX


def write_model_card(run_dir, model, val_loader, source, cfg, rt):
    """model_card.json: parameters (without an auxiliary head), MACs at IMAGE_SIZE, CPU latency at batch 1 (LATENCY_RUNS
    after 5 warm-up runs, this process's threads), CUDA inference throughput at the loaders' batch (BATCH_SIZE; under
    torchrun one process's share; fp32; on CUDA only), and under 'onnx' the checked export (None unless EXPORT_ONNX).
    An ONNX mismatch is recorded, not raised, so that every other result is written and the run finished; the caller
    raises it last."""
    val_dataset = val_loader.dataset
    card = model_card.model_card(model, cfg["IMAGE_SIZE"], val_loader.batch_size, rt.device,
                                 latency_runs=cfg["LATENCY_RUNS"])
    card = {"model": source, "arch": cfg["ARCH"], **card, "onnx": None}
    if cfg["EXPORT_ONNX"]:
        n = min(ONNX_CHECK_IMAGES, len(val_dataset))
        images = torch.stack([val_dataset[i][0] for i in range(n)]).float()  # (n, 3, S, S), normalised as in training
        card["onnx"] = export_checked_onnx(model, run_dir / ONNX, images, cfg["IMAGE_SIZE"])
    runs.atomic_write_json(run_dir / CARD, card)
    return card


def export_checked_onnx(model, path, images, image_size):
    """`path` written by model_card.export_onnx (dynamic batch axis, checked on 2 random images), then checked on real
    validation `images` (B, 3, S, S). Returns {path, ok, max_abs_diff (validation images), max_abs_diff_random,
    images, opset}; on a mismatch the file is renamed model_rejected.onnx (no model.onnx that looks usable) and the
    result has ok False and the error."""
    atol, diff, random_diff = model_card.ONNX_ATOL, None, None
    try:
        random_diff = model_card.export_onnx(model, path, image_size)["max_abs_diff"]
        diff = onnx_prob_diff(path, model, images)
        if not diff <= atol:  # also catches NaN
            raise model_card.OnnxMismatch(f"max |softmax difference| {diff:.2e} > {atol:.0e} on {len(images)} "
                                          "validation images")
    except model_card.OnnxMismatch as exc:
        rejected = path.with_name(ONNX_REJECTED)
        if path.exists():
            os.replace(path, rejected)
        why = str(exc).replace(f"ONNX model {path} ", "")  # export_onnx names the path it wrote
        return {"path": str(rejected), "ok": False, "max_abs_diff": diff, "max_abs_diff_random": random_diff,
                "images": len(images), "opset": model_card.ONNX_OPSET,
                "error": f"the ONNX export differs from PyTorch ({why}); kept as {rejected} for inspection"}
    return {"path": str(path), "ok": True, "max_abs_diff": diff, "max_abs_diff_random": random_diff,
            "images": len(images), "opset": model_card.ONNX_OPSET}


def onnx_prob_diff(path, model, images):
    """max |softmax probability difference| between onnxruntime (CPU) running `path` and the PyTorch model (a float32
    CPU copy in eval mode) on `images` (B, 3, S, S)."""
    import onnxruntime as ort

    net = model_card.LogitsOnly(copy.deepcopy(model).to("cpu", torch.float32)).eval()
    with torch.no_grad():
        expected = torch.softmax(net(images).double(), dim=1)  # (B, K)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": images.numpy()})
    got = torch.softmax(torch.from_numpy(logits).double(), dim=1)
    return float((got - expected).abs().max())


# ----------------------------------------------------------------------------- the printed report


def result_line(title, m):
    auc = f"{m['auc_macro']:.3f}" if m["auc_macro"] is not None else "n/a"
    bacc = f"{m['balanced_accuracy']:.3f}" if m["balanced_accuracy"] is not None else "n/a"
    return f"  {title:<34} balanced accuracy {bacc} | accuracy {m['accuracy']:.3f} | macro AUC {auc} | n {m['n']}"


def card_line(card):
    """The model card in one line: size, MACs, CPU latency, CUDA throughput, ONNX check."""
    lat = card["cpu_latency_ms"]
    parts = [f"{card['params'] / 1e6:.2f}M params", f"{card['macs'] / 1e6:.1f}M MACs at {card['image_size']} px",
             f"CPU {lat['median']:.1f} ms/image (p90 {lat['p90']:.1f}, {lat['runs']} runs, {lat['threads']} thread"
             + ("s" if lat["threads"] != 1 else "") + ")"]
    if card["cuda_throughput_img_s"] is not None:
        parts.append(f"CUDA {card['cuda_throughput_img_s']:.0f} img/s at batch {card['cuda_batch_size']}")
    onnx = card["onnx"]
    if onnx is not None:
        parts.append(f"ONNX ok (max diff {onnx['max_abs_diff']:.0e})" if onnx["ok"] else "ONNX MISMATCH")
    return "model card: " + " | ".join(parts)


def report(run_dir, metrics, cams, card, started):
    best, last = metrics["best_epoch"], metrics["val_last"]["epoch"]
    print(f"results: the model of epoch {best} (best validation balanced accuracy of {last} epochs)")
    print(result_line("TEST (held out, scored once)", metrics["test"]))
    print(result_line(f"validation, epoch {best} (chose it)", metrics["val_selected"]))
    print(result_line(f"validation, last epoch {last}", metrics["val_last"]))
    print("test recall per class: " + ", ".join(f"{c} {v:.2f}" for c, v in metrics["recall"].items() if v is not None))
    print(card_line(card))
    onnx = f"{Path(card['onnx']['path']).name}, " if card["onnx"] is not None else ""
    print(f"wrote {run_dir}/: metrics.json, {CARD}, {onnx}predictions_test.csv, predictions_val.csv, confusion_matrix.png "
          f"(test), confusion_matrix_val.png, curves.png, {HISTORY}, {SPLIT_FILE}, {BEST}, {CKPT}, {CAM_DIR}/ "
          f"({len(cams)} PNGs) in {time.time() - started:.0f} s")
