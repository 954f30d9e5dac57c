"""Built-in demo data: procedurally drawn dermoscopy-like lesions, written once in the ISIC 2019 layout."""
import csv
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from common.config import ConfigError
from common.runs import REPO_ROOT

DEMO_CLASSES = ("MEL", "NV", "BCC", "BKL")  # ISIC 2019 column names, in the ground-truth CSV's order
# Class shares follow ISIC 2019's training counts of these four classes (4522/12875/3323/2624), so the demo is
# imbalanced the way real data is: NV ~55 %, MEL ~19 %, BCC ~14 %, BKL ~11 %.
DEMO_CLASS_COUNTS_ISIC = {"MEL": 4522, "NV": 12875, "BCC": 3323, "BKL": 2624}
DEFAULT_DEMO_DIR = REPO_ROOT / "data" / "demo_lesions"
DEMO_VERSION = 2  # bump when the drawing changes, so cached demo folders are regenerated
JPEG_QUALITY = 92
IMAGE_DIR = "ISIC_2019_Training_Input"
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
MANIFEST = "demo_manifest.json"

# Colours (RGB, 0-255) loosely after dermoscopy atlases.
_SKIN_LIGHT = np.array([236.0, 196.0, 172.0], np.float32)
_SKIN_DARK = np.array([176.0, 118.0, 88.0], np.float32)
_MEL_PALETTE = {
    "dark_brown": (84, 50, 34),
    "black": (38, 28, 30),
    "blue_grey": (98, 108, 132),
    "red": (176, 78, 76),
    "light_brown": (150, 98, 66),
}


# ----------------------------------------------------------------------------------------------- helpers


def _smooth_noise(rng, h, w, cells):
    """Zero-mean noise of about unit std, varying on a scale of about 1/cells of the image."""
    ch, cw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    small = rng.standard_normal((ch + 2, cw + 2)).astype(np.float32)  # one spare cell each side, so the
    box = (1, 1, cw + 1, ch + 1)  # scaled inner box has real neighbours where bicubic would clamp
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC, box=box))
    return big * np.float32(1 / 0.8)  # (H, W); bicubic-interpolated white noise has std ~0.8 (measured)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _blend(img, color, alpha):
    """img (H, W, 3) float, color (3,) or (H, W, 3), alpha (H, W) in [0, 1]."""
    a = np.asarray(alpha, np.float32)[..., None]
    return img + (np.asarray(color, np.float32) - img) * a  # float32 throughout: this is the hot loop


def _dots_alpha(h, w, xs, ys, rs, softness=0.8, elong=None, angles=None):
    """Soft discs (or ovals: elong > 1 along angles) at (xs, ys) with radii rs, as one (H, W) alpha map."""
    out = np.zeros((h, w), np.float32)
    elong = np.ones(len(xs)) if elong is None else elong
    angles = np.zeros(len(xs)) if angles is None else angles
    for x, y, r, e, t in zip(xs, ys, rs, elong, angles):
        reach = r * e
        x0, x1 = max(0, int(x - reach - 2)), min(w, int(x + reach + 3))
        y0, y1 = max(0, int(y - reach - 2)), min(h, int(y + reach + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = ((xx - x) * np.cos(t) + (yy - y) * np.sin(t)) / e
        v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
        d = np.sqrt(u**2 + v**2)
        np.maximum(out[y0:y1, x0:x1], np.clip((r - d) / softness + 0.5, 0.0, 1.0), out=out[y0:y1, x0:x1])
    return out


def _line_alpha(h, w, polylines, widths, blur):
    """Polylines drawn with PIL at the given widths, lightly blurred for anti-aliasing: (H, W) in [0, 1]."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for pts, width in zip(polylines, widths):
        draw.line([(float(x), float(y)) for x, y in pts], fill=255, width=int(width), joint="curve")
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(mask, np.float32) / 255.0


def _bezier(p0, p1, p2, n=24):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (n, 2)


# ------------------------------------------------------------------------------------------ components


def _background(rng, h, w, yy, xx):
    """Skin with fine texture, uneven lighting, vignetting and, often, the dermoscope's dark round rim."""
    tone = rng.beta(2.0, 2.5)
    base = _SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone
    base = base.astype(np.float32)
    mottle = 0.025 * _smooth_noise(rng, h, w, 5) + 0.012 * _smooth_noise(rng, h, w, 30)
    img = base[None, None, :] * (1.0 + mottle[..., None])
    redness = rng.uniform(0.0, 0.1) * np.clip(_smooth_noise(rng, h, w, 3) + 0.3, 0, None)  # erythema, any class
    img[..., 1:] *= 1.0 - redness[..., None]
    furrows = np.exp(-((_smooth_noise(rng, h, w, 18) / 0.12) ** 2))  # skin surface lines, faintly lighter
    img = _blend(img, base * 1.08, furrows * rng.uniform(0.05, 0.2))
    cx, cy = w / 2.0, h / 2.0
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx**2 + cy**2)
    angle = rng.uniform(0, 2 * np.pi)
    grad = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / max(w, h)
    light = (1.0 - rng.uniform(0.1, 0.35) * r2) * (1.0 + rng.uniform(0.0, 0.25) * grad)
    img = img * light[..., None]
    if rng.random() < 0.5:  # the dermoscope's round field of view: dark corners
        radius = rng.uniform(0.40, 0.49) * np.hypot(w, h)
        rim = _smoothstep((np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) - radius) / (0.05 * min(w, h)) + 0.5)
        img = _blend(img, rng.uniform(6, 24, 3), rim)
    return img.astype(np.float32)


