"""Built-in demo data: procedurally drawn dermoscopy-like lesions of ISIC 2019's 8 classes, written once in its layout.

The classes are told apart by the structures dermoscopy reads (networks, dots and globules, vessel patterns,
regression, borders, asymmetry, size) more than by colour: the colours overlap across classes (naevus, melanoma,
keratosis and dermatofibroma share one brown scale; BCC, AK and SCC the pinks), and every class has variants
that look like another (atypical and pale dermal naevi, amelanotic and naevus-like melanomas, pigmented BCC,
AK and SCC, lentigo-like and inflamed keratoses, dermatofibromas without their scar, thrombosed angiomas):

- MEL  melanoma: large, asymmetric notched contour, several colours in uneven zones, an off-centre blotch,
       atypical (thick, broken) network, irregular peripheral dots, streaks in a sector, blue-white veil,
       regression (white scar-like area with grey peppering); amelanotic ones are pink with dotted and
       irregular linear vessels.
- NV   naevus: small to medium, symmetric round/oval, one brown; a regular fine network fading out to the rim,
       or regular globules on an even grid, or structureless; dermal naevi pale pinkish with comma vessels.
- BCC  basal cell carcinoma: translucent pink, sharp branching (arborizing) vessels, blue-grey ovoid nests,
       leaf-like areas at the rim, shiny white areas, sometimes an ulcer crust.
- AK   actinic keratosis: ill-defined red patch, "strawberry" pseudo-network around white follicle openings
       with dark plugs, white-yellow surface scale, on sun-damaged skin.
- BKL  benign keratosis: a stuck-on seborrhoeic keratosis with a sharp moth-eaten border, fissures, milia-like
       cysts, comedo-like openings and, when inflamed, looped vessels; a solar lentigo (light, flat,
       fingerprint lines); or a lichen-planus-like keratosis (dense grey peppering).
- DF   dermatofibroma: small and round, a delicate network in a ring around a central white scar-like patch.
- VASC vascular lesion: sharply bordered red, purple or dark lacunae (round clods) between pale septa.
- SCC  squamous cell carcinoma: pink, a central white-yellow keratin mass, clusters of coiled (glomerular)
       vessels, hairpin vessels with white halos, white circles, blood spots.

Nuisances shared by all classes: skin tone, erythema, sun damage, uneven light, vignetting and the dermoscope's
round rim, hair, air bubbles, ink marks, zoom, rotation, focus, colour saturation, exposure, white balance and
sensor grain. Class counts follow ISIC 2019's imbalance with a floor per class (demo_class_counts).
"""
import csv
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from common.config import ConfigError
from common.runs import REPO_ROOT

DEMO_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")  # ISIC 2019's, in its CSV's order
CSV_COLUMNS = ("image", *DEMO_CLASSES, "UNK")  # ISIC 2019's header; UNK ("none of the others") is never 1
# Class shares follow ISIC 2019's training counts, so the demo is imbalanced the way real data is ...
DEMO_CLASS_COUNTS_ISIC = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253,
                          "SCC": 628}
# ... except that no class gets fewer images than this, so stratified train / validation / test splits each
# hold a few of every class (ISIC's DF would get 7 of 720 images).
DEMO_MIN_PER_CLASS = 30  # images
DEFAULT_N_IMAGES = 720  # images; the demo search's budget grows linearly with it
DEFAULT_DEMO_DIR = REPO_ROOT / "data" / "demo_lesions"
DEMO_VERSION = 3  # bump when the drawing changes, so cached demo folders are regenerated
JPEG_QUALITY = 92
IMAGE_DIR = "ISIC_2019_Training_Input"
GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
MANIFEST = "demo_manifest.json"

# Colours (RGB, 0-255) loosely after dermoscopy atlases.
_SKIN_LIGHT = np.array([236.0, 196.0, 172.0], np.float32)
_SKIN_DARK = np.array([176.0, 118.0, 88.0], np.float32)
_BROWNS = np.array([[204, 156, 116], [150, 100, 68], [96, 60, 42], [50, 34, 30]], np.float32)  # tan .. near black
_PINK = np.array([228, 148, 146], np.float32)
_VESSEL_RED = np.array([170, 34, 46], np.float32)
_BLUE_GREY = np.array([104, 112, 136], np.float32)
_WHITE = np.array([242, 232, 226], np.float32)
_KERATIN = np.array([236, 224, 192], np.float32)


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


def _brown(t):
    """Pigment colour along one shared scale: t=0 tan, 1/3 mid brown, 2/3 dark brown, 1 near black. (3,)"""
    pos = np.clip(t, 0.0, 1.0) * (len(_BROWNS) - 1)
    i = min(int(pos), len(_BROWNS) - 2)
    return _BROWNS[i] + (_BROWNS[i + 1] - _BROWNS[i]) * np.float32(pos - i)


def _dots_alpha(h, w, centres, rs, softness=0.8, *, elong=None, angles=None, ring=None):
    """Soft discs (or ovals: elong > 1 along angles) at centres (xs, ys) with radii rs, as one (H, W) alpha map.

    ring: a line width; then only each disc's outline (width ring) is drawn.
    """
    xs, ys = centres
    out = np.zeros((h, w), np.float32)
    elong = np.ones(len(xs)) if elong is None else elong
    angles = np.zeros(len(xs)) if angles is None else angles
    for x, y, r, e, t in zip(xs, ys, rs, elong, angles):
        reach = r * e + (ring or 0)
        x0, x1 = max(0, int(x - reach - 2)), min(w, int(x + reach + 3))
        y0, y1 = max(0, int(y - reach - 2)), min(h, int(y + reach + 3))
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = ((xx - x) * np.cos(t) + (yy - y) * np.sin(t)) / e
        v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
        d = np.sqrt(u**2 + v**2)
        if ring:
            a = np.clip((ring / 2 - np.abs(d - r)) / softness + 0.5, 0.0, 1.0)
        else:
            a = np.clip((r - d) / softness + 0.5, 0.0, 1.0)
        np.maximum(out[y0:y1, x0:x1], a, out=out[y0:y1, x0:x1])
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


