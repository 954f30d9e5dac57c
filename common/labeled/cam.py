"""Grad-CAM heat maps for a classifier, their overlays and figures, and the sample of images to show."""
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.runs import atomic_write_bytes


class GradCAM:
    """Grad-CAM (Selvaraju et al.) on the output (N, C, h, w) of `target_layer`.

    Hooks live only during a call, the model runs in eval mode and gets its modes back, and gradients are
    taken with torch.autograd.grad, so no parameter .grad is touched and frozen models work too.
    """

    def __init__(self, model, target_layer):
        self.model, self.target_layer = model, target_layer
        self._handles, self._acts = [], None

    def _keep(self, module, inputs, output):
        if not torch.is_tensor(output) or output.dim() != 4:
            raise TypeError(f"Grad-CAM target layer must output a (N, C, h, w) tensor, got {type(output).__name__}")
        self._acts = output

    def __call__(self, x, class_idx=None):
        """x (1, 3, H, W) -> (cam (H, W) float32 in [0, 1], logits (K,) detached). class_idx None = predicted."""
        if x.dim() != 4 or x.shape[0] != 1:
            raise ValueError(f"Grad-CAM explains one image at a time: expected x of shape (1, 3, H, W), got {tuple(x.shape)}")
        param = next(self.model.parameters(), None)
        # the input requires grad so the graph reaches the target layer even when all parameters are frozen
        x = x.detach().to(param.device if param is not None else x.device).clone().requires_grad_(True)
        modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        self._handles.append(self.target_layer.register_forward_hook(self._keep))
        try:
            with torch.enable_grad():
                out = self.model(x)
                logits = (out[0] if isinstance(out, (tuple, list)) else out)[0]  # (K,)
                if self._acts is None:
                    raise RuntimeError("Grad-CAM target layer did not run in the forward pass; pick a layer of this model")
                k = int(logits.argmax()) if class_idx is None else int(class_idx)
                if not 0 <= k < logits.numel():
                    raise ValueError(f"class_idx {class_idx} out of range for {logits.numel()} classes")
                (grads,) = torch.autograd.grad(logits[k], self._acts)  # (1, C, h, w)
            acts = self._acts.detach().float()
            weights = grads.float().mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1): pooled gradients
            cam = F.relu((weights * acts).sum(1, keepdim=True))  # (1, 1, h, w)
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]  # (H, W)
            cam = cam - cam.min()
            top = cam.max()
            cam = cam / top if top > 0 else torch.zeros_like(cam)  # flat map: no evidence for the class
            return cam.clamp(0, 1).cpu().numpy().astype(np.float32), logits.detach()
        finally:
            self.remove()
            self._acts = None
            for m, mode in modes.items():
                m.training = mode

    def remove(self):
        """Remove any hook still registered (calls clean up after themselves; this makes it explicit)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def overlay(image, cam, alpha=0.45):
    """image (H, W, 3) uint8, cam (h, w) in [0, 1] (resized to the image if needed) -> (H, W, 3) uint8 overlay."""
    from matplotlib import colormaps
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"overlay needs an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    cam = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float32)), 0, 1)
    if cam.shape != image.shape[:2]:
        cam = np.asarray(Image.fromarray(cam).resize(image.shape[1::-1], Image.BILINEAR))
    heat = colormaps["jet"](cam)[..., :3] * 255  # (H, W, 3)
    return np.clip((1 - alpha) * image + alpha * heat, 0, 255).round().astype(np.uint8)


def save_cam_figure(path, image, cam, true_name, pred_name, prob):
    """One small PNG: original | overlay, titled with the true and predicted class (green right, red wrong)."""
    from matplotlib.figure import Figure

    correct = str(true_name) == str(pred_name)
    fig = Figure(figsize=(4, 2.2), dpi=100)
    axes = fig.subplots(1, 2)
    for ax, img, label in zip(axes, (image, overlay(image, cam)), ("image", "Grad-CAM")):
        ax.imshow(img, interpolation="bilinear")
        ax.set_xlabel(label, fontsize=8, labelpad=2)
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    fig.suptitle(
        f"true: {true_name}  predicted: {pred_name} ({prob:.2f})",
        fontsize=9,
        fontweight="bold",
        color="#1b7f3b" if correct else "#c0392b",
    )
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.1, top=0.86, wspace=0.05)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _spread_over_classes(indices, y_true, rng):
    """Shuffle indices, then order them round-robin over true classes so a short prefix covers many classes."""
    perm = rng.permutation(indices)
    seen, rank = {}, np.empty(len(perm), dtype=np.int64)
    for j, i in enumerate(perm):
        rank[j] = seen.get(y_true[i], 0)
        seen[y_true[i]] = rank[j] + 1
    return perm[np.argsort(rank, kind="stable")]


def pick_cam_samples(y_true, y_pred, n, seed):
    """A seeded sample of up to n indices: about half correct and half wrong predictions, spread over classes."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    rng = np.random.default_rng(seed)
    correct = _spread_over_classes(np.flatnonzero(y_true == y_pred), y_true, rng)
    wrong = _spread_over_classes(np.flatnonzero(y_true != y_pred), y_true, rng)
    n = max(0, int(n))
    n_wrong = min(len(wrong), n // 2)
    n_correct = min(len(correct), n - n_wrong)
    n_wrong = min(len(wrong), n - n_correct)  # fill up with wrong ones when correct ones run short
    return sorted(int(i) for i in np.concatenate([correct[:n_correct], wrong[:n_wrong]]))
