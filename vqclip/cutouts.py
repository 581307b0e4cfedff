"""Image -> cutn augmented CLIP-sized crops, sampled on the image's device and resampled in one pass.

Every crop is an affine map of the output grid (crop box, flip, rotation/shear/scale jitter), so the whole
batch of crops comes from one `grid_sample` call; pixel augmentations then act on the crops. Parameters are
drawn from one `torch.Generator` per image, so an image's crops do not depend on which batch it is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F


@dataclass
class CropParams:
    """Per-crop parameters for one image: `theta` [cutn, 2, 3] maps output coords to input coords."""

    theta: torch.Tensor
    pixel: dict  # name -> tensor of per-crop values, filled by pixel augmentations


def _eye(n: int, device, dtype=torch.float32) -> torch.Tensor:
    return torch.eye(3, device=device, dtype=dtype).expand(n, 3, 3).clone()


def _crop_boxes(
    cutn: int, cut_size: int, cut_pow: float, height: int, width: int, g: torch.Generator, device
) -> torch.Tensor:
    """Square crops of random size (rand**cut_pow between cut_size and the short side) at random places."""
    max_size = min(height, width)
    min_size = min(max_size, cut_size)
    u = torch.rand(3, cutn, generator=g, device=device)
    size = u[0].pow(cut_pow) * (max_size - min_size) + min_size
    # crop centre in normalised [-1, 1] coordinates, keeping the crop inside the image
    cx = (u[1] * 2 - 1) * (1 - size / width)
    cy = (u[2] * 2 - 1) * (1 - size / height)
    m = _eye(cutn, device)
    m[:, 0, 0] = size / width
    m[:, 1, 1] = size / height
    m[:, 0, 2] = cx
    m[:, 1, 2] = cy
    return m


def _flip(m: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Horizontal flip of half the crops."""
    sign = torch.where(torch.rand(m.shape[0], generator=g, device=m.device) < 0.5, -1.0, 1.0)
    f = _eye(m.shape[0], m.device)
    f[:, 0, 0] = sign
    return m @ f