def _patches(rng, h, w, cells, cover):
    """Smooth random blobs covering about `cover` of the image: (H, W) in [0, 1]."""
    z = NormalDist().inv_cdf(1.0 - cover)  # the noise is about N(0, 1): this level leaves `cover` above it
    return _smoothstep((_smooth_noise(rng, h, w, cells) - z) * 2.0 + 0.5)


# ------------------------------------------------------------------------------------------ components


def _background(rng, h, w, yy, xx, sun_damage):
    """Skin with fine texture, uneven lighting, vignetting and, often, the dermoscope's dark round rim."""
    tone = rng.beta(2.0, 2.5)
    base = (_SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone).astype(np.float32)
    mottle = 0.025 * _smooth_noise(rng, h, w, 5) + 0.012 * _smooth_noise(rng, h, w, 30)
    img = base[None, None, :] * (1.0 + mottle[..., None])
    redness = rng.uniform(0.0, 0.12) * np.clip(_smooth_noise(rng, h, w, 3) + 0.3, 0, None)  # erythema, any class
    img[..., 1:] *= 1.0 - redness[..., None]
    if rng.random() < sun_damage:  # sun-damaged skin: faint brown freckling around the lesion
        freckles = _patches(rng, h, w, 28, 0.25) * _smoothstep(_smooth_noise(rng, h, w, 4) + 0.5)
        img = _blend(img, base * 0.82, freckles * rng.uniform(0.15, 0.35))
    furrows = np.exp(-((_smooth_noise(rng, h, w, 18) / 0.12) ** 2))  # skin surface lines, faintly lighter
    img = _blend(img, base * 1.08, furrows * rng.uniform(0.05, 0.2))
    cx, cy = w / 2.0, h / 2.0
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx**2 + cy**2)
    angle = rng.uniform(0, 2 * np.pi)
    grad = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / max(w, h)
    light = (1.0 - rng.uniform(0.1, 0.4) * r2) * (1.0 + rng.uniform(0.0, 0.35) * grad)
    img = img * light[..., None]
    if rng.random() < 0.5:  # the dermoscope's round field of view: dark corners
        radius = rng.uniform(0.40, 0.49) * np.hypot(w, h)
        rim = _smoothstep((np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) - radius) / (0.05 * min(w, h)) + 0.5)
        img = _blend(img, rng.uniform(6, 24, 3), rim)
    return img.astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class _Contour:
    """A class's lesion outline before its random placement: an ellipse of radius `size` (fraction of s, the short
    side times the zoom) and `aspect`, its radius modulated by cos(k*phi) `harmonics` (k, amplitude) and cut by
    `notches` sharp inward dents."""

    size: float
    aspect: float
    harmonics: list  # of (k, amplitude); each amplitude is drawn at 0.5-1x of its value
    notches: int = 0


def _lesion_geometry(rng, h, w, yy, xx, s, contour):
    """Normalised distance d (H, W), < 1 inside the lesion of _Contour `contour`, and its ellipse (cx, cy, a, b, rot),
    placed near the image's centre at a random angle."""
    size, aspect, harmonics, notches = contour.size, contour.aspect, contour.harmonics, contour.notches
    a = float(s * size)
    b = a / aspect
    cx = w / 2.0 + rng.normal(0, 0.06) * w
    cy = h / 2.0 + rng.normal(0, 0.06) * h
    rot = rng.uniform(0, np.pi)
    cos, sin = float(np.cos(rot)), float(np.sin(rot))  # Python floats keep the float32 grids float32
    u = (xx - cx) * cos + (yy - cy) * sin
    v = -(xx - cx) * sin + (yy - cy) * cos
    phi = np.arctan2(v / b, u / a)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    contour = np.ones_like(phi)
    for k, amp in harmonics:
        contour += float(rng.uniform(0.5, 1.0) * amp) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    for _ in range(notches):
        centre, width = rng.uniform(-np.pi, np.pi), rng.uniform(0.12, 0.35)
        gap = (phi - centre + np.pi) % (2 * np.pi) - np.pi  # angular distance to the notch, wrapped
        contour -= rng.uniform(0.1, 0.25) * np.exp(-((gap / width) ** 2))
    return rho / np.maximum(contour, 0.3), (cx, cy, a, b, rot)


def _network(rng, h, w, xx, yy, period, irregular):
    """Pigment network: a honeycomb-like line pattern, (H, W) in [0, 1]; irregular > 0 distorts and breaks it."""
    rot = rng.uniform(0, np.pi)
    cos, sin = float(np.cos(rot)), float(np.sin(rot))
    u = xx * cos + yy * sin
    v = -xx * sin + yy * cos
    period = float(period)
    warp = period * (0.25 + irregular)
    u = u + warp * _smooth_noise(rng, h, w, 12)
    v = v + warp * _smooth_noise(rng, h, w, 12)
    f = np.pi / period
    g = np.minimum(np.abs(np.sin(u * f)), np.abs(np.sin((v + 0.5 * period * np.sin(u * f)) * f)))  # offset rows
    thickness = 0.22 * (1.0 + irregular * np.clip(_smooth_noise(rng, h, w, 9), -0.8, 1.5))
    lines = np.exp(-((g / thickness) ** 2))
    if irregular > 0:  # broken, patchy network
        lines *= _smoothstep(_smooth_noise(rng, h, w, 7) * 0.8 + 0.4 - 0.4 * irregular)
    return lines


def _parallel_lines(rng, h, w, xx, yy, period):
    """Fine wavy parallel lines (a solar lentigo's fingerprint pattern): (H, W) in [0, 1]."""
    rot, period = rng.uniform(0, np.pi), float(period)
    u = xx * float(np.cos(rot)) + yy * float(np.sin(rot)) + period * 1.5 * _smooth_noise(rng, h, w, 6)
    return np.exp(-((np.sin(u * np.pi / period) / 0.35) ** 2))


