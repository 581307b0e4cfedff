"""A pixel-statistics judge of toy-world images: which colour, which shape, or "none". It never looks at CLIP.

Colour: the hue that carries most of the image's saturated chroma, unless a second hue carries a good part of
it too. Shape: the main blob of that colour, fitted by an ideal circle, square and triangle (moment-matched,
a few rotations), both as a soft mask (its chroma) and as an outline (the blob itself); the best IoU names the
shape if it is high enough, the edge is crisp and no second blob competes. The outline fit lets a shape drawn
with a textured fill or a slightly soft edge (a VQGAN's reconstruction of a render, which a person reads at a
glance) count as that shape; the edge test alone decides how soft is too soft. Every threshold sits between
what the renderer's own images and the negatives of `vqclip.toy.NEGATIVES` measure (tests/test_judge.py;
figures in checkpoints/toy/TRAINING.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .toy import COLOURS, SHAPES

NONE = "none"
# hue (degrees) of each colour; a pixel goes to the nearest one on the circle
HUES = {"red": 0.0, "yellow": 60.0, "green": 120.0, "blue": 240.0}
MIN_CHROMA, MIN_SATURATION = 50.0, 0.3  # grey noise and washed-out pixels carry no colour
MIN_AREA = 0.015  # a blob under 1.5% of the image is too small to name (a 0.3-side triangle is 4.5%)
MAX_MIX = 0.3  # a second hue with 30% of the first's chroma mass: two colours, none named
MIN_IOU = 0.87  # renders fit their ideal shape at >= 0.88 (32 px), blobs at <= 0.865 (TRAINING.md)
MAX_EDGE = 3.8  # edge rise in px: renders <= 3.3, VQGAN reconstructions <= 4.0, blurred negatives >= 3.9 (32 px)
MAX_RIVAL = 0.15  # a second blob (any colour) with 15% of the main blob's area: two shapes
ANGLES = np.radians(np.arange(-15, 16, 5))  # CLIP's views are rotated up to 15 degrees, so shapes may be too
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Verdict:
    colour: str  # a COLOURS entry or "none"
    shape: str  # a SHAPES entry or "none"
    iou: float = 0.0  # IoU of the main blob (soft mask or outline, the better) with its best-fitting ideal shape
    edge: float = 0.0  # pixels the edge takes to rise from background to shape (see edge_width)
    fit: str = "none"  # the best-fitting ideal shape, thresholds aside: a diagnostic of a near miss, not a verdict


def as_pixels(img) -> np.ndarray:
    """uint8 HxWx3, float HxWx3 in [0, 1], or a [3, H, W] / [1, 3, H, W] tensor in [0, 1] -> float HxWx3 0..255."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float()
        img = img[0] if img.dim() == 4 else img
        img = img.permute(1, 2, 0).numpy()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img * 255, 0, 255)
    return img.astype(np.float64)