def _lesion_geometry(rng, h, w, yy, xx, size, aspect, harmonics, notches=0):
    """Normalised distance d (H, W), < 1 inside the lesion, and its ellipse (cx, cy, a, b, rot).

    The contour is an ellipse of radius `size` (fraction of the short side) and `aspect`, its radius modulated
    by cos(k*phi) terms (k, amplitude) and cut by `notches` sharp inward dents.
    """
    s = min(w, h)
    a = s * size
    b = a / aspect
    cx = w / 2.0 + rng.normal(0, 0.08) * w
    cy = h / 2.0 + rng.normal(0, 0.08) * h
    rot = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(rot) + (yy - cy) * np.sin(rot)
    v = -(xx - cx) * np.sin(rot) + (yy - cy) * np.cos(rot)
    phi = np.arctan2(v / b, u / a)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    contour = np.ones_like(phi)
    for k, amp in harmonics:
        contour += rng.uniform(0.5, 1.0) * amp * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    for _ in range(notches):
        centre, width = rng.uniform(-np.pi, np.pi), rng.uniform(0.12, 0.35)
        gap = (phi - centre + np.pi) % (2 * np.pi) - np.pi  # angular distance to the notch, wrapped
        contour -= rng.uniform(0.1, 0.25) * np.exp(-((gap / width) ** 2))
    return rho / np.maximum(contour, 0.3), (cx, cy, a, b, rot)


def _network(rng, h, w, xx, yy, period, irregular):
    """Pigment network: a honeycomb-like line pattern, (H, W) in [0, 1]; irregular > 0 distorts and breaks it."""
    rot = rng.uniform(0, np.pi)
    u = xx * np.cos(rot) + yy * np.sin(rot)
    v = -xx * np.sin(rot) + yy * np.cos(rot)
    warp = period * (0.25 + irregular)
    u = u + warp * _smooth_noise(rng, h, w, 12)
    v = v + warp * _smooth_noise(rng, h, w, 12)
    f = np.pi / period
    g = np.minimum(np.abs(np.sin(u * f)), np.abs(np.sin((v + 0.5 * period * np.sin(u * f)) * f)))  # offset rows
    thickness = 0.22 * (1.0 + irregular * np.clip(_smooth_noise(rng, h, w, 9), -0.8, 1.5))
    lines = np.exp(-((g / thickness) ** 2))
    if irregular > 0:  # broken, patchy network
        lines *= _smoothstep(_smooth_noise(rng, h, w, 7) * 0.8 + 0.4)
    return lines