def _ring_points(rng, geom, n, d_lo, d_hi, clustered):
    """n points in the lesion's ellipse at normalised radius d_lo..d_hi; clustered bunches them by angle."""
    if clustered:
        centres = rng.uniform(0, 2 * np.pi, max(1, n // 5))
        t = rng.choice(centres, n) + rng.normal(0, 0.35, n)
    else:
        t = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(d_lo**2, d_hi**2, n))
    return _from_ellipse(geom, r * np.cos(t), r * np.sin(t))


def _grid_points(rng, geom, spacing, d_max, jitter):
    """Points on a jittered hexagonal grid (spacing in image px) inside the ellipse up to radius d_max."""
    cx, cy, a, b, rot = geom
    rows = np.arange(-a, a + spacing, spacing * 0.866)
    pts = [(x + (spacing / 2 if i % 2 else 0), y) for i, y in enumerate(rows) for x in np.arange(-a, a + spacing, spacing)]
    u, v = np.array(pts, np.float64).T + rng.normal(0, jitter * spacing, (2, len(pts)))
    keep = (u / a) ** 2 + (v / b) ** 2 < d_max**2
    return _from_ellipse(geom, u[keep] / a, v[keep] / b)


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


def _hairpins(rng, xs, ys, s):
    """Short looped (hairpin) vessels at (xs, ys), as polylines."""
    out = []
    for x, y in zip(xs, ys):
        ang, length, gap = rng.uniform(0, 2 * np.pi), s * rng.uniform(0.03, 0.06), s * rng.uniform(0.008, 0.014)
        d, n = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
        p = np.array([x, y])
        out.append(_bezier(p + n * gap, p + d * length * 1.3, p - n * gap))
    return out


def _texture(rng, h, w, amount):
    """Multiplicative fine texture for a lesion's body: (H, W, 1) around 1."""
    return (1.0 + amount * (_smooth_noise(rng, h, w, 20) + 0.5 * _smooth_noise(rng, h, w, 45)))[..., None]


def _body(rng, img, d, colour, edge, opacity):
    """Fill the lesion (d < 1) with colour, fading over `edge` of its radius: returns (img, alpha)."""
    alpha = _smoothstep((1.0 - d) / edge) * opacity
    return _blend(img, colour, alpha), alpha


def _peppering(rng, img, geom, s, n, d_hi, strength):
    """n fine grey-blue granules (melanophages) out to radius d_hi of the lesion, clustered: a sign of regression."""
    h, w = img.shape[:2]
    xs, ys = _ring_points(rng, geom, n, 0.0, d_hi, clustered=True)
    dots = _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.004, 0.009, n), 0.6)
    return _blend(img, (96, 96, 112), dots * strength)


def _ulcer(rng, img, h, w, geom, s):
    """A crusted erosion: an irregular dark red-brown to orange blob somewhere in the lesion."""
    xs, ys = _ring_points(rng, geom, 1, 0.0, 0.6, clustered=False)
    r = s * rng.uniform(0.04, 0.09)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    dist = np.sqrt((xx - xs[0]) ** 2 + (yy - ys[0]) ** 2) / r + 0.35 * _smooth_noise(rng, h, w, 14)
    crust = [(120, 40, 32), (150, 78, 40), (82, 34, 30)][rng.integers(3)]
    return _blend(img, crust, _smoothstep((1.0 - dist) / 0.3) * rng.uniform(0.7, 0.9))


# ---------------------------------------------------------------------------------------------- classes
# Each painter draws one class's lesion onto the skin. Structures come with probabilities and strengths, so
# any one cue may be missing; variants and `atyp` move an image towards another class's look.


def _paint_nv(rng, img, h, w, yy, xx, s):
    """Naevus: symmetric, round/oval, one brown, smooth border; regular network, regular globules or none.
    Dermal naevi are pale pinkish tan with comma-shaped vessels."""
    atyp = rng.beta(1.2, 5.0)
    harmonics = [(2, 0.03 + 0.08 * atyp), (3, 0.03 + 0.07 * atyp), (5, 0.05 * atyp)]
    contour = _Contour(size=rng.uniform(0.13, 0.30), aspect=rng.uniform(1.0, 1.35), harmonics=harmonics)
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    dermal = rng.random() < 0.2
    brown = 0.4 * _brown(rng.uniform(0.0, 0.35)) + 0.6 * _PINK if dermal else _brown(rng.uniform(0.1, 0.8))
    inner = 1.0 - np.clip(d, 0, 1)
    shade = 1.0 + rng.uniform(-0.2, 0.15) * inner  # centre a bit darker or lighter, evenly all round
    colour = brown[None, None, :] * shade[..., None] * _texture(rng, h, w, 0.04)
    if atyp > 0.35:  # a dysplastic naevus: a second, darker brown patch
        colour = colour * (1.0 - 0.35 * _patches(rng, h, w, 4, 0.3))[..., None]
    if rng.random() < 0.12:  # irritated naevus: a pink rim
        img = _blend(img, _PINK, _smoothstep((1.35 - d) / 0.4) * rng.uniform(0.2, 0.45))
    img, alpha = _body(rng, img, d, colour, rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.95))
    pattern = rng.choice(3, p=[0.45, 0.3, 0.25])  # reticular | globular | structureless
    if pattern == 0 or rng.random() < 0.2:
        net = _network(rng, h, w, xx, yy, s * rng.uniform(0.035, 0.055), 0.3 * atyp) * np.sqrt(inner)
        img = _blend(img, brown * 0.55, net * alpha * rng.uniform(0.35, 0.6) * (1.0 if pattern == 0 else 0.5))
    if pattern == 1:  # globules of one size on an even grid
        spacing = s * rng.uniform(0.045, 0.07)
        xs, ys = _grid_points(rng, geom, spacing, rng.uniform(0.7, 0.9), 0.15 + 0.3 * atyp)
        r = np.full(len(xs), spacing * rng.uniform(0.22, 0.32))
        img = _blend(img, brown * 0.6, _dots_alpha(h, w, (xs, ys), r) * rng.uniform(0.6, 0.85))
    if dermal:  # comma vessels: short curved red arcs
        xs, ys = _ring_points(rng, geom, int(rng.integers(3, 9)), 0.1, 0.85, clustered=False)
        arcs = [_bezier(np.array([x, y]), np.array([x, y]) + rng.normal(0, s * 0.02, 2),
                        np.array([x, y]) + rng.normal(0, s * 0.03, 2)) for x, y in zip(xs, ys)]
        img = _blend(img, _VESSEL_RED, _line_alpha(h, w, arcs, [1] * len(arcs), 0.4) * alpha * 0.8)
    return img


