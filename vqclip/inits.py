"""How the latent starts, by name: random codebook tokens, or an image of noise encoded by the VQGAN.

Every init has the signature (vqgan, height, width, generators) -> latent [B, D, h, w], one image per
generator, drawn on the generators' device. An init image (`cfg.init_image`) takes precedence over all of them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .optimize import random_latent

if TYPE_CHECKING:  # the model comes as it is; importing its module would put this floor above it
    from .vqgan import VQGAN


def _encoded(vqgan: VQGAN, images: torch.Tensor) -> torch.Tensor:
    return vqgan.encode(images.clamp(0, 1) * 2 - 1)


def _per_image(draw: Callable[[torch.Generator, int, int, torch.device], torch.Tensor]):
    """An init from a function that draws one [3, H, W] image in [0, 1]: draw each, encode them together."""

    def init(vqgan: VQGAN, height: int, width: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
        device = vqgan.codebook.device
        return _encoded(vqgan, torch.stack([draw(g, height, width, device) for g in generators]))

    init.__doc__ = draw.__doc__
    return init


def _pixels(g: torch.Generator, height: int, width: int, device) -> torch.Tensor:
    """Uniform noise in every pixel and channel (pixray's init_noise=pixels)."""
    return torch.rand(3, height, width, generator=g, device=device)


def _perlin_octave(g: torch.Generator, cells: int, height: int, width: int, device) -> torch.Tensor:
    """One octave of Perlin gradient noise [3, H, W], roughly in [-1, 1], with `cells` lattice cells across."""
    angles = torch.rand(3, cells + 1, cells + 1, generator=g, device=device) * 2 * math.pi
    grads = torch.stack([angles.cos(), angles.sin()], -1)  # [3, c+1, c+1, 2]
    ys = torch.linspace(0, cells, height + 1, device=device)[:-1]
    xs = torch.linspace(0, cells, width + 1, device=device)[:-1]
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    y0, x0 = y.floor().long().clamp(max=cells - 1), x.floor().long().clamp(max=cells - 1)
    fy, fx = y - y0, x - x0
    fade = lambda t: t * t * t * (t * (t * 6 - 15) + 10)  # noqa: E731 - Perlin's smootherstep
    total = 0
    for dy in (0, 1):
        for dx in (0, 1):
            grad = grads[:, y0 + dy, x0 + dx]  # [3, H, W, 2]
            dot = grad[..., 0] * (fx - dx) + grad[..., 1] * (fy - dy)
            weight = (fade(fx) if dx else 1 - fade(fx)) * (fade(fy) if dy else 1 - fade(fy))
            total = total + weight * dot
    return total * math.sqrt(2)


def _perlin(g: torch.Generator, height: int, width: int, device) -> torch.Tensor:
    """Fractal Perlin noise: octaves of 2, 4 and 8 cells across, each half the amplitude of the one before."""
    noise = sum(0.5**k * _perlin_octave(g, 2 ** (k + 1), height, width, device) for k in range(3))
    return 0.5 + 0.35 * noise


def _gradient(g: torch.Generator, height: int, width: int, device) -> torch.Tensor:
    """A linear blend between two random colours in a random direction (pixray's init_noise=gradient)."""
    u = torch.rand(7, generator=g, device=device)
    a, b, angle = u[:3].view(3, 1, 1), u[3:6].view(3, 1, 1), u[6] * 2 * math.pi
    ys = torch.linspace(-1, 1, height, device=device).view(height, 1)
    xs = torch.linspace(-1, 1, width, device=device).view(1, width)
    t = ((xs * angle.cos() + ys * angle.sin()) / math.sqrt(2) + 1) / 2
    return a + (b - a) * t


def _grey(g: torch.Generator, height: int, width: int, device) -> torch.Tensor:
    """A blank canvas: one random grey (0.2-0.8) with faint noise, so the prompt draws on an empty picture."""
    level = 0.2 + 0.6 * torch.rand(1, generator=g, device=device)
    noise = 0.02 * torch.randn(1, height, width, generator=g, device=device)
    return (level + noise).expand(3, height, width)


INITS: dict[str, Callable[[VQGAN, int, int, Sequence[torch.Generator]], torch.Tensor]] = {
    "tokens": random_latent,  # uniformly random codebook tokens (the crowsonkb notebook's start)
    "pixels": _per_image(_pixels),
    "perlin": _per_image(_perlin),
    "gradient": _per_image(_gradient),
    "grey": _per_image(_grey),
}