def _ring_points(rng, geom, n, d_lo, d_hi, clustered):
    """n points in the lesion's ellipse at normalised radius d_lo..d_hi; clustered bunches them by angle."""
    if clustered:
        centres = rng.uniform(0, 2 * np.pi, max(1, n // 5))
        t = rng.choice(centres, n) + rng.normal(0, 0.35, n)
    else:
        t = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(d_lo**2, d_hi**2, n))
    return _from_ellipse(geom, r * np.cos(t), r * np.sin(t))


def _from_ellipse(geom, u, v):
    """Image (x, y) of points (u, v) given in the lesion ellipse's unit coordinates."""
    cx, cy, a, b, rot = geom
    u, v = u * a, v * b
    return cx + u * np.cos(rot) - v * np.sin(rot), cy + u * np.sin(rot) + v * np.cos(rot)


def _vessels(rng, geom, s, n_trees):
    """Arborizing vessels: red trunks branching into thinner twigs, as (polylines, widths)."""
    cx, cy, a, b, _ = geom
    lines, widths = [], []

    def grow(x, y, ang, length, width, depth):
        pts = [(x, y)]
        for _ in range(6):
            ang += rng.normal(0, 0.35)
            x, y = x + np.cos(ang) * length / 6, y + np.sin(ang) * length / 6
            pts.append((x, y))
        lines.append(pts)
        widths.append(width)
        if depth > 0:
            for side in (-1, 1):
                if rng.random() < 0.85:
                    grow(x, y, ang + side * rng.uniform(0.4, 0.9), length * 0.62, max(1, width - 1), depth - 1)

    for _ in range(n_trees):
        ang = rng.uniform(0, 2 * np.pi)
        x, y = cx - np.cos(ang) * a * 0.6, cy - np.sin(ang) * b * 0.6
        grow(x, y, ang, rng.uniform(0.3, 0.55) * (a + b), max(1, round(s / 70)), 3)
    return lines, widths


def _texture(rng, h, w, amount):
    """Multiplicative fine texture for a lesion's body: (H, W, 1) around 1."""
    return (1.0 + amount * (_smooth_noise(rng, h, w, 20) + 0.5 * _smooth_noise(rng, h, w, 45)))[..., None]


# ---------------------------------------------------------------------------------------------- classes
# Each painter draws one class's lesion onto the skin. `atyp` (mostly small, sometimes large) moves an image
# towards the look of other classes, so the task is learnable but not trivial.


def _paint_nv(rng, img, h, w, yy, xx, s):
    """Naevus: symmetric, round/oval, one brown hue, smooth border, regular network fading out, regular dots."""
    atyp = rng.beta(1.5, 4.0)
    harmonics = [(2, 0.03 + 0.1 * atyp), (3, 0.03 + 0.08 * atyp), (5, 0.06 * atyp)]
    d, geom = _lesion_geometry(rng, h, w, yy, xx, rng.uniform(0.17, 0.32), rng.uniform(1.0, 1.35), harmonics)
    t = rng.uniform(-0.4, 1.0)  # light tan (like a keratosis) to dark brown
    brown = (np.array([156, 104, 70]) * (1 - t) + np.array([88, 56, 40]) * t).astype(np.float32)
    alpha = _smoothstep((1.0 - d) / rng.uniform(0.12, 0.3))
    inner = 1.0 - np.clip(d, 0, 1)
    shade = 1.0 + rng.uniform(-0.15, 0.1) * inner  # centre a bit darker or lighter, evenly all round
    colour = brown[None, None, :] * shade[..., None] * _texture(rng, h, w, 0.04)
    if atyp > 0.3:  # an atypical naevus: a second, darker brown patch
        patch = _smoothstep(_smooth_noise(rng, h, w, 4) - 0.2)[..., None]
        colour = colour * (1.0 - 0.4 * patch)
    if rng.random() < 0.2:  # irritated naevus: a pink rim
        img = _blend(img, (222, 140, 140), _smoothstep((1.35 - d) / 0.4) * rng.uniform(0.2, 0.45))
    img = _blend(img, colour, alpha * rng.uniform(0.75, 0.97))
    if rng.random() < 0.75:
        net = _network(rng, h, w, xx, yy, s * rng.uniform(0.04, 0.065), 0.3 * atyp) * np.sqrt(inner)
        img = _blend(img, brown * 0.55, net * alpha * rng.uniform(0.3, 0.55))
    if rng.random() < 0.6:  # regular dots/globules, similar sizes, spread over the centre
        n = int(rng.integers(5, 16))
        xs, ys = _ring_points(rng, geom, n, 0.0, 0.65, clustered=False)
        r = np.full(n, s * rng.uniform(0.01, 0.018))
        img = _blend(img, brown * 0.6, _dots_alpha(h, w, xs, ys, r) * 0.75)
    return img


def _paint_mel(rng, img, h, w, yy, xx, s):
    """Melanoma: asymmetric notched border, several colours in uneven zones, blue-grey veil, atypical network,
    irregular peripheral dots, streaks."""
    typ = rng.uniform(0.2, 1.0)  # how florid: some melanomas look almost like naevi
    harmonics = [(1, 0.12), (2, 0.1), (3, 0.09), (5, 0.06), (7, 0.05), (11, 0.035)]
    harmonics = [(k, amp * typ) for k, amp in harmonics]
    aspect = rng.uniform(1.0, 1.6)
    d, geom = _lesion_geometry(rng, h, w, yy, xx, rng.uniform(0.22, 0.40), aspect, harmonics, int(typ * 3.5))
    names = list(_MEL_PALETTE)
    extra = int(rng.integers(1, 2 + round(2.4 * typ)))
    chosen = ["dark_brown"] + list(rng.choice(names[1:], extra, replace=False, p=[0.3, 0.2, 0.2, 0.3]))
    fields = np.stack([_smooth_noise(rng, h, w, rng.uniform(3, 8)) for _ in chosen])  # (K, H, W)
    weights = np.exp(2.5 * fields)
    weights /= weights.sum(0, keepdims=True)
    palette = np.array([_MEL_PALETTE[c] for c in chosen], np.float32)  # (K, 3)
    colour = np.einsum("khw,kc->hwc", weights, palette) * rng.uniform(0.85, 1.15) * _texture(rng, h, w, 0.08)
    # the border is sharp in some sectors and fades in others; the pigment is patchy
    edge = 0.05 + 0.22 * _smoothstep(_smooth_noise(rng, h, w, 5) * 0.5 + 0.5)
    alpha = _smoothstep((1.0 - d) / edge) * _smoothstep(0.9 + 0.3 * _smooth_noise(rng, h, w, 9))
    img = _blend(img, colour, alpha * rng.uniform(0.85, 0.98))
    if rng.random() < 0.55 * typ + 0.1:  # blue-white veil over part of the lesion
        veil = _smoothstep(_smooth_noise(rng, h, w, 4) - 0.3) * alpha
        img = _blend(img, (132, 142, 166), veil * rng.uniform(0.35, 0.6))
    if rng.random() < 0.7:  # atypical network: thick, broken, uneven
        net = _network(rng, h, w, xx, yy, s * rng.uniform(0.045, 0.08), 0.7)
        img = _blend(img, (45, 30, 25), net * alpha * rng.uniform(0.3, 0.6))
    n = int(rng.integers(2, 4 + round(18 * typ)))  # irregular dots and globules, bunched at the periphery
    xs, ys = _ring_points(rng, geom, n, 0.55, 1.1, clustered=True)
    r = s * rng.uniform(0.006, 0.022, n)
    dark = np.array([(40, 28, 26), (70, 42, 30)][rng.integers(2)])
    dots = _dots_alpha(h, w, xs, ys, r, elong=rng.uniform(1, 1.8, n), angles=rng.uniform(0, np.pi, n))
    img = _blend(img, dark, dots * 0.85)
    if rng.random() < 0.4 * typ:  # streaks / pseudopods leaving the border
        centre = rng.uniform(0, 2 * np.pi)  # streaks come in a sector, not all round
        t = centre + rng.normal(0, 0.5, int(rng.integers(3, 9)))
        u0, v0 = np.stack([np.cos(t), np.sin(t)]) * 0.55  # start well inside the lesion
        u1, v1 = np.stack([np.cos(t), np.sin(t)]) * rng.uniform(1.05, 1.35, len(t))
        xs0, ys0 = _from_ellipse(geom, u0, v0)
        xs1, ys1 = _from_ellipse(geom, u1, v1)
        lines = [[(x0, y0), (x1, y1)] for x0, y0, x1, y1 in zip(xs0, ys0, xs1, ys1)]
        streaks = _line_alpha(h, w, lines, [max(1, round(s / 70))] * len(lines), 0.6)
        img = _blend(img, (60, 40, 32), streaks * 0.75)
    return img


def _paint_bcc(rng, img, h, w, yy, xx, s):
    """Basal cell carcinoma: pink translucent patch, little pigment, arborizing red vessels, blue-grey nests."""
    harmonics = [(2, 0.06), (3, 0.06), (5, 0.04)]
    d, geom = _lesion_geometry(rng, h, w, yy, xx, rng.uniform(0.18, 0.34), rng.uniform(1.0, 1.5), harmonics)
    pigmented = rng.random() < 0.4  # pigmented BCC: brown-grey nests and dots, weaker pink, fewer vessels
    pink = (np.array([230, 150, 148]) * rng.uniform(0.85, 1.02)).astype(np.float32)
    alpha = _smoothstep((1.0 - d) / rng.uniform(0.2, 0.45)) * rng.uniform(0.3, 0.7) * (0.6 if pigmented else 1.0)
    alpha = np.clip(alpha * (1.0 + 0.25 * _smooth_noise(rng, h, w, 6)), 0, 1)
    img = _blend(img, pink[None, None, :] * _texture(rng, h, w, 0.03), alpha)
    if rng.random() < 0.5:  # shiny white structureless areas
        shine = _smoothstep(_smooth_noise(rng, h, w, 6) - 0.8) * _smoothstep((0.9 - d) / 0.3)
        img = _blend(img, (245, 228, 226), shine * 0.45)
    lines, widths = _vessels(rng, geom, s, int(rng.integers(1, 3 if pigmented else 4)))
    inside = _smoothstep((1.15 - d) / 0.2)
    strength = rng.uniform(0.35, 0.9) * (0.6 if pigmented else 1.0)
    img = _blend(img, (165, 30, 42), _line_alpha(h, w, lines, widths, 0.5) * inside * strength)
    if pigmented or rng.random() < 0.5:  # blue-grey ovoid nests
        n = int(rng.integers(3, 9) if pigmented else rng.integers(1, 5))
        xs, ys = _ring_points(rng, geom, n, 0.0, 0.85, clustered=pigmented)
        r = s * rng.uniform(0.015, 0.04, n)
        nests = _dots_alpha(h, w, xs, ys, r, s * 0.015, rng.uniform(1.2, 2.2, n), rng.uniform(0, np.pi, n))
        colour = (84, 70, 70) if pigmented else (96, 102, 126)
        img = _blend(img, colour, nests * rng.uniform(0.45, 0.8))
    if pigmented:  # scattered brown dots, like a naevus's
        n = int(rng.integers(3, 12))
        xs, ys = _ring_points(rng, geom, n, 0.0, 0.9, clustered=True)
        img = _blend(img, (90, 60, 45), _dots_alpha(h, w, xs, ys, s * rng.uniform(0.008, 0.018, n)) * 0.8)
    return img


def _paint_bkl(rng, img, h, w, yy, xx, s):
    """Benign keratosis: tan to light brown, sharp stuck-on border, milia-like cysts, comedo-like openings."""
    atyp = rng.beta(1.5, 3.0)
    harmonics = [(2, 0.05), (3, 0.05), (4, 0.04 + 0.06 * atyp)]
    d, geom = _lesion_geometry(rng, h, w, yy, xx, rng.uniform(0.19, 0.34), rng.uniform(1.1, 1.7), harmonics)
    t = rng.uniform() * (0.6 + 0.8 * atyp)  # atypical ones are darker, nearer a naevus
    tan = (np.array([192, 144, 100]) * (1 - t) + np.array([130, 88, 60]) * t).astype(np.float32)
    alpha = _smoothstep((1.0 - d) / rng.uniform(0.02, 0.05 + 0.15 * atyp)) * rng.uniform(0.82, 0.97)
    colour = tan[None, None, :] * (1.0 + 0.1 * _smooth_noise(rng, h, w, 10))[..., None] * _texture(rng, h, w, 0.04)
    img = _blend(img, colour, alpha)
    if rng.random() < 0.6:  # cerebriform ridges and fissures
        fissure = np.exp(-((_smooth_noise(rng, h, w, 12) / 0.2) ** 2))
        img = _blend(img, tan * 0.62, fissure * alpha * rng.uniform(0.3, 0.6))
    n = int(rng.integers(0, 10))  # milia-like cysts: small white-yellow dots
    xs, ys = _ring_points(rng, geom, n, 0.0, 0.9, clustered=False)
    img = _blend(img, (238, 230, 204), _dots_alpha(h, w, xs, ys, s * rng.uniform(0.007, 0.016, n)) * 0.85)
    n = int(rng.integers(0, 10))  # comedo-like openings: dark, slightly irregular plugs
    xs, ys = _ring_points(rng, geom, n, 0.0, 0.9, clustered=False)
    r = s * rng.uniform(0.009, 0.02, n)
    plugs = _dots_alpha(h, w, xs, ys, r, elong=rng.uniform(1, 1.6, n), angles=rng.uniform(0, np.pi, n))
    img = _blend(img, (62, 42, 32), plugs * 0.8)
    if rng.random() < 0.2:  # an irritated keratosis: a few short red vessels
        lines, widths = _vessels(rng, geom, s, 1)
        img = _blend(img, (165, 30, 42), _line_alpha(h, w, lines[:3], widths[:3], 0.5) * alpha * 0.5)
    return img


_PAINTERS = {"NV": _paint_nv, "MEL": _paint_mel, "BCC": _paint_bcc, "BKL": _paint_bkl}


def _hairs(rng, img, h, w, s):
    """Thin dark curved hairs crossing the image."""
    lines = []
    for _ in range(int(rng.integers(1, 9))):
        p0 = rng.uniform([-0.1 * w, -0.1 * h], [1.1 * w, 1.1 * h])
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.0) * s
        p2 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.2 * length, 2)
        lines.append(_bezier(p0, p1, p2))
    widths = [max(1, round(s / 130 * rng.uniform(0.7, 1.6))) for _ in lines]
    hair = rng.uniform(15, 60) * np.array([1.0, 0.8, 0.7])  # black to dark brown
    return _blend(img, hair, _line_alpha(h, w, lines, widths, 0.45) * rng.uniform(0.7, 0.95))


