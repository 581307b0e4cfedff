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


def _crop_boxes(cutn: int, cut_size: int, cut_pow: float, height: int, width: int, g: torch.Generator,
                device) -> torch.Tensor:
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


# name -> (kind, fn): geometric ones compose crop matrices, pixel ones transform the crops
AUGMENTS: dict[str, tuple[str, Callable]] = {
    "flip": ("geometric", _flip),
    "affine": ("geometric", _affine),
    "noise": ("pixel", _noise),
    "color": ("pixel", _color),
    "gray": ("pixel", _gray),
}


def crop_matrices(cutn: int, cut_size: int, cut_pow: float, height: int, width: int, augments: Sequence[str],
                  g: torch.Generator, device) -> torch.Tensor:
    """[cutn, 2, 3] affine matrices for one image (crop box composed with its geometric augmentations)."""
    m = _crop_boxes(cutn, cut_size, cut_pow, height, width, g, device)
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


def make_cutouts(images: torch.Tensor, cut_size: int, cutn: int, cut_pow: float, augments: Sequence[str],
                 generators: Sequence[torch.Generator]) -> torch.Tensor:
    """[B, C, H, W] -> [B*cutn, C, cut_size, cut_size]; image b's crops are drawn from generators[b]."""
    b, _, h, w = images.shape
    assert len(generators) == b, "one generator per image"
    theta = torch.stack([crop_matrices(cutn, cut_size, cut_pow, h, w, augments, g, images.device)
                         for g in generators])
    crops = apply_crops(images, theta, cut_size)
    pixel = [AUGMENTS[name][1] for name in augments if AUGMENTS[name][0] == "pixel"]
    if not pixel:
        return crops
    out = []
    for i, g in enumerate(generators):
        chunk = crops[i * cutn:(i + 1) * cutn]
        for fn in pixel:
            chunk = fn(chunk, g)
        out.append(chunk)
    return torch.cat(out)
