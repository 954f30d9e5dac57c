"""The three views per image the contrastive loss compares (whole image, centre patch, random patch), made in batches
on the device: 32 px in the search, the eval network's input size in pre-training."""
import math

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma and the YIQ transform used to rotate hue as a 3x3 matrix per image
_LUMA = torch.tensor([0.299, 0.587, 0.114])
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


class ViewMaker:
    """uint8 images (B, H, W, 3) on any device -> normalised views, all randomness from one torch.Generator.

    whole:  the image resized to `size`, random h/v flips, colour jitter.
    patches: (centre crop of side `center_crop`, random crop of area in `patch_scale` with flips and random
             grayscale), each resized to `size`.
    """

    def __init__(self, size=32, color_jitter=(0.2, 0.2, 0.2, 0.02), center_crop=0.5, patch_scale=(0.15, 0.5),
                 grayscale_p=0.2, mean=(0.763, 0.545, 0.570), std=(0.141, 0.152, 0.169)):
        self.size = size
        self.brightness, self.contrast, self.saturation, self.hue = color_jitter
        self.center_crop = center_crop
        self.patch_scale = patch_scale
        self.grayscale_p = grayscale_p
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self._on_device = {}  # device -> the constants above, copied there once

    def _consts(self, dev):
        """(luma (1, 3, 1, 1), RGB->YIQ, YIQ->RGB, mean, std) on `dev`, copied there once: a per-call copy of a CPU
        tensor to a GPU waits for the GPU to finish its queue (a sync per step)."""
        if dev not in self._on_device:
            consts = (_LUMA.view(1, 3, 1, 1), _RGB2YIQ, _YIQ2RGB, self.mean, self.std)
            self._on_device[dev] = tuple(c.to(dev) for c in consts)
        return self._on_device[dev]

    def __call__(self, images, generator=None):
        """images (B, H, W, 3) uint8 -> whole (B, 3, S, S), patches (2, B, 3, S, S), float32, normalised."""
        x = images.permute(0, 3, 1, 2).float().div_(255)  # (B, 3, H, W)
        b, dev = x.shape[0], x.device
        rand = lambda *shape: torch.rand(*shape, generator=generator, device=dev)  # noqa: E731
        ones, zeros = torch.ones(b, device=dev), torch.zeros(b, device=dev)

        flips = lambda: torch.where(rand(b) < 0.5, -ones, ones)  # noqa: E731
        whole = self._crop(x, ones, ones, zeros, zeros, flips(), flips())
        whole = self._jitter(whole, rand)

        c = self.center_crop * ones
        center = self._crop(x, c, c, zeros, zeros, ones, ones)

        area = self.patch_scale[0] + (self.patch_scale[1] - self.patch_scale[0]) * rand(b)
        log_ratio = (rand(b) - 0.5) * 2 * math.log(4 / 3)  # aspect ratio in [3/4, 4/3]
        sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
        sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        tx, ty = (1 - sx) * (2 * rand(b) - 1), (1 - sy) * (2 * rand(b) - 1)
        crop = self._crop(x, sx, sy, tx, ty, flips(), flips())
        gray = (crop * self._consts(dev)[0]).sum(1, keepdim=True).expand_as(crop)
        crop = torch.where((rand(b) < self.grayscale_p).view(b, 1, 1, 1), gray, crop)

        patches = torch.stack([center, crop])  # (2, B, 3, S, S)
        return self._normalise(whole), self._normalise(patches)

    def _crop(self, x, sx, sy, tx, ty, fx, fy):
        """Per-image affine crop (scale s, centre t in [-1, 1] units, flips f = +-1) resampled to size x size."""
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = sx * fx, tx
        theta[:, 1, 1], theta[:, 1, 2] = sy * fy, ty
        grid = F.affine_grid(theta, [x.shape[0], 3, self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _jitter(self, x, rand):
        """Brightness, contrast, saturation and hue, each a random factor per image, as batched tensor maths."""
        b, dev = x.shape[0], x.device
        factor = lambda s: (1 + s * (2 * rand(b) - 1)).view(b, 1, 1, 1)  # noqa: E731
        luma, rgb2yiq, yiq2rgb = self._consts(dev)[:3]
        x = x * factor(self.brightness)
        mean_gray = (x * luma).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        x = (x - mean_gray) * factor(self.contrast) + mean_gray
        gray = (x * luma).sum(1, keepdim=True)
        x = (x - gray) * factor(self.saturation) + gray
        if self.hue > 0:
            angle = self.hue * 2 * math.pi * (2 * rand(b) - 1)  # hue shift as a fraction of the colour wheel
            cos, sin = angle.cos(), angle.sin()
            rot = torch.zeros(b, 3, 3, device=dev)
            rot[:, 0, 0] = 1
            rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
            m = yiq2rgb @ rot @ rgb2yiq  # (B, 3, 3)
            x = torch.einsum("bij,bjhw->bihw", m, x)
        return x.clamp_(0, 1)

    def _normalise(self, x):
        mean, std = self._consts(x.device)[3:]
        return (x - mean) / std