# ------------------------------------------------------------------------------------------ public API


def draw_lesion(rng: np.random.Generator, cls: str, width: int, height: int) -> np.ndarray:
    """One dermoscopy-like image of class cls (one of DEMO_CLASSES), drawn from rng: (height, width, 3) uint8."""
    if cls not in _PAINTERS:
        raise ValueError(f"unknown demo class {cls!r}; choose one of {DEMO_CLASSES}")
    h, w, s = int(height), int(width), min(int(width), int(height))
    yy = np.arange(h, dtype=np.float32)[:, None]  # (H, 1): sparse grids, broadcast where combined
    xx = np.arange(w, dtype=np.float32)[None, :]  # (1, W)
    img = _background(rng, h, w, yy, xx)
    img = _PAINTERS[cls](rng, img, h, w, yy, xx, s)
    if rng.random() < 0.4:
        img = _hairs(rng, img, h, w, s)
    camera = rng.uniform(0.8, 1.12) * rng.normal(1.0, 0.035, 3)  # exposure and white balance differ per camera
    img = img * camera.astype(np.float32)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.35 * s / 144))
    noisy = np.asarray(out, np.float32) + 2.0 * rng.standard_normal((h, w, 3), dtype=np.float32)  # sensor grain
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def demo_class_counts(n_images):
    """Images per class for n_images in ISIC proportions (largest remainder); each class at least once if it fits."""
    total = sum(DEMO_CLASS_COUNTS_ISIC.values())
    share = np.array([DEMO_CLASS_COUNTS_ISIC[c] / total for c in DEMO_CLASSES])
    floor = np.maximum(np.floor(share * n_images), 1 if n_images >= len(DEMO_CLASSES) else 0).astype(int)
    order = np.argsort(-(share * n_images - floor), kind="stable")
    i = 0
    while floor.sum() < n_images:
        floor[order[i % len(order)]] += 1
        i += 1
    while floor.sum() > n_images:  # only when the at-least-one rule overshot: take from the largest class
        floor[np.argmax(floor)] -= 1
    return dict(zip(DEMO_CLASSES, floor.tolist()))