def _paint_mel(rng, img, h, w, yy, xx, s):
    """Melanoma: asymmetric notched border, several colours in uneven zones, off-centre blotch, atypical network,
    irregular peripheral dots, streaks, blue-white veil, regression."""
    typ = rng.uniform(0.15, 1.0)  # how florid: some melanomas look almost like naevi
    harmonics = [(k, amp * typ) for k, amp in [(1, 0.12), (2, 0.1), (3, 0.09), (5, 0.06), (7, 0.05), (11, 0.035)]]
    size = rng.uniform(0.18, 0.40)
    contour = _Contour(size=size, aspect=rng.uniform(1.0, 1.6), harmonics=harmonics, notches=int(typ * 3.5))
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    t0 = rng.uniform(0.15, 0.75)
    palette = [_brown(t0), _brown(t0 + rng.uniform(0.2, 0.45))]
    extras = [_brown(1.0), _BLUE_GREY, np.array([168, 86, 80], np.float32), _brown(t0 - 0.25)]
    for i in rng.choice(len(extras), int(rng.integers(0, 1 + round(2.5 * typ))), replace=False):
        palette.append(extras[i])
    amelanotic = rng.random() < 0.12  # little pigment: pink zones with polymorphous vessels
    if amelanotic:
        palette = [0.25 * c + 0.75 * _PINK for c in palette]
    fields = np.stack([_smooth_noise(rng, h, w, rng.uniform(3, 7)) for _ in palette])  # (K, H, W)
    weights = np.exp(2.5 * fields)
    weights /= weights.sum(0, keepdims=True)
    colour = np.einsum("khw,kc->hwc", weights, np.stack(palette)) * _texture(rng, h, w, 0.07)
    edge = 0.05 + 0.25 * _smoothstep(_smooth_noise(rng, h, w, 5) * 0.5 + 0.5)  # sharp in some sectors only
    img, alpha = _body(rng, img, d, colour, edge, rng.uniform(0.8, 0.97))
    if amelanotic:  # dotted and short irregular linear vessels together
        xs, ys = _ring_points(rng, geom, int(rng.integers(10, 30)), 0.0, 0.9, clustered=True)
        img = _blend(img, _VESSEL_RED, _dots_alpha(h, w, (xs, ys), np.full(len(xs), s * 0.007), 0.5) * alpha * 0.8)
        xs, ys = _ring_points(rng, geom, int(rng.integers(3, 8)), 0.0, 0.9, clustered=False)
        wiggles = [_bezier(np.array([x, y]), np.array([x, y]) + rng.normal(0, s * 0.04, 2),
                           np.array([x, y]) + rng.normal(0, s * 0.06, 2)) for x, y in zip(xs, ys)]
        img = _blend(img, _VESSEL_RED, _line_alpha(h, w, wiggles, [1] * len(wiggles), 0.4) * alpha * 0.75)
    if rng.random() < (0.4 + 0.4 * typ) * (0.3 if amelanotic else 1.0):  # an off-centre dark blotch
        bx, by = _ring_points(rng, geom, 1, 0.3, 0.65, clustered=False)
        br = s * size * rng.uniform(0.25, 0.5)
        blob = np.exp(-(((xx - bx[0]) ** 2 + (yy - by[0]) ** 2) / br**2)) * (1 + 0.3 * _smooth_noise(rng, h, w, 10))
        img = _blend(img, _brown(rng.uniform(0.75, 1.0)), np.clip(blob, 0, 1) * alpha * rng.uniform(0.5, 0.85))
    if rng.random() < 0.45 * typ:  # blue-white veil over part of the lesion
        img = _blend(img, (132, 142, 166), _patches(rng, h, w, 4, 0.3) * alpha * rng.uniform(0.35, 0.6))
    if rng.random() < 0.65:  # atypical network: thick, broken, uneven
        net = _network(rng, h, w, xx, yy, s * rng.uniform(0.045, 0.08), 0.3 + 0.5 * typ)
        img = _blend(img, _brown(0.9), net * alpha * rng.uniform(0.3, 0.6))
    if rng.random() < 0.75:  # irregular dots and globules, bunched at the periphery
        n = int(rng.integers(3, 5 + round(16 * typ)))
        xs, ys = _ring_points(rng, geom, n, 0.55, 1.1, clustered=True)
        dots = _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.006, 0.022, n), elong=rng.uniform(1, 1.8, n),
                           angles=rng.uniform(0, np.pi, n))
        img = _blend(img, _brown(rng.uniform(0.7, 1.0)), dots * 0.85)
    if rng.random() < 0.4 * typ + 0.05:  # streaks / pseudopods leaving the border in one sector
        t = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.5, int(rng.integers(3, 9)))
        xs0, ys0 = _from_ellipse(geom, np.cos(t) * 0.6, np.sin(t) * 0.6)
        far = rng.uniform(1.05, 1.35, len(t))
        xs1, ys1 = _from_ellipse(geom, np.cos(t) * far, np.sin(t) * far)
        lines = [[(x0, y0), (x1, y1)] for x0, y0, x1, y1 in zip(xs0, ys0, xs1, ys1)]
        img = _blend(img, _brown(0.85), _line_alpha(h, w, lines, [max(1, round(s / 70))] * len(lines), 0.6) * 0.75)
    if rng.random() < 0.35:  # regression: a white scar-like area peppered with grey granules
        zone = _patches(rng, h, w, 6, 0.2) * _smoothstep((0.85 - d) / 0.2) * _texture(rng, h, w, 0.3)[..., 0]
        img = _blend(img, _WHITE * 0.95, np.clip(zone, 0, 1) * rng.uniform(0.3, 0.6))
        img = _peppering(rng, img, geom, s, int(rng.integers(20, 60)), 0.85, 0.6)
    return img


