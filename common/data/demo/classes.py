"""The demo's eight lesion classes: a painter per ISIC 2019 class, and draw_lesion, one image of a class on skin."""
import numpy as np
from PIL import Image, ImageFilter

from common.data.demo.drawing import (
    BLUE_GREY,
    KERATIN,
    PINK,
    VESSEL_RED,
    WHITE,
    Contour,
    background,
    bezier,
    blend,
    bubbles,
    dots_alpha,
    fill_body,
    from_ellipse,
    grid_points,
    hairpins,
    hairs,
    ink,
    lesion_geometry,
    line_alpha,
    network,
    parallel_lines,
    patches,
    peppering,
    pigment,
    ring_points,
    smooth_noise,
    smoothstep,
    texture,
    ulcer,
    vessels,
)

# The classes are told apart by the structures dermoscopy reads (networks, dots and globules, vessel patterns,
# regression, borders, asymmetry, size) more than by colour: the colours overlap across classes (naevus, melanoma,
# keratosis and dermatofibroma share one brown scale; BCC, AK and SCC the pinks), and every class has variants
# that look like another (atypical and pale dermal naevi, amelanotic and naevus-like melanomas, pigmented BCC,
# AK and SCC, lentigo-like and inflamed keratoses, dermatofibromas without their scar, thrombosed angiomas):
#
# - MEL  melanoma: large, asymmetric notched contour, several colours in uneven zones, an off-centre blotch,
#        atypical (thick, broken) network, irregular peripheral dots, streaks in a sector, blue-white veil,
#        regression (white scar-like area with grey peppering); amelanotic ones are pink with dotted and
#        irregular linear vessels.
# - NV   naevus: small to medium, symmetric round/oval, one brown; a regular fine network fading out to the rim,
#        or regular globules on an even grid, or structureless; dermal naevi pale pinkish with comma vessels.
# - BCC  basal cell carcinoma: translucent pink, sharp branching (arborizing) vessels, blue-grey ovoid nests,
#        leaf-like areas at the rim, shiny white areas, sometimes an ulcer crust.
# - AK   actinic keratosis: ill-defined red patch, "strawberry" pseudo-network around white follicle openings
#        with dark plugs, white-yellow surface scale, on sun-damaged skin.
# - BKL  benign keratosis: a stuck-on seborrhoeic keratosis with a sharp moth-eaten border, fissures, milia-like
#        cysts, comedo-like openings and, when inflamed, looped vessels; a solar lentigo (light, flat,
#        fingerprint lines); or a lichen-planus-like keratosis (dense grey peppering).
# - DF   dermatofibroma: small and round, a delicate network in a ring around a central white scar-like patch.
# - VASC vascular lesion: sharply bordered red, purple or dark lacunae (round clods) between pale septa.
# - SCC  squamous cell carcinoma: pink, a central white-yellow keratin mass, clusters of coiled (glomerular)
#        vessels, hairpin vessels with white halos, white circles, blood spots.
#
# Nuisances shared by all classes: skin tone, erythema, sun damage, uneven light, vignetting and the dermoscope's
# round rim, hair, air bubbles, ink marks, zoom, rotation, focus, colour saturation, exposure, white balance and
# sensor grain.
DEMO_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")  # ISIC 2019's, in its CSV's order


# ---------------------------------------------------------------------------------------------- classes
# Each painter draws one class's lesion onto the skin. Structures come with probabilities and strengths, so
# any one cue may be missing; variants and `atyp` move an image towards another class's look.


