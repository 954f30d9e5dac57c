"""The demo lesions' drawing kit: colours, noise and alpha maps, lesion outlines, dermoscopic structures, nuisances."""
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Colours (RGB, 0-255) loosely after dermoscopy atlases.
SKIN_LIGHT = np.array([236.0, 196.0, 172.0], np.float32)
SKIN_DARK = np.array([176.0, 118.0, 88.0], np.float32)
BROWNS = np.array([[204, 156, 116], [150, 100, 68], [96, 60, 42], [50, 34, 30]], np.float32)  # tan .. near black
PINK = np.array([228, 148, 146], np.float32)
VESSEL_RED = np.array([170, 34, 46], np.float32)
BLUE_GREY = np.array([104, 112, 136], np.float32)
WHITE = np.array([242, 232, 226], np.float32)
KERATIN = np.array([236, 224, 192], np.float32)


# -------------------------------------------------------------------------------------------- primitives


def smooth_noise(rng, h, w, cells):
    """Zero-mean noise of about unit std, varying on a scale of about 1/cells of the image."""
    ch, cw = max(2, round(cells * h / max(h, w))), max(2, round(cells * w / max(h, w)))
    small = rng.standard_normal((ch + 2, cw + 2)).astype(np.float32)  # one spare cell each side, so the
    box = (1, 1, cw + 1, ch + 1)  # scaled inner box has real neighbours where bicubic would clamp
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC, box=box))
    return big * np.float32(1 / 0.8)  # (H, W); bicubic-interpolated white noise has std ~0.8 (measured)


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def blend(img, color, alpha):
    """img (H, W, 3) float, color (3,) or (H, W, 3), alpha (H, W) in [0, 1]."""
    a = np.asarray(alpha, np.float32)[..., None]
    return img + (np.asarray(color, np.float32) - img) * a  # float32 throughout: this is the hot loop


def pigment(t):
    """Pigment colour along one shared scale: t=0 tan, 1/3 mid brown, 2/3 dark brown, 1 near black. (3,)"""
    pos = np.clip(t, 0.0, 1.0) * (len(BROWNS) - 1)
    i = min(int(pos), len(BROWNS) - 2)
    return BROWNS[i] + (BROWNS[i + 1] - BROWNS[i]) * np.float32(pos - i)


def dots_alpha(h, w, centres, rs, softness=0.8, *, elong=None, angles=None, ring=None):
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


def line_alpha(h, w, polylines, widths, blur):
    """Polylines drawn with PIL at the given widths, lightly blurred for anti-aliasing: (H, W) in [0, 1]."""
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    for pts, width in zip(polylines, widths):
        draw.line([(float(x), float(y)) for x, y in pts], fill=255, width=int(width), joint="curve")
    if blur > 0:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(mask, np.float32) / 255.0


def bezier(p0, p1, p2, n=24):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # (n, 2)


def patches(rng, h, w, cells, cover):
    """Smooth random blobs covering about `cover` of the image: (H, W) in [0, 1]."""
    z = NormalDist().inv_cdf(1.0 - cover)  # the noise is about N(0, 1): this level leaves `cover` above it
    return smoothstep((smooth_noise(rng, h, w, cells) - z) * 2.0 + 0.5)


# ------------------------------------------------------------------------------------------ components


def background(rng, h, w, yy, xx, sun_damage):
    """Skin with fine texture, uneven lighting, vignetting and, often, the dermoscope's dark round rim."""
    tone = rng.beta(2.0, 2.5)
    base = (SKIN_LIGHT * (1 - tone) + SKIN_DARK * tone).astype(np.float32)
    mottle = 0.025 * smooth_noise(rng, h, w, 5) + 0.012 * smooth_noise(rng, h, w, 30)
    img = base[None, None, :] * (1.0 + mottle[..., None])
    redness = rng.uniform(0.0, 0.12) * np.clip(smooth_noise(rng, h, w, 3) + 0.3, 0, None)  # erythema, any class
    img[..., 1:] *= 1.0 - redness[..., None]
    if rng.random() < sun_damage:  # sun-damaged skin: faint brown freckling around the lesion
        freckles = patches(rng, h, w, 28, 0.25) * smoothstep(smooth_noise(rng, h, w, 4) + 0.5)
        img = blend(img, base * 0.82, freckles * rng.uniform(0.15, 0.35))
    furrows = np.exp(-((smooth_noise(rng, h, w, 18) / 0.12) ** 2))  # skin surface lines, faintly lighter
    img = blend(img, base * 1.08, furrows * rng.uniform(0.05, 0.2))
    cx, cy = w / 2.0, h / 2.0
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx**2 + cy**2)
    angle = rng.uniform(0, 2 * np.pi)
    grad = ((xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)) / max(w, h)
    light = (1.0 - rng.uniform(0.1, 0.4) * r2) * (1.0 + rng.uniform(0.0, 0.35) * grad)
    img = img * light[..., None]
    if rng.random() < 0.5:  # the dermoscope's round field of view: dark corners
        radius = rng.uniform(0.40, 0.49) * np.hypot(w, h)
        rim = smoothstep((np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2) - radius) / (0.05 * min(w, h)) + 0.5)
        img = blend(img, rng.uniform(6, 24, 3), rim)
    return img.astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Contour:
    """A class's lesion outline before its random placement: an ellipse of radius `size` (fraction of s, the short
    side times the zoom) and `aspect`, its radius modulated by cos(k*phi) `harmonics` (k, amplitude) and cut by
    `notches` sharp inward dents."""

    size: float
    aspect: float
    harmonics: list  # of (k, amplitude); each amplitude is drawn at 0.5-1x of its value
    notches: int = 0


