"""The toy world: small captioned images of one coloured shape, and a pixel-statistics judge of them.

vqclip cannot download pretrained weights in its tests, so it trains a tiny CLIP and VQGAN on this world
(scripts/train_toy.py) and checks generations with the judge below, which looks only at pixels and never
at CLIP: a model that steers the wrong way cannot fool it.
"""

from __future__ import annotations

import numpy as np
import torch

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
CAPTIONS = tuple(f"a {c} {s}" for c in COLOURS for s in SHAPES)

# base RGB of each colour; each image jitters it a little so CLIP learns a hue, not four exact pixels
_RGB = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
_COLOUR_JITTER = 20
# hue (degrees) the judge assigns each colour to; a pixel goes to the nearest one on the circle
_HUES = {"red": 0.0, "yellow": 60.0, "green": 120.0, "blue": 240.0}
# dark and light grey backgrounds keep the shape's luminance from being a shortcut for its colour
_BACKGROUNDS = ((30, 80), (160, 215))
_MAX_NOISE = 8.0  # grey noise (same on all channels, so the background stays unsaturated)
_SUPERSAMPLE = 4  # shapes are rasterised at 4x and averaged down: anti-aliased edges, exact-ish areas
# the judge's fill ratio (mask area / bounding-box area) of each ideal shape: 1, pi/4 and 1/2
_FILL = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}


def caption(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def _coverage(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """[size, size] fraction of each pixel covered by one shape of random extent, position and pose."""
    ss = size * _SUPERSAMPLE
    extent = rng.uniform(0.3, 0.7) * ss  # side of the shape's bounding box
    x0, y0 = rng.uniform(0, ss - extent, size=2)
    # pixel-centre coordinates relative to the bounding box, in [0, 1] inside it
    coords = (np.arange(ss) + 0.5)
    u = (coords[None, :] - x0) / extent
    v = (coords[:, None] - y0) / extent
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if shape == "square":
        mask = inside
    elif shape == "circle":
        mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif shape == "triangle":
        # an isosceles triangle filling half its box; it points up, down, left or right
        turn = rng.integers(4)
        along, across = [(v, u), (1 - v, u), (u, v), (1 - u, v)][turn]
        mask = inside & (np.abs(across - 0.5) <= along / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    return mask.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))


def render(colour: str, shape: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One image [size, size, 3] uint8: a `colour` `shape` on a plain or slightly noisy grey background."""
    if colour not in _RGB:
        raise ValueError(f"unknown colour {colour!r}; choose one of: {', '.join(COLOURS)}")
    lo, hi = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
    grey = rng.uniform(lo, hi) + rng.normal(0, rng.uniform(0, _MAX_NOISE), size=(size, size))
    background = np.repeat(grey[:, :, None], 3, axis=2)
    fg = np.clip(np.array(_RGB[colour]) + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3), 0, 255)
    alpha = _coverage(shape, size, rng)[:, :, None]
    return np.clip(alpha * fg + (1 - alpha) * background, 0, 255).round().astype(np.uint8)


def sample(n: int, seed: int, size: int = 32) -> tuple[torch.Tensor, list[str]]:
    """n random toy images as a float tensor [n, 3, size, size] in [0, 1], with their captions."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(CAPTIONS), size=n)
    images, captions = [], []
    for label in labels:
        colour, shape = COLOURS[label // len(SHAPES)], SHAPES[label % len(SHAPES)]
        images.append(render(colour, shape, rng, size))
        captions.append(caption(colour, shape))
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return batch, captions


# ---------------------------------------------------------------------------------------------------------
# the judge: pixel statistics only


def _as_hwc(img) -> np.ndarray:
    """Accept uint8 HxWx3, float HxWx3 in [0, 1], or a [3, H, W] / [1, 3, H, W] tensor in [0, 1]."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float()
        if img.dim() == 4:
            img = img[0]
        img = img.permute(1, 2, 0).numpy()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = np.clip(img * 255, 0, 255)
    return img.astype(np.float64)


def _hue_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel hue (degrees), chroma (max - min, 0..255) and saturation (chroma / max)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = mx - mn
    safe = np.where(chroma > 0, chroma, 1)
    hue = np.where(mx == r, ((g - b) / safe) % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) * 60
    return hue, chroma, chroma / np.maximum(mx, 1)


def _colour_map(img) -> tuple[np.ndarray, np.ndarray]:
    """Index into COLOURS of each pixel's nearest hue (-1 where unsaturated), and each pixel's chroma."""
    hue, chroma, saturation = _hue_chroma(_as_hwc(img))
    centres = np.array([_HUES[c] for c in COLOURS])
    gap = np.abs(hue[..., None] - centres)
    nearest = np.minimum(gap, 360 - gap).argmin(axis=-1)
    # grey noise and washed-out pixels carry no colour; these thresholds sit far from both
    saturated = (chroma > 50) & (saturation > 0.3)
    return np.where(saturated, nearest, -1), chroma


def dominant_colour(img) -> str:
    """The colour whose hue carries the most chroma among saturated pixels; "none" if nothing is saturated."""
    labels, chroma = _colour_map(img)
    mass = np.array([chroma[labels == k].sum() for k in range(len(COLOURS))])
    return COLOURS[int(mass.argmax())] if mass.max() > 0 else "none"


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected region of a boolean mask (labels spread as neighbourhood minima)."""
    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        shifted = [padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        new = np.where(mask, np.min(shifted, axis=0), big)
        if np.array_equal(new, labels):
            break
        labels = new
    ids, counts = np.unique(labels[mask], return_counts=True)
    return labels == ids[counts.argmax()] if len(ids) else mask


def fill_ratio(img, colour: str | None = None) -> float:
    """Area of the largest blob of `colour` (default: the dominant one) over the area of its bounding box."""
    colour = colour or dominant_colour(img)
    if colour not in COLOURS:
        return 0.0
    labels, _ = _colour_map(img)
    blob = _largest_component(labels == COLOURS.index(colour))
    rows, cols = np.nonzero(blob)
    if len(rows) == 0:
        return 0.0
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    return float(blob.sum() / box)


def judge_shape(img, colour: str | None = None) -> str:
    """The shape whose ideal fill ratio (square 1, circle pi/4, triangle 1/2) is nearest the blob's."""
    ratio = fill_ratio(img, colour)
    return min(_FILL, key=lambda s: abs(_FILL[s] - ratio))