def _paint_nv(rng, img, h, w, yy, xx, s):
    """Naevus: symmetric, round/oval, one brown, smooth border; regular network, regular globules or none.
    Dermal naevi are pale pinkish tan with comma-shaped vessels."""
    atyp = rng.beta(1.2, 5.0)
    harmonics = [(2, 0.03 + 0.08 * atyp), (3, 0.03 + 0.07 * atyp), (5, 0.05 * atyp)]
    contour = Contour(size=rng.uniform(0.13, 0.30), aspect=rng.uniform(1.0, 1.35), harmonics=harmonics)
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    dermal = rng.random() < 0.2
    brown = 0.4 * pigment(rng.uniform(0.0, 0.35)) + 0.6 * PINK if dermal else pigment(rng.uniform(0.1, 0.8))
    inner = 1.0 - np.clip(d, 0, 1)
    shade = 1.0 + rng.uniform(-0.2, 0.15) * inner  # centre a bit darker or lighter, evenly all round
    colour = brown[None, None, :] * shade[..., None] * texture(rng, h, w, 0.04)
    if atyp > 0.35:  # a dysplastic naevus: a second, darker brown patch
        colour = colour * (1.0 - 0.35 * patches(rng, h, w, 4, 0.3))[..., None]
    if rng.random() < 0.12:  # irritated naevus: a pink rim
        img = blend(img, PINK, smoothstep((1.35 - d) / 0.4) * rng.uniform(0.2, 0.45))
    img, alpha = fill_body(rng, img, d, colour, rng.uniform(0.1, 0.35), rng.uniform(0.65, 0.95))
    pattern = rng.choice(3, p=[0.45, 0.3, 0.25])  # reticular | globular | structureless
    if pattern == 0 or rng.random() < 0.2:
        net = network(rng, h, w, xx, yy, s * rng.uniform(0.035, 0.055), 0.3 * atyp) * np.sqrt(inner)
        img = blend(img, brown * 0.55, net * alpha * rng.uniform(0.35, 0.6) * (1.0 if pattern == 0 else 0.5))
    if pattern == 1:  # globules of one size on an even grid
        spacing = s * rng.uniform(0.045, 0.07)
        xs, ys = grid_points(rng, geom, spacing, rng.uniform(0.7, 0.9), 0.15 + 0.3 * atyp)
        r = np.full(len(xs), spacing * rng.uniform(0.22, 0.32))
        img = blend(img, brown * 0.6, dots_alpha(h, w, (xs, ys), r) * rng.uniform(0.6, 0.85))
    if dermal:  # comma vessels: short curved red arcs
        xs, ys = ring_points(rng, geom, int(rng.integers(3, 9)), 0.1, 0.85, clustered=False)
        arcs = [bezier(np.array([x, y]), np.array([x, y]) + rng.normal(0, s * 0.02, 2),
                        np.array([x, y]) + rng.normal(0, s * 0.03, 2)) for x, y in zip(xs, ys)]
        img = blend(img, VESSEL_RED, line_alpha(h, w, arcs, [1] * len(arcs), 0.4) * alpha * 0.8)
    return img