def _affine(m: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Small rotation (+-15 deg), shear (+-0.1), scale (0.9-1.1) and shift (+-5%) of each crop."""
    n = m.shape[0]
    u = torch.rand(5, n, generator=g, device=m.device) * 2 - 1
    angle, shear, scale = u[0] * math.radians(15), u[1] * 0.1, 1 + u[2] * 0.1
    a = _eye(n, m.device)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    a[:, 0, 0], a[:, 0, 1], a[:, 0, 2] = cos, -sin + shear, u[3] * 0.05
    a[:, 1, 0], a[:, 1, 1], a[:, 1, 2] = sin, cos, u[4] * 0.05
    return m @ a


def _noise(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Gaussian noise with a random strength (0-0.1) per crop."""
    n = crops.shape[0]
    facs = torch.rand(n, 1, 1, 1, generator=g, device=crops.device) * 0.1
    return crops + facs * torch.randn(crops.shape, generator=g, device=crops.device)


def _color(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation jitter of +-10% per crop."""
    n = crops.shape[0]
    u = 1 + (torch.rand(3, n, 1, 1, 1, generator=g, device=crops.device) * 2 - 1) * 0.1
    grey = crops.mean(dim=1, keepdim=True)
    crops = grey + (crops - grey) * u[2]
    mean = crops.mean(dim=(1, 2, 3), keepdim=True)
    return ((crops - mean) * u[1] + mean) * u[0]


def _gray(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Turn 10% of the crops grey, so colour alone cannot satisfy the prompt."""
    pick = (torch.rand(crops.shape[0], 1, 1, 1, generator=g, device=crops.device) < 0.1).to(crops.dtype)
    return crops * (1 - pick) + crops.mean(dim=1, keepdim=True) * pick


def _perspective(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random perspective tilt of each crop: x, y -> (x, y) / (1 + a x + b y) with a, b in +-0.25."""
    n, _, h, w = crops.shape
    ab = (torch.rand(n, 2, 1, 1, generator=g, device=crops.device) * 2 - 1) * 0.25
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, h, device=crops.device), torch.linspace(-1, 1, w, device=crops.device), indexing="ij"
    )
    denom = 1 + ab[:, 0] * xs + ab[:, 1] * ys
    grid = torch.stack([xs / denom, ys / denom], -1).to(crops.dtype)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="reflection", align_corners=True)


def _erasing(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Half the crops get a random rectangle (10-40% of the area, as kornia's RandomErasing) set to their mean."""
    n, _, h, w = crops.shape
    u = torch.rand(5, n, generator=g, device=crops.device)
    area = 0.1 + 0.3 * u[0]
    aspect = torch.exp((u[1] * 2 - 1) * math.log(3))  # height / width between 1/3 and 3
    eh, ew = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    y0, x0 = u[2] * (1 - eh), u[3] * (1 - ew)
    ys = (torch.arange(h, device=crops.device) + 0.5) / h
    xs = (torch.arange(w, device=crops.device) + 0.5) / w
    inside = (
        (ys.view(1, h, 1) >= y0.view(n, 1, 1))
        & (ys.view(1, h, 1) < (y0 + eh).view(n, 1, 1))
        & (xs.view(1, 1, w) >= x0.view(n, 1, 1))
        & (xs.view(1, 1, w) < (x0 + ew).view(n, 1, 1))
    )
    erase = (inside & (u[4] < 0.5).view(n, 1, 1)).unsqueeze(1).to(crops.dtype)
    return crops * (1 - erase) + crops.mean(dim=(2, 3), keepdim=True) * erase


def _jitter(crops: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Hue turned by up to +-0.1 of the colour circle and saturation scaled by 0.9-1.1, per crop (nerdyrodent's
    ColorJitter(hue=0.1, saturation=0.1)); the hue turns about the grey axis of RGB, so grey stays grey."""
    n = crops.shape[0]
    u = torch.rand(2, n, generator=g, device=crops.device) * 2 - 1
    angle = u[0] * 0.1 * 2 * math.pi
    cos, sin = angle.cos().view(n, 1, 1), angle.sin().view(n, 1, 1)
    k = torch.full((3, 3), 1 / 3, device=crops.device, dtype=crops.dtype)  # projection onto the grey axis
    cross = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], device=crops.device, dtype=crops.dtype) / math.sqrt(3)
    rotation = k + cos * (torch.eye(3, device=crops.device) - k) + sin * cross  # Rodrigues' formula, [n, 3, 3]
    turned = torch.einsum("nij,njhw->nihw", rotation.to(crops.dtype), crops)
    grey = turned.mean(dim=1, keepdim=True)
    return grey + (turned - grey) * (1 + 0.1 * u[1]).view(n, 1, 1, 1)


# name -> (kind, fn): geometric ones compose crop matrices, pixel ones transform the crops
AUGMENTS: dict[str, tuple[str, Callable]] = {
    "flip": ("geometric", _flip),
    "affine": ("geometric", _affine),
    "noise": ("pixel", _noise),
    "color": ("pixel", _color),
    "gray": ("pixel", _gray),
    "perspective": ("pixel", _perspective),
    "erasing": ("pixel", _erasing),
    "jitter": ("pixel", _jitter),
}


def _pooled(images: torch.Tensor, cut_size: int) -> torch.Tensor:
    """nerdyrodent's cutout: the whole image, the mean of an adaptive average pool and max pool to cut_size."""
    size = (cut_size, cut_size)
    return (F.adaptive_avg_pool2d(images, size) + F.adaptive_max_pool2d(images, size)) / 2


OVERVIEW_SHARE = 0.25  # pytti's dango cutouts mix whole-image views with crops; a quarter here


def _with_overviews(boxes: torch.Tensor) -> torch.Tensor:
    """The first quarter of the crops (at least one) show the whole image; the rest stay random crops."""
    boxes = boxes.clone()
    boxes[: max(1, int(len(boxes) * OVERVIEW_SHARE))] = _eye(1, boxes.device)
    return boxes


def _whole(boxes: torch.Tensor) -> torch.Tensor:
    return _eye(len(boxes), boxes.device)


# name -> (what the crops are taken from, what becomes of the random crop boxes); one shared signature
CUTOUT_METHODS: dict[str, tuple[Callable, Callable]] = {
    "crops": (lambda images, cut_size: images, lambda boxes: boxes),
    "overview": (lambda images, cut_size: images, _with_overviews),
    "pooled": (_pooled, _whole),
}


def crop_matrices(
    cutn: int,
    cut_size: int,
    cut_pow: float,
    height: int,
    width: int,
    augments: Sequence[str],
    g: torch.Generator,
    device,
    method: str = "crops",
) -> torch.Tensor:
    """[cutn, 2, 3] affine matrices for one image (crop box composed with its geometric augmentations)."""
    # the random boxes are drawn for every method, so each method's augmentations use the same random numbers
    m = CUTOUT_METHODS[method][1](_crop_boxes(cutn, cut_size, cut_pow, height, width, g, device))
    for name in augments:
        kind, fn = AUGMENTS[name]
        if kind == "geometric":
            m = fn(m, g)
    return m[:, :2, :]


def oversample(height: int, width: int, cut_size: int) -> int:
    """Sample each crop at k*cut_size then average-pool, so large crops are not aliased (max 4x)."""
    return max(1, min(4, math.ceil(min(height, width) / cut_size)))


def apply_crops(images: torch.Tensor, theta: torch.Tensor, cut_size: int) -> torch.Tensor:
    """images [B, C, H, W], theta [B, cutn, 2, 3] -> crops [B*cutn, C, cut_size, cut_size] in one grid_sample."""
    b, c, h, w = images.shape
    cutn = theta.shape[1]
    k = oversample(h, w, cut_size)
    s = cut_size * k
    grid = F.affine_grid(theta.reshape(b * cutn, 2, 3).to(images.dtype), [b * cutn, c, s, s], align_corners=False)
    # lay each image's crops side by side in one tall grid so the image itself is never copied cutn times
    grid = grid.view(b, cutn * s, s, 2)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    crops = crops.view(b, c, cutn, s, s).transpose(1, 2).reshape(b * cutn, c, s, s)
    return F.avg_pool2d(crops, k) if k > 1 else crops


def make_cutouts(
    images: torch.Tensor,
    cut_size: int,
    cutn: int,
    cut_pow: float,
    augments: Sequence[str],
    generators: Sequence[torch.Generator],
    method: str = "crops",
) -> torch.Tensor:
    """[B, C, H, W] -> [B*cutn, C, cut_size, cut_size]; image b's crops are drawn from generators[b].

    `method` names a CUTOUT_METHODS entry: random crops, crops with whole-image overviews, or pooled images.
    """
    b, _, h, w = images.shape
    assert len(generators) == b, "one generator per image"
    theta = torch.stack(
        [crop_matrices(cutn, cut_size, cut_pow, h, w, augments, g, images.device, method) for g in generators]
    )
    crops = apply_crops(CUTOUT_METHODS[method][0](images, cut_size), theta, cut_size)
    pixel = [AUGMENTS[name][1] for name in augments if AUGMENTS[name][0] == "pixel"]
    if not pixel:
        return crops
    out = []
    for i, g in enumerate(generators):
        chunk = crops[i * cutn : (i + 1) * cutn]
        for fn in pixel:
            chunk = fn(chunk, g)
        out.append(chunk)
    return torch.cat(out)