def lesion_geometry(rng, h, w, yy, xx, s, contour):
    """Normalised distance d (H, W), < 1 inside the lesion of Contour `contour`, and its ellipse (cx, cy, a, b, rot),
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


def network(rng, h, w, xx, yy, period, irregular):
    """Pigment network: a honeycomb-like line pattern, (H, W) in [0, 1]; irregular > 0 distorts and breaks it."""
    rot = rng.uniform(0, np.pi)
    cos, sin = float(np.cos(rot)), float(np.sin(rot))
    u = xx * cos + yy * sin
    v = -xx * sin + yy * cos
    period = float(period)
    warp = period * (0.25 + irregular)
    u = u + warp * smooth_noise(rng, h, w, 12)
    v = v + warp * smooth_noise(rng, h, w, 12)
    f = np.pi / period
    g = np.minimum(np.abs(np.sin(u * f)), np.abs(np.sin((v + 0.5 * period * np.sin(u * f)) * f)))  # offset rows
    thickness = 0.22 * (1.0 + irregular * np.clip(smooth_noise(rng, h, w, 9), -0.8, 1.5))
    lines = np.exp(-((g / thickness) ** 2))
    if irregular > 0:  # broken, patchy network
        lines *= smoothstep(smooth_noise(rng, h, w, 7) * 0.8 + 0.4 - 0.4 * irregular)
    return lines


def parallel_lines(rng, h, w, xx, yy, period):
    """Fine wavy parallel lines (a solar lentigo's fingerprint pattern): (H, W) in [0, 1]."""
    rot, period = rng.uniform(0, np.pi), float(period)
    u = xx * float(np.cos(rot)) + yy * float(np.sin(rot)) + period * 1.5 * smooth_noise(rng, h, w, 6)
    return np.exp(-((np.sin(u * np.pi / period) / 0.35) ** 2))


def ring_points(rng, geom, n, d_lo, d_hi, clustered):
    """n points in the lesion's ellipse at normalised radius d_lo..d_hi; clustered bunches them by angle."""
    if clustered:
        centres = rng.uniform(0, 2 * np.pi, max(1, n // 5))
        t = rng.choice(centres, n) + rng.normal(0, 0.35, n)
    else:
        t = rng.uniform(0, 2 * np.pi, n)
    r = np.sqrt(rng.uniform(d_lo**2, d_hi**2, n))
    return from_ellipse(geom, r * np.cos(t), r * np.sin(t))


def grid_points(rng, geom, spacing, d_max, jitter):
    """Points on a jittered hexagonal grid (spacing in image px) inside the ellipse up to radius d_max."""
    cx, cy, a, b, rot = geom
    rows = np.arange(-a, a + spacing, spacing * 0.866)
    pts = [(x + (spacing / 2 if i % 2 else 0), y) for i, y in enumerate(rows) for x in np.arange(-a, a + spacing, spacing)]
    u, v = np.array(pts, np.float64).T + rng.normal(0, jitter * spacing, (2, len(pts)))
    keep = (u / a) ** 2 + (v / b) ** 2 < d_max**2
    return from_ellipse(geom, u[keep] / a, v[keep] / b)


def from_ellipse(geom, u, v):
    """Image (x, y) of points (u, v) given in the lesion ellipse's unit coordinates."""
    cx, cy, a, b, rot = geom
    u, v = u * a, v * b
    return cx + u * np.cos(rot) - v * np.sin(rot), cy + u * np.sin(rot) + v * np.cos(rot)


def vessels(rng, geom, s, n_trees):
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


def hairpins(rng, xs, ys, s):
    """Short looped (hairpin) vessels at (xs, ys), as polylines."""
    out = []
    for x, y in zip(xs, ys):
        ang, length, gap = rng.uniform(0, 2 * np.pi), s * rng.uniform(0.03, 0.06), s * rng.uniform(0.008, 0.014)
        d, n = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
        p = np.array([x, y])
        out.append(bezier(p + n * gap, p + d * length * 1.3, p - n * gap))
    return out


def texture(rng, h, w, amount):
    """Multiplicative fine texture for a lesion's body: (H, W, 1) around 1."""
    return (1.0 + amount * (smooth_noise(rng, h, w, 20) + 0.5 * smooth_noise(rng, h, w, 45)))[..., None]


def fill_body(rng, img, d, colour, edge, opacity):
    """Fill the lesion (d < 1) with colour, fading over `edge` of its radius: returns (img, alpha)."""
    alpha = smoothstep((1.0 - d) / edge) * opacity
    return blend(img, colour, alpha), alpha


def peppering(rng, img, geom, s, n, d_hi, strength):
    """n fine grey-blue granules (melanophages) out to radius d_hi of the lesion, clustered: a sign of regression."""
    h, w = img.shape[:2]
    xs, ys = ring_points(rng, geom, n, 0.0, d_hi, clustered=True)
    dots = dots_alpha(h, w, (xs, ys), s * rng.uniform(0.004, 0.009, n), 0.6)
    return blend(img, (96, 96, 112), dots * strength)


def ulcer(rng, img, h, w, geom, s):
    """A crusted erosion: an irregular dark red-brown to orange blob somewhere in the lesion."""
    xs, ys = ring_points(rng, geom, 1, 0.0, 0.6, clustered=False)
    r = s * rng.uniform(0.04, 0.09)
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    dist = np.sqrt((xx - xs[0]) ** 2 + (yy - ys[0]) ** 2) / r + 0.35 * smooth_noise(rng, h, w, 14)
    crust = [(120, 40, 32), (150, 78, 40), (82, 34, 30)][rng.integers(3)]
    return blend(img, crust, smoothstep((1.0 - dist) / 0.3) * rng.uniform(0.7, 0.9))



# --------------------------------------------------------------------------------------------- nuisances


def hairs(rng, img, h, w, s):
    """Thin dark curved hairs crossing the image."""
    lines = []
    for _ in range(int(rng.integers(1, 13))):
        p0 = rng.uniform([-0.1 * w, -0.1 * h], [1.1 * w, 1.1 * h])
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.3, 1.0) * s
        p2 = p0 + length * np.array([np.cos(ang), np.sin(ang)])
        p1 = (p0 + p2) / 2 + rng.normal(0, 0.2 * length, 2)
        lines.append(bezier(p0, p1, p2))
    widths = [max(1, round(s / 130 * rng.uniform(0.7, 1.6))) for _ in lines]
    hair = rng.uniform(15, 60) * np.array([1.0, 0.8, 0.7])  # black to dark brown
    return blend(img, hair, line_alpha(h, w, lines, widths, 0.45) * rng.uniform(0.7, 0.95))


def bubbles(rng, img, h, w, s):
    """Air bubbles in the immersion gel: bright thin rings with a faintly lighter inside."""
    n = int(rng.integers(1, 5))
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    r = s * rng.uniform(0.03, 0.12, n)
    img = blend(img, (255, 255, 255), dots_alpha(h, w, (xs, ys), r, 1.0) * 0.12)
    return blend(img, (250, 250, 250), dots_alpha(h, w, (xs, ys), r, 0.7, ring=max(1.0, s / 100)) * 0.7)


def ink(rng, img, h, w, s):
    """A surgeon's skin-marker line near the image edge (purple), as in many ISIC images."""
    side = rng.uniform(0.05, 0.2)
    y0, y1 = (h * side, h * rng.uniform(0.0, 0.3)) if rng.random() < 0.5 else (h * (1 - side), h * rng.uniform(0.7, 1))
    p0, p2 = np.array([-5.0, y0]), np.array([w + 5.0, y1])
    line = bezier(p0, (p0 + p2) / 2 + rng.normal(0, 0.1 * h, 2), p2)
    return blend(img, (92, 58, 128), line_alpha(h, w, [line], [max(2, round(s / 35))], 1.0) * rng.uniform(0.4, 0.8))