def _paint_mel(rng, img, h, w, yy, xx, s):
    """Melanoma: asymmetric notched border, several colours in uneven zones, off-centre blotch, atypical network,
    irregular peripheral dots, streaks, blue-white veil, regression."""
    typ = rng.uniform(0.15, 1.0)  # how florid: some melanomas look almost like naevi
    harmonics = [(k, amp * typ) for k, amp in [(1, 0.12), (2, 0.1), (3, 0.09), (5, 0.06), (7, 0.05), (11, 0.035)]]
    size = rng.uniform(0.18, 0.40)
    contour = Contour(size=size, aspect=rng.uniform(1.0, 1.6), harmonics=harmonics, notches=int(typ * 3.5))
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    t0 = rng.uniform(0.15, 0.75)
    palette = [pigment(t0), pigment(t0 + rng.uniform(0.2, 0.45))]
    extras = [pigment(1.0), BLUE_GREY, np.array([168, 86, 80], np.float32), pigment(t0 - 0.25)]
    for i in rng.choice(len(extras), int(rng.integers(0, 1 + round(2.5 * typ))), replace=False):
        palette.append(extras[i])
    amelanotic = rng.random() < 0.12  # little pigment: pink zones with polymorphous vessels
    if amelanotic:
        palette = [0.25 * c + 0.75 * PINK for c in palette]
    fields = np.stack([smooth_noise(rng, h, w, rng.uniform(3, 7)) for _ in palette])  # (K, H, W)
    weights = np.exp(2.5 * fields)
    weights /= weights.sum(0, keepdims=True)
    colour = np.einsum("khw,kc->hwc", weights, np.stack(palette)) * texture(rng, h, w, 0.07)
    edge = 0.05 + 0.25 * smoothstep(smooth_noise(rng, h, w, 5) * 0.5 + 0.5)  # sharp in some sectors only
    img, alpha = fill_body(rng, img, d, colour, edge, rng.uniform(0.8, 0.97))
    if amelanotic:  # dotted and short irregular linear vessels together
        xs, ys = ring_points(rng, geom, int(rng.integers(10, 30)), 0.0, 0.9, clustered=True)
        img = blend(img, VESSEL_RED, dots_alpha(h, w, (xs, ys), np.full(len(xs), s * 0.007), 0.5) * alpha * 0.8)
        xs, ys = ring_points(rng, geom, int(rng.integers(3, 8)), 0.0, 0.9, clustered=False)
        wiggles = [bezier(np.array([x, y]), np.array([x, y]) + rng.normal(0, s * 0.04, 2),
                           np.array([x, y]) + rng.normal(0, s * 0.06, 2)) for x, y in zip(xs, ys)]
        img = blend(img, VESSEL_RED, line_alpha(h, w, wiggles, [1] * len(wiggles), 0.4) * alpha * 0.75)
    if rng.random() < (0.4 + 0.4 * typ) * (0.3 if amelanotic else 1.0):  # an off-centre dark blotch
        bx, by = ring_points(rng, geom, 1, 0.3, 0.65, clustered=False)
        br = s * size * rng.uniform(0.25, 0.5)
        blob = np.exp(-(((xx - bx[0]) ** 2 + (yy - by[0]) ** 2) / br**2)) * (1 + 0.3 * smooth_noise(rng, h, w, 10))
        img = blend(img, pigment(rng.uniform(0.75, 1.0)), np.clip(blob, 0, 1) * alpha * rng.uniform(0.5, 0.85))
    if rng.random() < 0.45 * typ:  # blue-white veil over part of the lesion
        img = blend(img, (132, 142, 166), patches(rng, h, w, 4, 0.3) * alpha * rng.uniform(0.35, 0.6))
    if rng.random() < 0.65:  # atypical network: thick, broken, uneven
        net = network(rng, h, w, xx, yy, s * rng.uniform(0.045, 0.08), 0.3 + 0.5 * typ)
        img = blend(img, pigment(0.9), net * alpha * rng.uniform(0.3, 0.6))
    if rng.random() < 0.75:  # irregular dots and globules, bunched at the periphery
        n = int(rng.integers(3, 5 + round(16 * typ)))
        xs, ys = ring_points(rng, geom, n, 0.55, 1.1, clustered=True)
        dots = dots_alpha(h, w, (xs, ys), s * rng.uniform(0.006, 0.022, n), elong=rng.uniform(1, 1.8, n),
                           angles=rng.uniform(0, np.pi, n))
        img = blend(img, pigment(rng.uniform(0.7, 1.0)), dots * 0.85)
    if rng.random() < 0.4 * typ + 0.05:  # streaks / pseudopods leaving the border in one sector
        t = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.5, int(rng.integers(3, 9)))
        xs0, ys0 = from_ellipse(geom, np.cos(t) * 0.6, np.sin(t) * 0.6)
        far = rng.uniform(1.05, 1.35, len(t))
        xs1, ys1 = from_ellipse(geom, np.cos(t) * far, np.sin(t) * far)
        lines = [[(x0, y0), (x1, y1)] for x0, y0, x1, y1 in zip(xs0, ys0, xs1, ys1)]
        img = blend(img, pigment(0.85), line_alpha(h, w, lines, [max(1, round(s / 70))] * len(lines), 0.6) * 0.75)
    if rng.random() < 0.35:  # regression: a white scar-like area peppered with grey granules
        zone = patches(rng, h, w, 6, 0.2) * smoothstep((0.85 - d) / 0.2) * texture(rng, h, w, 0.3)[..., 0]
        img = blend(img, WHITE * 0.95, np.clip(zone, 0, 1) * rng.uniform(0.3, 0.6))
        img = peppering(rng, img, geom, s, int(rng.integers(20, 60)), 0.85, 0.6)
    return img