def hue_map(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: index into COLOURS of the nearest hue (-1 where unsaturated), and chroma (max - min, 0..255)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = mx - mn
    safe = np.where(chroma > 0, chroma, 1)
    hue = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    gap = np.abs(hue[..., None] - np.array([HUES[c] for c in COLOURS]))
    nearest = np.minimum(gap, 360 - gap).argmin(axis=-1)
    saturated = (chroma > MIN_CHROMA) & (chroma / np.maximum(mx, 1) > MIN_SATURATION)
    return np.where(saturated, nearest, -1), chroma


def colour_of(img) -> str:
    """The image's colour (a COLOURS entry), or "none" when too little is saturated or two hues share it."""
    return judge_colour(as_pixels(img))


def judge_colour(rgb: np.ndarray) -> str:
    labels, chroma = hue_map(rgb)
    mass = np.sort([chroma[labels == k].sum() for k in range(len(COLOURS))])
    best = int(np.argmax([chroma[labels == k].sum() for k in range(len(COLOURS))]))
    if (labels == best).mean() < MIN_AREA or mass[-2] > MAX_MIX * mass[-1]:
        return NONE
    return COLOURS[best]


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected regions of a boolean mask, largest first (labels spread as neighbourhood minima)."""
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        shifted = [padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        new = np.where(mask, np.min(shifted, axis=0), big)
        if np.array_equal(new, labels):
            break
        labels = new
    ids, counts = np.unique(labels[mask], return_counts=True)
    return [labels == i for i in ids[np.argsort(-counts)]]


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(mask, r)
    h, w = mask.shape
    return np.any(
        [padded[r + dy : r + dy + h, r + dx : r + dx + w] for dy in range(-r, r + 1) for dx in range(-r, r + 1)], axis=0
    )


def template(
    shape: str, shape_hw: tuple[int, int], cx: float, cy: float, area: float, angle: float, turn: int = 0
) -> np.ndarray:
    """Soft coverage of an ideal `shape` of `area` pixels with its centroid at (cx, cy), rotated by angle."""
    h, w = shape_hw
    ys = (np.arange(h * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - cy
    xs = (np.arange(w * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - cx
    cos, sin = np.cos(angle), np.sin(angle)
    x = cos * xs[None, :] + sin * ys[:, None]
    y = -sin * xs[None, :] + cos * ys[:, None]
    if shape == "circle":
        mask = x**2 + y**2 <= area / np.pi
    elif shape == "square":
        half = np.sqrt(area) / 2
        mask = (np.abs(x) <= half) & (np.abs(y) <= half)
    else:  # isosceles, base = height = side; its centroid is a third of the way up from the base
        side = np.sqrt(2 * area)
        along, across = [(y, x), (-y, x), (x, y), (-x, y)][turn]
        t = along / side + 2 / 3  # 0 at the apex, 1 at the base
        mask = (t >= 0) & (t <= 1) & (np.abs(across / side) <= t / 2)
    return mask.reshape(h, _SUPERSAMPLE, w, _SUPERSAMPLE).mean(axis=(1, 3))


def _candidates():
    yield "circle", 0.0, 0
    for angle in ANGLES:
        yield "square", angle, 0
        for turn in range(4):
            yield "triangle", angle, turn


def best_fit(strength: np.ndarray) -> tuple[str, float]:
    """The ideal shape (moment-matched to the soft mask `strength`) with the highest soft IoU, and that IoU."""
    area = strength.sum()
    ys, xs = np.mgrid[: strength.shape[0], : strength.shape[1]] + 0.5
    cx, cy = (strength * xs).sum() / area, (strength * ys).sum() / area
    best, best_iou = NONE, 0.0
    for shape, angle, turn in _candidates():
        t = template(shape, strength.shape, cx, cy, area, angle, turn)
        iou = np.minimum(strength, t).sum() / np.maximum(strength, t).sum()
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best, best_iou


def edge_width(strength: np.ndarray, blob: np.ndarray) -> float:
    """How many pixels the edge takes to rise from background to shape: 1 / the mean slope of the strength on the
    blob's boundary pixels (a step read by central differences gives ~2; a Gaussian blur of std s, ~2.5 s).

    Only the boundary counts, so texture inside a shape is not mistaken for a soft edge."""
    boundary = blob & _dilate(~blob, 1)
    if not boundary.any():
        return 0.0
    gy, gx = np.gradient(strength)
    return float(1 / max(np.hypot(gx, gy)[boundary].mean(), 1e-6))


def judge(img) -> Verdict:
    """Colour and shape of a toy-world image by its pixels; "none" where no single shape of one colour shows."""
    rgb = as_pixels(img)
    colour = judge_colour(rgb)
    if colour == NONE:
        return Verdict(NONE, NONE)
    labels, chroma = hue_map(rgb)
    k = COLOURS.index(colour)
    # strength 1 at the colour's typical chroma inside the shape, 0 on the grey background
    full = np.percentile(chroma[labels == k], 90)
    near_hue = labels == k
    strength = np.clip(chroma / full, 0, 1) * _dilate(near_hue, 1)
    blobs = components(strength >= 0.5)
    if not blobs or blobs[0].mean() < MIN_AREA:
        return Verdict(colour, NONE)
    main = blobs[0]
    rivals = [c.sum() for c in components((labels >= 0) & ~_dilate(main, 2))]
    strength = strength * _dilate(main, 2)  # the main blob and its soft edge; specks elsewhere are ignored
    shape, iou = max(best_fit(strength), best_fit(main.astype(float)), key=lambda fit: fit[1])  # soft, outline
    edge = edge_width(strength, main)
    if iou < MIN_IOU or edge > MAX_EDGE or (rivals and rivals[0] > MAX_RIVAL * main.sum()):
        return Verdict(colour, NONE, iou, edge, shape)
    return Verdict(colour, shape, iou, edge, shape)


def validate(per_caption: int, sizes=(32, 64, 128), extent=(0.2, 0.8), per_negative: int = 0, seed: int = 0) -> dict:
    """The judge on the renderer's own labelled images and on NEGATIVES, at every size in sizes.

    Returns, per size, the share of renders whose colour and shape it reads right, and per negative kind the
    share it answers "none" for the shape (and for the colour, where no single colour shows).
    """
    from .toy import NEGATIVES, render, render_negative

    rng = np.random.default_rng(seed)
    out: dict = {}
    for size in sizes:
        verdicts = [
            (c, s, judge(render(c, s, rng, size, extent))) for c in COLOURS for s in SHAPES for _ in range(per_caption)
        ]
        row = {
            "images": len(verdicts),
            "colour": float(np.mean([v.colour == c for c, _, v in verdicts])),
            "shape": float(np.mean([v.shape == s for _, s, v in verdicts])),
        }
        for kind in NEGATIVES if per_negative else ():
            negatives = [judge(render_negative(kind, rng, size)) for _ in range(per_negative)]
            row[kind] = {
                "shape_none": float(np.mean([v.shape == NONE for v in negatives])),
                "colour_none": float(np.mean([v.colour == NONE for v in negatives])),
            }
        out[size] = row
    return out