def _paint_bcc(rng, img, h, w, yy, xx, s):
    """Basal cell carcinoma: translucent pink, arborizing vessels, blue-grey nests, leaf-like areas, shiny white."""
    harmonics = [(2, 0.06), (3, 0.06), (5, 0.04)]
    contour = _Contour(size=rng.uniform(0.16, 0.34), aspect=rng.uniform(1.0, 1.5), harmonics=harmonics)
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    pigmented = rng.random() < 0.5  # pigmented BCC: brown-grey nests and leaf-like areas, weaker pink
    pink = _PINK * rng.uniform(0.85, 1.02)
    if pigmented:
        pink = 0.5 * pink + 0.5 * _brown(rng.uniform(0.05, 0.4))
    opacity = rng.uniform(0.3, 0.65) * (0.6 if pigmented else 1.0)
    img, alpha = _body(rng, img, d, pink[None, None, :] * _texture(rng, h, w, 0.03), rng.uniform(0.2, 0.45), opacity)
    if rng.random() < 0.5:  # shiny white structureless areas and short white strands
        img = _blend(img, _WHITE, _patches(rng, h, w, 6, 0.2) * _smoothstep((0.9 - d) / 0.3) * 0.45)
    if rng.random() < 0.9:  # sharp, branching, in focus
        lines, widths = _vessels(rng, geom, s, int(rng.integers(1, 3 if pigmented else 4)))
        strength = rng.uniform(0.35, 0.9) * (0.6 if pigmented else 1.0)
        img = _blend(img, _VESSEL_RED, _line_alpha(h, w, lines, widths, 0.4) * _smoothstep((1.15 - d) / 0.2) * strength)
    if pigmented or rng.random() < 0.45:  # blue-grey ovoid nests
        n = int(rng.integers(3, 9) if pigmented else rng.integers(1, 5))
        xs, ys = _ring_points(rng, geom, n, 0.0, 0.85, clustered=pigmented)
        r = s * rng.uniform(0.015, 0.04, n)
        nests = _dots_alpha(h, w, (xs, ys), r, s * 0.015, elong=rng.uniform(1.2, 2.2, n),
                            angles=rng.uniform(0, np.pi, n))
        img = _blend(img, (84, 74, 78) if pigmented else _BLUE_GREY, nests * rng.uniform(0.45, 0.8))
    if pigmented and rng.random() < 0.6:  # leaf-like areas: bulbous projections pointing out at the rim
        n = int(rng.integers(3, 8))
        t = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.8, n)
        xs, ys = _from_ellipse(geom, np.cos(t) * 0.85, np.sin(t) * 0.85)
        leaves = _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.012, 0.02, n), 0.8, elong=rng.uniform(1.8, 2.8, n),
                             angles=t + geom[4])
        img = _blend(img, (92, 76, 70), leaves * 0.75)
    if rng.random() < 0.25:
        img = _ulcer(rng, img, h, w, geom, s)
    return img


def _paint_ak(rng, img, h, w, yy, xx, s):
    """Actinic keratosis: ill-defined red patch, strawberry pattern (red pseudo-network around white follicle
    openings with plugs), white-yellow scale; some are pigmented."""
    harmonics = [(2, 0.1), (3, 0.1), (4, 0.08)]
    contour = _Contour(size=rng.uniform(0.2, 0.42), aspect=rng.uniform(1.0, 1.5), harmonics=harmonics)
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    pigmented = rng.random() < 0.4
    base = _PINK * rng.uniform(0.88, 1.0) * np.array([1.0, 0.9, 0.9], np.float32)
    if pigmented:
        base = 0.5 * base + 0.5 * _brown(rng.uniform(0.1, 0.5))
    body = base[None, None, :] * (1.0 - 0.12 * _patches(rng, h, w, 8, 0.4))[..., None]
    img, alpha = _body(rng, img, d, body, rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.65))
    net = _network(rng, h, w, xx, yy, s * rng.uniform(0.05, 0.08), 0.4)  # pseudo-network between follicles
    net_colour = _brown(0.5) if pigmented else np.array([186, 76, 78], np.float32)
    img = _blend(img, net_colour, net * alpha * rng.uniform(0.25, 0.5))
    if rng.random() < 0.8:  # follicle openings: white-yellow rings with a dark keratin plug
        spacing = s * rng.uniform(0.05, 0.08)
        xs, ys = _grid_points(rng, geom, spacing, 0.85, 0.3)
        keep = rng.random(len(xs)) < rng.uniform(0.4, 0.9)
        xs, ys = xs[keep], ys[keep]
        r = spacing * rng.uniform(0.18, 0.28, len(xs))
        img = _blend(img, _KERATIN, _dots_alpha(h, w, (xs, ys), r) * alpha * 1.3 * rng.uniform(0.5, 0.8))
        pick = rng.random(len(xs)) < 0.6
        plugs = _dots_alpha(h, w, (xs[pick], ys[pick]), r[pick] * 0.4, 0.5)
        img = _blend(img, _brown(0.7), plugs * rng.uniform(0.4, 0.8))
    if rng.random() < 0.7:  # surface scale
        scale = _patches(rng, h, w, rng.uniform(6, 12), rng.choice([0.2, 0.3])) * _smoothstep((1.0 - d) / 0.3)
        img = _blend(img, _KERATIN * 1.02, scale * _texture(rng, h, w, 0.15)[..., 0] * rng.uniform(0.4, 0.75))
    if pigmented and rng.random() < 0.6:  # grey granules around follicles
        img = _peppering(rng, img, geom, s, int(rng.integers(15, 40)), 0.9, 0.5)
    return img