def _paint_bcc(rng, img, h, w, yy, xx, s):
    """Basal cell carcinoma: translucent pink, arborizing vessels, blue-grey nests, leaf-like areas, shiny white."""
    harmonics = [(2, 0.06), (3, 0.06), (5, 0.04)]
    contour = Contour(size=rng.uniform(0.16, 0.34), aspect=rng.uniform(1.0, 1.5), harmonics=harmonics)
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    pigmented = rng.random() < 0.5  # pigmented BCC: brown-grey nests and leaf-like areas, weaker pink
    pink = PINK * rng.uniform(0.85, 1.02)
    if pigmented:
        pink = 0.5 * pink + 0.5 * pigment(rng.uniform(0.05, 0.4))
    opacity = rng.uniform(0.3, 0.65) * (0.6 if pigmented else 1.0)
    img, alpha = fill_body(rng, img, d, pink[None, None, :] * texture(rng, h, w, 0.03), rng.uniform(0.2, 0.45), opacity)
    if rng.random() < 0.5:  # shiny white structureless areas and short white strands
        img = blend(img, WHITE, patches(rng, h, w, 6, 0.2) * smoothstep((0.9 - d) / 0.3) * 0.45)
    if rng.random() < 0.9:  # sharp, branching, in focus
        lines, widths = vessels(rng, geom, s, int(rng.integers(1, 3 if pigmented else 4)))
        strength = rng.uniform(0.35, 0.9) * (0.6 if pigmented else 1.0)
        img = blend(img, VESSEL_RED, line_alpha(h, w, lines, widths, 0.4) * smoothstep((1.15 - d) / 0.2) * strength)
    if pigmented or rng.random() < 0.45:  # blue-grey ovoid nests
        n = int(rng.integers(3, 9) if pigmented else rng.integers(1, 5))
        xs, ys = ring_points(rng, geom, n, 0.0, 0.85, clustered=pigmented)
        r = s * rng.uniform(0.015, 0.04, n)
        nests = dots_alpha(h, w, (xs, ys), r, s * 0.015, elong=rng.uniform(1.2, 2.2, n),
                            angles=rng.uniform(0, np.pi, n))
        img = blend(img, (84, 74, 78) if pigmented else BLUE_GREY, nests * rng.uniform(0.45, 0.8))
    if pigmented and rng.random() < 0.6:  # leaf-like areas: bulbous projections pointing out at the rim
        n = int(rng.integers(3, 8))
        t = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.8, n)
        xs, ys = from_ellipse(geom, np.cos(t) * 0.85, np.sin(t) * 0.85)
        leaves = dots_alpha(h, w, (xs, ys), s * rng.uniform(0.012, 0.02, n), 0.8, elong=rng.uniform(1.8, 2.8, n),
                             angles=t + geom[4])
        img = blend(img, (92, 76, 70), leaves * 0.75)
    if rng.random() < 0.25:
        img = ulcer(rng, img, h, w, geom, s)
    return img


