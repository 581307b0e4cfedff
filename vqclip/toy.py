"""The toy world: captioned images of one coloured shape on grey, and images that show no single shape.

vqclip cannot download pretrained weights in its tests, so it trains a tiny CLIP and VQGAN on this world
(scripts/train_toy.py) and checks generations with `vqclip.judge`, which looks only at pixels and never at
CLIP: a model that steers the wrong way cannot fool it. The negatives (`NEGATIVES`) are what the judge must
refuse to name.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
CAPTIONS = tuple(f"a {c} {s}" for c in COLOURS for s in SHAPES)

# base RGB of each colour; each image jitters it a little so CLIP learns a hue, not four exact pixels
RGB = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
_COLOUR_JITTER = 20
# dark and light grey backgrounds keep the shape's luminance from being a shortcut for its colour
_BACKGROUNDS = ((30, 80), (160, 215))
_MAX_NOISE = 8.0  # grey noise (same on all channels, so the background stays unsaturated)
_SUPERSAMPLE = 4  # shapes are rasterised at 4x and averaged down: anti-aliased edges, exact-ish areas
EXTENT = (0.3, 0.7)  # side of a shape's bounding box, as a fraction of the image side


def caption(colour: str, shape: str) -> str:
    return f"a {colour} {shape}"


def _box_coords(size: int, box: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates relative to a box (x0, y0, side) in pixels: [0, 1] inside it."""
    ss = size * _SUPERSAMPLE
    x0, y0, side = (v * _SUPERSAMPLE for v in box)
    coords = np.arange(ss) + 0.5
    return (coords[None, :] - x0) / side, (coords[:, None] - y0) / side


def _downsample(mask: np.ndarray, size: int) -> np.ndarray:
    return mask.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE).mean(axis=(1, 3))