def _paint_bkl(rng, img, h, w, yy, xx, s):
    """Benign keratosis: seborrhoeic keratosis (stuck-on, sharp moth-eaten border, fissures, cysts, openings),
    solar lentigo (light, flat, fingerprint lines) or lichen-planus-like keratosis (grey peppering)."""
    variant = rng.choice(3, p=[0.55, 0.3, 0.15])  # SK | lentigo | LPLK
    harmonics = [(2, 0.05), (3, 0.05), (4, 0.06)]
    size = rng.uniform(0.16, 0.34) if variant == 0 else rng.uniform(0.18, 0.38)
    contour = _Contour(size=size, aspect=rng.uniform(1.1, 1.7), harmonics=harmonics, notches=int(rng.integers(0, 4)))
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    if variant == 1:  # solar lentigo
        tan = _brown(rng.uniform(0.0, 0.4))
        img, alpha = _body(rng, img, d, tan[None, None, :] * _texture(rng, h, w, 0.05), rng.uniform(0.04, 0.12),
                           rng.uniform(0.45, 0.8))
        if rng.random() < 0.65:
            lines = _parallel_lines(rng, h, w, xx, yy, s * rng.uniform(0.03, 0.045))
            img = _blend(img, tan * 0.72, lines * alpha * rng.uniform(0.3, 0.55))
        return img
    if variant == 2:  # LPLK: a faded keratosis, pinkish-brown, densely peppered
        tone = 0.5 * _brown(rng.uniform(0.1, 0.5)) + 0.5 * _PINK
        img, alpha = _body(rng, img, d, tone, rng.uniform(0.05, 0.2), rng.uniform(0.35, 0.6))
        return _peppering(rng, img, geom, s, int(rng.integers(60, 140)), 0.95, 0.7)
    irritated = rng.random() < 0.2  # an inflamed keratosis: pinker, with looped vessels
    tan = 0.5 * _brown(rng.uniform(0.0, 0.5)) + 0.5 * _PINK if irritated else _brown(rng.uniform(0.0, 0.75))
    colour = tan[None, None, :] * (1.0 + 0.1 * _smooth_noise(rng, h, w, 10))[..., None] * _texture(rng, h, w, 0.05)
    img, alpha = _body(rng, img, d, colour, rng.uniform(0.02, 0.08), rng.uniform(0.82, 0.97))
    if rng.random() < 0.6:  # cerebriform ridges and fissures
        fissure = np.exp(-((_smooth_noise(rng, h, w, 12) / 0.2) ** 2))
        img = _blend(img, tan * 0.62, fissure * alpha * rng.uniform(0.3, 0.6))
    n = int(rng.integers(0, 10))  # milia-like cysts: small white-yellow dots
    xs, ys = _ring_points(rng, geom, n, 0.0, 0.9, clustered=False)
    img = _blend(img, _KERATIN, _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.007, 0.016, n)) * 0.85)
    n = int(rng.integers(0, 10))  # comedo-like openings: dark, slightly irregular plugs
    xs, ys = _ring_points(rng, geom, n, 0.0, 0.9, clustered=False)
    plugs = _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.009, 0.02, n), elong=rng.uniform(1, 1.6, n),
                        angles=rng.uniform(0, np.pi, n))
    img = _blend(img, _brown(0.8), plugs * 0.8)
    if rng.random() < (0.8 if irritated else 0.15):  # hairpin vessels with a white halo
        xs, ys = _ring_points(rng, geom, int(rng.integers(2, 6)), 0.2, 0.85, clustered=False)
        loops = _hairpins(rng, xs, ys, s)
        img = _blend(img, _WHITE, _line_alpha(h, w, loops, [max(2, round(s / 40))] * len(loops), 1.0) * 0.5)
        img = _blend(img, _VESSEL_RED, _line_alpha(h, w, loops, [1] * len(loops), 0.4) * 0.7)
    return img


def _paint_df(rng, img, h, w, yy, xx, s):
    """Dermatofibroma: small, round, a delicate network at the rim around a central white scar-like patch."""
    contour = _Contour(size=rng.uniform(0.11, 0.24), aspect=rng.uniform(1.0, 1.25), harmonics=[(2, 0.04), (3, 0.03)])
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    brown = _brown(rng.uniform(0.05, 0.55))
    img, alpha = _body(rng, img, d, brown[None, None, :] * _texture(rng, h, w, 0.04), rng.uniform(0.25, 0.5),
                       rng.uniform(0.5, 0.8))
    ring = _smoothstep((d - 0.35) / 0.25) * _smoothstep((1.25 - d) / 0.35)  # strongest between centre and rim
    net = _network(rng, h, w, xx, yy, s * rng.uniform(0.03, 0.045), 0.2)
    img = _blend(img, brown * 0.6, net * ring * rng.uniform(0.35, 0.65))
    if rng.random() < 0.45:  # pink-tinged centre
        img = _blend(img, _PINK, _smoothstep((0.8 - d) / 0.4) * rng.uniform(0.3, 0.6))
    if rng.random() < 0.8:  # central white scar-like patch, irregular outline
        reach = rng.uniform(0.3, 0.6)
        patch = _smoothstep((reach - d + 0.12 * _smooth_noise(rng, h, w, 16)) / 0.12)
        img = _blend(img, _WHITE * rng.uniform(0.94, 1.0), patch * rng.uniform(0.5, 0.85))
    if rng.random() < 0.2:  # a few dotted vessels in the centre
        xs, ys = _ring_points(rng, geom, int(rng.integers(3, 10)), 0.0, 0.5, clustered=False)
        img = _blend(img, _VESSEL_RED, _dots_alpha(h, w, (xs, ys), np.full(len(xs), s * 0.008)) * 0.7)
    return img


def _paint_vasc(rng, img, h, w, yy, xx, s):
    """Vascular lesion: sharply bordered red/purple/dark lacunae separated by pale septa."""
    contour = _Contour(size=rng.uniform(0.1, 0.28), aspect=rng.uniform(1.0, 1.5),
                       harmonics=[(2, 0.06), (3, 0.06), (5, 0.04)])
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    hue = rng.uniform()  # red .. purple .. dark blue-purple
    anchors = np.array([[196, 52, 62], [128, 50, 96], [60, 40, 70]], np.float32)
    pos = hue * 2
    i = min(int(pos), 1)
    lacuna = anchors[i] + (anchors[i + 1] - anchors[i]) * (pos - i)
    septa = 0.55 * _PINK + 0.45 * _WHITE
    img, alpha = _body(rng, img, d, septa, rng.uniform(0.04, 0.12), rng.uniform(0.55, 0.85))
    spacing = s * rng.uniform(0.035, 0.07)
    xs, ys = _grid_points(rng, geom, spacing, 0.95, 0.3)
    r = spacing * rng.uniform(0.3, 0.5, len(xs))
    for shade in (rng.uniform(0.75, 0.95), rng.uniform(1.0, 1.2)):  # two shades of the one hue
        pick = rng.random(len(xs)) < 0.5
        img = _blend(img, lacuna * shade, _dots_alpha(h, w, (xs[pick], ys[pick]), r[pick], 0.7) * alpha * 1.15)
    if rng.random() < 0.3:  # whitish veil
        img = _blend(img, _WHITE, _patches(rng, h, w, 5, 0.3) * alpha * rng.uniform(0.25, 0.45))
    if rng.random() < 0.25:  # thrombosed: a few black lacunae and a dark crust, melanoma-like
        pick = rng.random(len(xs)) < 0.3
        img = _blend(img, _brown(1.0), _dots_alpha(h, w, (xs[pick], ys[pick]), r[pick], 0.7) * alpha)
        img = _ulcer(rng, img, h, w, geom, s)
    return img