def _paint_ak(rng, img, h, w, yy, xx, s):
    """Actinic keratosis: ill-defined red patch, strawberry pattern (red pseudo-network around white follicle
    openings with plugs), white-yellow scale; some are pigmented."""
    harmonics = [(2, 0.1), (3, 0.1), (4, 0.08)]
    contour = Contour(size=rng.uniform(0.2, 0.42), aspect=rng.uniform(1.0, 1.5), harmonics=harmonics)
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    pigmented = rng.random() < 0.4
    base = PINK * rng.uniform(0.88, 1.0) * np.array([1.0, 0.9, 0.9], np.float32)
    if pigmented:
        base = 0.5 * base + 0.5 * pigment(rng.uniform(0.1, 0.5))
    body = base[None, None, :] * (1.0 - 0.12 * patches(rng, h, w, 8, 0.4))[..., None]
    img, alpha = fill_body(rng, img, d, body, rng.uniform(0.35, 0.7), rng.uniform(0.35, 0.65))
    net = network(rng, h, w, xx, yy, s * rng.uniform(0.05, 0.08), 0.4)  # pseudo-network between follicles
    net_colour = pigment(0.5) if pigmented else np.array([186, 76, 78], np.float32)
    img = blend(img, net_colour, net * alpha * rng.uniform(0.25, 0.5))
    if rng.random() < 0.8:  # follicle openings: white-yellow rings with a dark keratin plug
        spacing = s * rng.uniform(0.05, 0.08)
        xs, ys = grid_points(rng, geom, spacing, 0.85, 0.3)
        keep = rng.random(len(xs)) < rng.uniform(0.4, 0.9)
        xs, ys = xs[keep], ys[keep]
        r = spacing * rng.uniform(0.18, 0.28, len(xs))
        img = blend(img, KERATIN, dots_alpha(h, w, (xs, ys), r) * alpha * 1.3 * rng.uniform(0.5, 0.8))
        pick = rng.random(len(xs)) < 0.6
        plugs = dots_alpha(h, w, (xs[pick], ys[pick]), r[pick] * 0.4, 0.5)
        img = blend(img, pigment(0.7), plugs * rng.uniform(0.4, 0.8))
    if rng.random() < 0.7:  # surface scale
        scale = patches(rng, h, w, rng.uniform(6, 12), rng.choice([0.2, 0.3])) * smoothstep((1.0 - d) / 0.3)
        img = blend(img, KERATIN * 1.02, scale * texture(rng, h, w, 0.15)[..., 0] * rng.uniform(0.4, 0.75))
    if pigmented and rng.random() < 0.6:  # grey granules around follicles
        img = peppering(rng, img, geom, s, int(rng.integers(15, 40)), 0.9, 0.5)
    return img