def shape_coverage(shape: str, size: int, box: tuple[float, float, float], turn: int = 0) -> np.ndarray:
    """[size, size] fraction of each pixel covered by `shape` filling box (x0, y0, side); triangles point
    up, down, left or right for turn 0-3."""
    u, v = _box_coords(size, box)
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    if shape == "square":
        mask = inside
    elif shape == "circle":
        mask = (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
    elif shape == "triangle":
        # an isosceles triangle filling half its box, apex in the middle of one side
        along, across = [(v, u), (1 - v, u), (u, v), (1 - u, v)][turn]
        mask = inside & (np.abs(across - 0.5) <= along / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    return _downsample(mask, size)


def _random_box(size: int, rng: np.random.Generator, extent=EXTENT, region=None) -> tuple[float, float, float]:
    """A box of side extent*size at a random place inside region (x0, y0, x1, y1; default the image)."""
    x0, y0, x1, y1 = region or (0, 0, size, size)
    side = rng.uniform(*extent) * size
    return rng.uniform(x0, x1 - side), rng.uniform(y0, y1 - side), side


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
    grey = rng.uniform(lo, hi) + rng.normal(0, rng.uniform(0, _MAX_NOISE), size=(size, size))
    return np.repeat(grey[:, :, None], 3, axis=2)


def _paint(image: np.ndarray, colour: str, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if colour not in RGB:
        raise ValueError(f"unknown colour {colour!r}; choose one of: {', '.join(COLOURS)}")
    fg = np.clip(np.array(RGB[colour]) + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3), 0, 255)
    return alpha[:, :, None] * fg + (1 - alpha[:, :, None]) * image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).round().astype(np.uint8)


def render(colour: str, shape: str, rng: np.random.Generator, size: int = 32, extent=EXTENT) -> np.ndarray:
    """One image [size, size, 3] uint8: a `colour` `shape` (box side in `extent` x size) on grey."""
    background = _background(size, rng)
    box = _random_box(size, rng, extent)
    alpha = shape_coverage(shape, size, box, int(rng.integers(4)))
    return _to_uint8(_paint(background, colour, alpha, rng))


def sample(n: int, seed: int, size: int = 32, extent=EXTENT) -> tuple[torch.Tensor, list[str]]:
    """n random toy images as a float tensor [n, 3, size, size] in [0, 1], with their captions."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(CAPTIONS), size=n)
    images, captions = [], []
    for label in labels:
        colour, shape = COLOURS[label // len(SHAPES)], SHAPES[label % len(SHAPES)]
        images.append(render(colour, shape, rng, size, extent))
        captions.append(caption(colour, shape))
    return as_batch(images), captions


def as_batch(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] images -> one float tensor [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


# ---------------------------------------------------------------------------------------------------------
# negatives: images in which no single toy shape can be named


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random blob of one toy colour: a circle whose radius wobbles by 15-30% (rms) with the angle."""
    u, v = _box_coords(size, _random_box(size, rng, (0.35, 0.6), None))
    dx, dy = u - 0.5, v - 0.5
    angle, radius = np.arctan2(dy, dx), np.hypot(dx, dy)
    k = np.arange(2, 6)
    amp = rng.normal(size=4) / k  # low frequencies dominate, as in a blob rather than a star
    amp *= rng.uniform(0.15, 0.3) / np.sqrt(np.sum(amp**2) / 2)
    wobble = amp[:, None, None] * np.cos(k[:, None, None] * angle + rng.uniform(0, 2 * np.pi, 4)[:, None, None])
    # radius 0.5 of the box at most: the blob may reach 1.5x that, so it is drawn in a box of 0.35-0.6
    alpha = _downsample(radius <= 0.4 * (1 + wobble.sum(0)), size)
    return _paint(_background(size, rng), COLOURS[rng.integers(len(COLOURS))], alpha, rng)


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random colour: per pixel, or smooth patches (a coarse random grid upsampled, like random VQGAN tokens)."""
    if rng.random() < 0.5:
        return rng.uniform(0, 255, (size, size, 3))
    cells = int(rng.integers(3, 9))
    grid = torch.from_numpy(rng.uniform(0, 255, (1, 3, cells, cells)))
    smooth = torch.nn.functional.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    return smooth[0].permute(1, 2, 0).numpy()


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (std `sigma` pixels) of an [H, W, 3] image, edges replicated."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(image.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(w * padded[i : i + image.shape[0], :, :] for i, w in enumerate(taps))
    return sum(w * rows[:, i : i + image.shape[1], :] for i, w in enumerate(taps))


def _blurred(rng: np.random.Generator, size: int) -> np.ndarray:
    """A toy shape blurred by a Gaussian of std 4-8% of the image side: no edge left to call it by."""
    image = render(COLOURS[rng.integers(4)], SHAPES[rng.integers(3)], rng, size)
    return blur(image, rng.uniform(0.04, 0.08) * size)


def _two_shapes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two toy shapes side by side (random colours, maybe equal), one in each half of the image."""
    image = _background(size, rng)
    halves = [(0, 0, size / 2, size), (size / 2, 0, size, size)]
    if rng.random() < 0.5:
        halves = [(0, 0, size, size / 2), (0, size / 2, size, size)]
    for region in halves:
        box = _random_box(size, rng, (0.25, 0.45), region)
        alpha = shape_coverage(SHAPES[rng.integers(3)], size, box, int(rng.integers(4)))
        image = _paint(image, COLOURS[rng.integers(4)], alpha, rng)
    return image


NEGATIVES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "blob": _blob,
    "noise": _noise,
    "blurred": _blurred,
    "two shapes": _two_shapes,
}


def render_negative(kind: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One [size, size, 3] uint8 image of a NEGATIVES kind."""
    if kind not in NEGATIVES:
        raise ValueError(f"unknown negative {kind!r}; choose one of: {', '.join(NEGATIVES)}")
    return _to_uint8(NEGATIVES[kind](rng, size))