def _paint_scc(rng, img, h, w, yy, xx, s):
    """Squamous cell carcinoma: pink, central keratin mass, glomerular and hairpin vessels, white circles,
    blood spots."""
    harmonics = [(2, 0.08), (3, 0.07), (5, 0.05)]
    contour = _Contour(size=rng.uniform(0.16, 0.36), aspect=rng.uniform(1.0, 1.4), harmonics=harmonics)
    d, geom = _lesion_geometry(rng, h, w, yy, xx, s, contour)
    pigmented = rng.random() < 0.2  # brownish, with brown dots and grey granules
    base = _PINK * rng.uniform(0.9, 1.04)
    if pigmented:
        base = 0.5 * base + 0.5 * _brown(rng.uniform(0.1, 0.5))
    img, alpha = _body(rng, img, d, base[None, None, :] * _texture(rng, h, w, 0.04), rng.uniform(0.15, 0.35),
                       rng.uniform(0.4, 0.7))
    if pigmented:
        xs, ys = _ring_points(rng, geom, int(rng.integers(4, 15)), 0.2, 1.0, clustered=True)
        img = _blend(img, _brown(0.75), _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.006, 0.015, len(xs))) * 0.7)
    if rng.random() < 0.75:  # keratin mass: rough white-yellow centre
        reach = rng.uniform(0.3, 0.7)
        mass = _smoothstep((reach - d + 0.2 * _smooth_noise(rng, h, w, 8)) / 0.15)
        img = _blend(img, _KERATIN * _texture(rng, h, w, 0.12), mass * rng.uniform(0.6, 0.9))
    if rng.random() < 0.7:  # glomerular vessels: clusters of tiny coiled red dots around the centre
        n = int(rng.integers(4, 12))
        cx, cy = _ring_points(rng, geom, n, 0.4, 0.95, clustered=True)
        k = int(rng.integers(3, 6))
        xs = np.repeat(cx, k) + rng.normal(0, s * 0.01, n * k)
        ys = np.repeat(cy, k) + rng.normal(0, s * 0.01, n * k)
        img = _blend(img, _VESSEL_RED, _dots_alpha(h, w, (xs, ys), np.full(n * k, s * 0.006), 0.5) * 0.8)
    if rng.random() < 0.4:  # hairpin vessels with white halos
        xs, ys = _ring_points(rng, geom, int(rng.integers(2, 7)), 0.3, 0.95, clustered=False)
        loops = _hairpins(rng, xs, ys, s)
        img = _blend(img, _WHITE, _line_alpha(h, w, loops, [max(2, round(s / 40))] * len(loops), 1.0) * 0.55)
        img = _blend(img, _VESSEL_RED, _line_alpha(h, w, loops, [1] * len(loops), 0.4) * 0.75)
    if rng.random() < 0.4:  # white circles around follicle openings
        xs, ys = _ring_points(rng, geom, int(rng.integers(3, 10)), 0.1, 0.9, clustered=False)
        circles = _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.012, 0.022, len(xs)), 0.6, ring=max(1.0, s / 90))
        img = _blend(img, _WHITE, circles * 0.8)
    if rng.random() < 0.5:  # blood spots on the keratin
        xs, ys = _ring_points(rng, geom, int(rng.integers(1, 5)), 0.0, 0.6, clustered=True)
        spots = _dots_alpha(h, w, (xs, ys), s * rng.uniform(0.01, 0.025, len(xs)), 1.0)
        img = _blend(img, (110, 30, 30), spots * 0.85)
    if rng.random() < 0.2:
        img = _ulcer(rng, img, h, w, geom, s)
    return img


_PAINTERS = {"MEL": _paint_mel, "NV": _paint_nv, "BCC": _paint_bcc, "AK": _paint_ak, "BKL": _paint_bkl,
             "DF": _paint_df, "VASC": _paint_vasc, "SCC": _paint_scc}
_SUN_DAMAGE = {"AK": 0.6, "SCC": 0.5, "BKL": 0.4, "BCC": 0.35}  # chance of sun-damaged skin around; else 0.2


# --------------------------------------------------------------------------------------------- nuisances


def _hairs(rng, img, h, w, s):
    """Thin dark curved hairs crossing the image."""
    lines = []
    for _ in range(int(rng.integers(1, 13))):
        p0 = rng.uniform([-0.1 * w, -0.1 * h], [1.1 * w, 1.1 * h])
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.0) * s
        p2 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.2 * length, 2)
        lines.append(_bezier(p0, p1, p2))
    widths = [max(1, round(s / 130 * rng.uniform(0.7, 1.6))) for _ in lines]
    hair = rng.uniform(15, 60) * np.array([1.0, 0.8, 0.7])  # black to dark brown
    return _blend(img, hair, _line_alpha(h, w, lines, widths, 0.45) * rng.uniform(0.7, 0.95))


def _bubbles(rng, img, h, w, s):
    """Air bubbles in the immersion gel: bright thin rings with a faintly lighter inside."""
    n = int(rng.integers(1, 5))
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    r = s * rng.uniform(0.03, 0.12, n)
    img = _blend(img, (255, 255, 255), _dots_alpha(h, w, (xs, ys), r, 1.0) * 0.12)
    return _blend(img, (250, 250, 250), _dots_alpha(h, w, (xs, ys), r, 0.7, ring=max(1.0, s / 100)) * 0.7)