def _paint_bkl(rng, img, h, w, yy, xx, s):
    """Benign keratosis: seborrhoeic keratosis (stuck-on, sharp moth-eaten border, fissures, cysts, openings),
    solar lentigo (light, flat, fingerprint lines) or lichen-planus-like keratosis (grey peppering)."""
    variant = rng.choice(3, p=[0.55, 0.3, 0.15])  # SK | lentigo | LPLK
    harmonics = [(2, 0.05), (3, 0.05), (4, 0.06)]
    size = rng.uniform(0.16, 0.34) if variant == 0 else rng.uniform(0.18, 0.38)
    contour = Contour(size=size, aspect=rng.uniform(1.1, 1.7), harmonics=harmonics, notches=int(rng.integers(0, 4)))
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    if variant == 1:  # solar lentigo
        tan = pigment(rng.uniform(0.0, 0.4))
        img, alpha = fill_body(rng, img, d, tan[None, None, :] * texture(rng, h, w, 0.05), rng.uniform(0.04, 0.12),
                           rng.uniform(0.45, 0.8))
        if rng.random() < 0.65:
            lines = parallel_lines(rng, h, w, xx, yy, s * rng.uniform(0.03, 0.045))
            img = blend(img, tan * 0.72, lines * alpha * rng.uniform(0.3, 0.55))
        return img
    if variant == 2:  # LPLK: a faded keratosis, pinkish-brown, densely peppered
        tone = 0.5 * pigment(rng.uniform(0.1, 0.5)) + 0.5 * PINK
        img, alpha = fill_body(rng, img, d, tone, rng.uniform(0.05, 0.2), rng.uniform(0.35, 0.6))
        return peppering(rng, img, geom, s, int(rng.integers(60, 140)), 0.95, 0.7)
    irritated = rng.random() < 0.2  # an inflamed keratosis: pinker, with looped vessels
    tan = 0.5 * pigment(rng.uniform(0.0, 0.5)) + 0.5 * PINK if irritated else pigment(rng.uniform(0.0, 0.75))
    colour = tan[None, None, :] * (1.0 + 0.1 * smooth_noise(rng, h, w, 10))[..., None] * texture(rng, h, w, 0.05)
    img, alpha = fill_body(rng, img, d, colour, rng.uniform(0.02, 0.08), rng.uniform(0.82, 0.97))
    if rng.random() < 0.6:  # cerebriform ridges and fissures
        fissure = np.exp(-((smooth_noise(rng, h, w, 12) / 0.2) ** 2))
        img = blend(img, tan * 0.62, fissure * alpha * rng.uniform(0.3, 0.6))
    n = int(rng.integers(0, 10))  # milia-like cysts: small white-yellow dots
    xs, ys = ring_points(rng, geom, n, 0.0, 0.9, clustered=False)
    img = blend(img, KERATIN, dots_alpha(h, w, (xs, ys), s * rng.uniform(0.007, 0.016, n)) * 0.85)
    n = int(rng.integers(0, 10))  # comedo-like openings: dark, slightly irregular plugs
    xs, ys = ring_points(rng, geom, n, 0.0, 0.9, clustered=False)
    plugs = dots_alpha(h, w, (xs, ys), s * rng.uniform(0.009, 0.02, n), elong=rng.uniform(1, 1.6, n),
                        angles=rng.uniform(0, np.pi, n))
    img = blend(img, pigment(0.8), plugs * 0.8)
    if rng.random() < (0.8 if irritated else 0.15):  # hairpin vessels with a white halo
        xs, ys = ring_points(rng, geom, int(rng.integers(2, 6)), 0.2, 0.85, clustered=False)
        loops = hairpins(rng, xs, ys, s)
        img = blend(img, WHITE, line_alpha(h, w, loops, [max(2, round(s / 40))] * len(loops), 1.0) * 0.5)
        img = blend(img, VESSEL_RED, line_alpha(h, w, loops, [1] * len(loops), 0.4) * 0.7)
    return img


def _paint_df(rng, img, h, w, yy, xx, s):
    """Dermatofibroma: small, round, a delicate network at the rim around a central white scar-like patch."""
    contour = Contour(size=rng.uniform(0.11, 0.24), aspect=rng.uniform(1.0, 1.25), harmonics=[(2, 0.04), (3, 0.03)])
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    brown = pigment(rng.uniform(0.05, 0.55))
    img, alpha = fill_body(rng, img, d, brown[None, None, :] * texture(rng, h, w, 0.04), rng.uniform(0.25, 0.5),
                       rng.uniform(0.5, 0.8))
    ring = smoothstep((d - 0.35) / 0.25) * smoothstep((1.25 - d) / 0.35)  # strongest between centre and rim
    net = network(rng, h, w, xx, yy, s * rng.uniform(0.03, 0.045), 0.2)
    img = blend(img, brown * 0.6, net * ring * rng.uniform(0.35, 0.65))
    if rng.random() < 0.45:  # pink-tinged centre
        img = blend(img, PINK, smoothstep((0.8 - d) / 0.4) * rng.uniform(0.3, 0.6))
    if rng.random() < 0.8:  # central white scar-like patch, irregular outline
        reach = rng.uniform(0.3, 0.6)
        patch = smoothstep((reach - d + 0.12 * smooth_noise(rng, h, w, 16)) / 0.12)
        img = blend(img, WHITE * rng.uniform(0.94, 1.0), patch * rng.uniform(0.5, 0.85))
    if rng.random() < 0.2:  # a few dotted vessels in the centre
        xs, ys = ring_points(rng, geom, int(rng.integers(3, 10)), 0.0, 0.5, clustered=False)
        img = blend(img, VESSEL_RED, dots_alpha(h, w, (xs, ys), np.full(len(xs), s * 0.008)) * 0.7)
    return img