def _spec(n_images, seed, width, height):
    return {"version": DEMO_VERSION, "n_images": n_images, "seed": seed, "width": width, "height": height,
            "classes": list(DEMO_CLASSES), "jpeg_quality": JPEG_QUALITY}


def _is_complete(root, spec):
    """True when root holds a finished demo dataset generated with exactly this spec."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if any(manifest.get(k) != v for k, v in spec.items()):
        return False
    img_dir = Path(root) / IMAGE_DIR
    if not ((Path(root) / GROUND_TRUTH).is_file() and img_dir.is_dir()):
        return False
    return len(os.listdir(img_dir)) == spec["n_images"]  # cheap, and catches deleted images


def _looks_like_demo(root):
    """A folder we may replace: empty, or holding only what ensure_demo_dataset writes."""
    return set(os.listdir(root)) <= {IMAGE_DIR, GROUND_TRUTH, MANIFEST}


def _write_dataset(folder, spec):
    n, seed, w, h = spec["n_images"], spec["seed"], spec["width"], spec["height"]
    counts = demo_class_counts(n)
    labels = np.repeat(np.arange(len(DEMO_CLASSES)), [counts[c] for c in DEMO_CLASSES])
    labels = np.random.default_rng(seed).permutation(labels)  # classes interleaved, as in ISIC's file order
    (folder / IMAGE_DIR).mkdir()
    rows = []
    for i, label in enumerate(labels):
        name = f"ISIC_demo_{i:07d}"
        pixels = draw_lesion(np.random.default_rng([seed, i]), DEMO_CLASSES[label], w, h)  # per-image stream
        Image.fromarray(pixels).save(folder / IMAGE_DIR / f"{name}.jpg", "JPEG", quality=JPEG_QUALITY)
        rows.append([name] + ["1.0" if k == label else "0.0" for k in range(len(DEMO_CLASSES))])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", *DEMO_CLASSES])
    writer.writerows(rows)
    (folder / GROUND_TRUTH).write_text(buf.getvalue())
    (folder / MANIFEST).write_text(json.dumps({**spec, "counts": counts}, indent=2) + "\n")  # written last


def _remove_stale_temps(root):
    """Delete temporary siblings left by killed generations (their process is gone, or, off POSIX, over an hour)."""
    prefix = f".{root.name}."
    for tmp in root.parent.glob(f"{prefix}*-tmp*"):
        try:
            pid = int(tmp.name[len(prefix) :].split("-tmp")[0])  # named by _temp_dir: .<root>.<pid>-tmp...
        except ValueError:
            pid = None
        alive = pid is not None and os.name == "posix" and _pid_alive(pid)
        if not alive and (os.name == "posix" or time.time() - tmp.stat().st_mtime > 3600):
            shutil.rmtree(tmp, ignore_errors=True)


def _temp_dir(root, tag):
    """A fresh hidden sibling of root, named after this process so stale ones can be told apart."""
    path = Path(tempfile.mkdtemp(prefix=f".{root.name}.{os.getpid()}-tmp{tag}-", dir=root.parent))
    path.chmod(0o755)  # mkdtemp makes it private; the dataset it becomes should not be
    return path


def _pid_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0 only checks existence (POSIX)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def ensure_demo_dataset(root=DEFAULT_DEMO_DIR, n_images=600, seed=0, width=192, height=144, log=print) -> Path:
    """Write the demo lesions under root in the ISIC 2019 layout unless an identical set is already there.

    Layout: root/ISIC_2019_Training_Input/ISIC_demo_<7 digits>.jpg, root/ISIC_2019_Training_GroundTruth.csv
    (`image,MEL,NV,BCC,BKL`, one-hot 1.0/0.0) and root/demo_manifest.json (what was generated). The set is
    drawn in a temporary sibling folder and renamed into place, so a killed run never leaves a partial set
    that looks complete. Returns root.
    """
    root = Path(root).expanduser().resolve()
    for name, value, low in (
        ("n_images", n_images, 1),
        ("width", width, 16),
        ("height", height, 16),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"demo lesions: {name}={value!r} must be an integer >= {low}")
    spec = _spec(int(n_images), int(seed), int(width), int(height))
    if _is_complete(root, spec):
        return root
    if root.exists() and not (root.is_dir() and _looks_like_demo(root)):
        raise ConfigError(f"{root} exists and is not a demo-lesion folder; move it away or pass another root")
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    log(f"demo: drawing {n_images} lesion images ({width}x{height}, seed {seed}) into {root} ...")
    start = time.time()
    tmp = _temp_dir(root, "new")
    try:
        _write_dataset(tmp, spec)
        if _is_complete(root, spec):  # another process finished the same set meanwhile
            shutil.rmtree(tmp)
            return root
        if root.exists():  # an older or partial set: move it aside, then swap the new one in
            old = _temp_dir(root, "old")
            os.replace(root, old / "x")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_complete(root, spec):  # lost a race to a concurrent generation of the same set
            return root
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"demo: wrote {n_images} images in {time.time() - start:.1f} s ({demo_class_counts(n_images)})")
    return root