def _ink(rng, img, h, w, s):
    """A surgeon's skin-marker line near the image edge (purple), as in many ISIC images."""
    side = rng.uniform(0.05, 0.2)
    y0, y1 = (h * side, h * rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else (h * (1 - side), h * rng.uniform(0.7, 1))
    p0, p2 = np.array([-5.0, y0]), np.array([w + 5.0, y1])
    line = _bezier(p0, (p0 + p2) / 2 + rng.normal(0, 0.1 * h, 2), p2)
    return _blend(img, (92, 58, 128), _line_alpha(h, w, [line], [max(2, round(s / 35))], 1.0) * rng.uniform(0.4, 0.8))


# ------------------------------------------------------------------------------------------ public API


def draw_lesion(rng: np.random.Generator, cls: str, width: int, height: int) -> np.ndarray:
    """One dermoscopy-like image of class cls (one of DEMO_CLASSES), drawn from rng: (height, width, 3) uint8."""
    if cls not in _PAINTERS:
        raise ValueError(f"unknown demo class {cls!r}; choose one of {DEMO_CLASSES}")
    h, w = int(height), int(width)
    s = min(w, h) * rng.uniform(0.8, 1.25)  # px; the zoom differs between images and dermoscopes
    yy = np.arange(h, dtype=np.float32)[:, None]  # (H, 1): sparse grids, broadcast where combined
    xx = np.arange(w, dtype=np.float32)[None, :]  # (1, W)
    img = _background(rng, h, w, yy, xx, _SUN_DAMAGE.get(cls, 0.2))
    img = _PAINTERS[cls](rng, img, h, w, yy, xx, s)
    if rng.random() < 0.45:
        img = _hairs(rng, img, h, w, s)
    if rng.random() < 0.15:
        img = _bubbles(rng, img, h, w, s)
    if rng.random() < 0.06:
        img = _ink(rng, img, h, w, s)
    grey = img.mean(2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.8, 1.2)  # colour saturation, exposure and white balance differ
    balance = np.clip(rng.normal(1.0, 0.06, 3), 0.9, 1.1)
    img = img * (rng.uniform(0.8, 1.15) * balance).astype(np.float32)  # between cameras
    blur = rng.uniform(0.25, 0.7) * min(w, h) / 144  # px; focus differs
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    grain = rng.uniform(1.0, 3.0)  # sensor noise std, in 0-255 units
    noisy = np.asarray(out, np.float32) + grain * rng.standard_normal((h, w, 3), dtype=np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def demo_class_counts(n_images):
    """Images per class for n_images: ISIC 2019's proportions (largest remainder), each class raised to at least
    DEMO_MIN_PER_CLASS (or n_images // 8 when that is less), the big classes paying for it in proportion."""
    k = len(DEMO_CLASSES)
    share = np.array([DEMO_CLASS_COUNTS_ISIC[c] for c in DEMO_CLASSES], np.float64)
    share /= share.sum()
    low = min(DEMO_MIN_PER_CLASS, n_images // k)
    fixed = np.zeros(k, bool)  # classes held at the floor
    exact = share * n_images
    while not fixed.all():
        free = n_images - low * fixed.sum()
        exact = np.where(fixed, low, share * free / share[~fixed].sum())
        below = ~fixed & (exact < low)
        if not below.any():
            break
        fixed |= below
    if fixed.all():  # every class at the floor: the few left over go by ISIC share
        exact = low + share * (n_images - low * k)
    counts = np.floor(exact + 1e-9).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in range(n_images - counts.sum()):
        counts[order[i % k]] += 1
    return dict(zip(DEMO_CLASSES, counts.tolist()))


def balanced_class_counts(n_images):
    """Images per class for a class-balanced set: n_images // 8 each, the remainder to the first classes."""
    k = len(DEMO_CLASSES)
    return {c: n_images // k + (i < n_images % k) for i, c in enumerate(DEMO_CLASSES)}


def _spec(n_images, seed, width, height, balanced=False):
    spec = {"version": DEMO_VERSION, "n_images": n_images, "seed": seed, "width": width, "height": height,
            "classes": list(DEMO_CLASSES), "min_per_class": DEMO_MIN_PER_CLASS, "jpeg_quality": JPEG_QUALITY}
    if balanced:  # only then in the manifest: the demo's existing folders stay valid
        spec["balanced"] = True
    return spec


def _counts(spec):
    return (balanced_class_counts if spec.get("balanced") else demo_class_counts)(spec["n_images"])


def _is_complete(root, spec):
    """True when root holds a finished demo dataset generated with exactly this spec."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    balanced = manifest.get("balanced", False) == spec.get("balanced", False)
    if not balanced or any(manifest.get(k) != v for k, v in spec.items()):
        return False
    img_dir = Path(root) / IMAGE_DIR
    if not ((Path(root) / GROUND_TRUTH).is_file() and img_dir.is_dir()):
        return False
    return len(os.listdir(img_dir)) == spec["n_images"]  # cheap, and catches deleted images


def _looks_like_demo(root):
    """A folder we may replace: empty, or holding only what ensure_demo_dataset writes."""
    return set(os.listdir(root)) <= {IMAGE_DIR, GROUND_TRUTH, MANIFEST}


def _write_dataset(folder, spec):
    seed, w, h = spec["seed"], spec["width"], spec["height"]
    counts = _counts(spec)
    labels = np.repeat(np.arange(len(DEMO_CLASSES)), [counts[c] for c in DEMO_CLASSES])
    labels = np.random.default_rng(seed).permutation(labels)  # classes interleaved, as in ISIC's file order
    (folder / IMAGE_DIR).mkdir()
    rows = []
    for i, label in enumerate(labels):
        name = f"ISIC_demo_{i:07d}"
        pixels = draw_lesion(np.random.default_rng([seed, i]), DEMO_CLASSES[label], w, h)  # per-image stream
        Image.fromarray(pixels).save(folder / IMAGE_DIR / f"{name}.jpg", "JPEG", quality=JPEG_QUALITY)
        rows.append([name] + ["1.0" if k == label else "0.0" for k in range(len(DEMO_CLASSES))] + ["0.0"])  # UNK
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
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


def ensure_demo_dataset(root=DEFAULT_DEMO_DIR, n_images=DEFAULT_N_IMAGES, seed=0, width=192, height=144,
                        log=print, balanced=False) -> Path:
    """Write the demo lesions under root in the ISIC 2019 layout unless an identical set is already there.

    Layout: root/ISIC_2019_Training_Input/ISIC_demo_<7 digits>.jpg, root/ISIC_2019_Training_GroundTruth.csv
    (`image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`, one-hot 1.0/0.0, UNK always 0.0) and root/demo_manifest.json
    (what was generated). balanced=True draws n_images // 8 of every class (the proxy study's labeled set)
    instead of ISIC 2019's imbalance. The set is drawn in a temporary sibling folder and renamed into place, so a killed
    run never leaves a partial set that looks complete. Returns root.
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
    spec = _spec(int(n_images), int(seed), int(width), int(height), bool(balanced))
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
    log(f"demo: wrote {n_images} images in {time.time() - start:.1f} s ({_counts(spec)})")
    return root