def _paint_vasc(rng, img, h, w, yy, xx, s):
    """Vascular lesion: sharply bordered red/purple/dark lacunae separated by pale septa."""
    contour = Contour(size=rng.uniform(0.1, 0.28), aspect=rng.uniform(1.0, 1.5),
                       harmonics=[(2, 0.06), (3, 0.06), (5, 0.04)])
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    hue = rng.uniform()  # red .. purple .. dark blue-purple
    anchors = np.array([[196, 52, 62], [128, 50, 96], [60, 40, 70]], np.float32)
    pos = hue * 2
    i = min(int(pos), 1)
    lacuna = anchors[i] + (anchors[i + 1] - anchors[i]) * (pos - i)
    septa = 0.55 * PINK + 0.45 * WHITE
    img, alpha = fill_body(rng, img, d, septa, rng.uniform(0.04, 0.12), rng.uniform(0.55, 0.85))
    spacing = s * rng.uniform(0.035, 0.07)
    xs, ys = grid_points(rng, geom, spacing, 0.95, 0.3)
    r = spacing * rng.uniform(0.3, 0.5, len(xs))
    for shade in (rng.uniform(0.75, 0.95), rng.uniform(1.0, 1.2)):  # two shades of the one hue
        pick = rng.random(len(xs)) < 0.5
        img = blend(img, lacuna * shade, dots_alpha(h, w, (xs[pick], ys[pick]), r[pick], 0.7) * alpha * 1.15)
    if rng.random() < 0.3:  # whitish veil
        img = blend(img, WHITE, patches(rng, h, w, 5, 0.3) * alpha * rng.uniform(0.25, 0.45))
    if rng.random() < 0.25:  # thrombosed: a few black lacunae and a dark crust, melanoma-like
        pick = rng.random(len(xs)) < 0.3
        img = blend(img, pigment(1.0), dots_alpha(h, w, (xs[pick], ys[pick]), r[pick], 0.7) * alpha)
        img = ulcer(rng, img, h, w, geom, s)
    return img


def _paint_scc(rng, img, h, w, yy, xx, s):
    """Squamous cell carcinoma: pink, central keratin mass, glomerular and hairpin vessels, white circles,
    blood spots."""
    harmonics = [(2, 0.08), (3, 0.07), (5, 0.05)]
    contour = Contour(size=rng.uniform(0.16, 0.36), aspect=rng.uniform(1.0, 1.4), harmonics=harmonics)
    d, geom = lesion_geometry(rng, h, w, yy, xx, s, contour)
    pigmented = rng.random() < 0.2  # brownish, with brown dots and grey granules
    base = PINK * rng.uniform(0.9, 1.04)
    if pigmented:
        base = 0.5 * base + 0.5 * pigment(rng.uniform(0.1, 0.5))
    img, alpha = fill_body(rng, img, d, base[None, None, :] * texture(rng, h, w, 0.04), rng.uniform(0.15, 0.35),
                       rng.uniform(0.4, 0.7))
    if pigmented:
        xs, ys = ring_points(rng, geom, int(rng.integers(4, 15)), 0.2, 1.0, clustered=True)
        img = blend(img, pigment(0.75), dots_alpha(h, w, (xs, ys), s * rng.uniform(0.006, 0.015, len(xs))) * 0.7)
    if rng.random() < 0.75:  # keratin mass: rough white-yellow centre
        reach = rng.uniform(0.3, 0.7)
        mass = smoothstep((reach - d + 0.2 * smooth_noise(rng, h, w, 8)) / 0.15)
        img = blend(img, KERATIN * texture(rng, h, w, 0.12), mass * rng.uniform(0.6, 0.9))
    if rng.random() < 0.7:  # glomerular vessels: clusters of tiny coiled red dots around the centre
        n = int(rng.integers(4, 12))
        cx, cy = ring_points(rng, geom, n, 0.4, 0.95, clustered=True)
        k = int(rng.integers(3, 6))
        xs = np.repeat(cx, k) + rng.normal(0, s * 0.01, n * k)
        ys = np.repeat(cy, k) + rng.normal(0, s * 0.01, n * k)
        img = blend(img, VESSEL_RED, dots_alpha(h, w, (xs, ys), np.full(n * k, s * 0.006), 0.5) * 0.8)
    if rng.random() < 0.4:  # hairpin vessels with white halos
        xs, ys = ring_points(rng, geom, int(rng.integers(2, 7)), 0.3, 0.95, clustered=False)
        loops = hairpins(rng, xs, ys, s)
        img = blend(img, WHITE, line_alpha(h, w, loops, [max(2, round(s / 40))] * len(loops), 1.0) * 0.55)
        img = blend(img, VESSEL_RED, line_alpha(h, w, loops, [1] * len(loops), 0.4) * 0.75)
    if rng.random() < 0.4:  # white circles around follicle openings
        xs, ys = ring_points(rng, geom, int(rng.integers(3, 10)), 0.1, 0.9, clustered=False)
        circles = dots_alpha(h, w, (xs, ys), s * rng.uniform(0.012, 0.022, len(xs)), 0.6, ring=max(1.0, s / 90))
        img = blend(img, WHITE, circles * 0.8)
    if rng.random() < 0.5:  # blood spots on the keratin
        xs, ys = ring_points(rng, geom, int(rng.integers(1, 5)), 0.0, 0.6, clustered=True)
        spots = dots_alpha(h, w, (xs, ys), s * rng.uniform(0.01, 0.025, len(xs)), 1.0)
        img = blend(img, (110, 30, 30), spots * 0.85)
    if rng.random() < 0.2:
        img = ulcer(rng, img, h, w, geom, s)
    return img


_PAINTERS = {"MEL": _paint_mel, "NV": _paint_nv, "BCC": _paint_bcc, "AK": _paint_ak, "BKL": _paint_bkl,
             "DF": _paint_df, "VASC": _paint_vasc, "SCC": _paint_scc}
_SUN_DAMAGE = {"AK": 0.6, "SCC": 0.5, "BKL": 0.4, "BCC": 0.35}  # chance of sun-damaged skin around; else 0.2


# ---------------------------------------------------------------------------------------------- one image


def draw_lesion(rng: np.random.Generator, cls: str, width: int, height: int) -> np.ndarray:
    """One dermoscopy-like image of class cls (one of DEMO_CLASSES), drawn from rng: (height, width, 3) uint8."""
    if cls not in _PAINTERS:
        raise ValueError(f"unknown demo class {cls!r}; choose one of {DEMO_CLASSES}")
    h, w = int(height), int(width)
    s = min(w, h) * rng.uniform(0.8, 1.25)  # px; the zoom differs between images and dermoscopes
    yy = np.arange(h, dtype=np.float32)[:, None]  # (H, 1): sparse grids, broadcast where combined
    xx = np.arange(w, dtype=np.float32)[None, :]  # (1, W)
    img = background(rng, h, w, yy, xx, _SUN_DAMAGE.get(cls, 0.2))
    img = _PAINTERS[cls](rng, img, h, w, yy, xx, s)
    if rng.random() < 0.45:
        img = hairs(rng, img, h, w, s)
    if rng.random() < 0.15:
        img = bubbles(rng, img, h, w, s)
    if rng.random() < 0.06:
        img = ink(rng, img, h, w, s)
    grey = img.mean(2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.8, 1.2)  # colour saturation, exposure and white balance differ
    balance = np.clip(rng.normal(1.0, 0.06, 3), 0.9, 1.1)
    img = img * (rng.uniform(0.8, 1.15) * balance).astype(np.float32)  # between cameras
    blur = rng.uniform(0.25, 0.7) * min(w, h) / 144  # px; focus differs
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur))
    grain = rng.uniform(1.0, 3.0)  # sensor noise std, in 0-255 units
    noisy = np.asarray(out, np.float32) + grain * rng.standard_normal((h, w, 3), dtype=np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
