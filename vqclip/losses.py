"""Image losses beside CLIP's, by name, each [B, 3, H, W] in [0, 1] -> [B]; weights come from `cfg.losses`.

Both are pixray's (Losses/SmoothnessLoss.py, SaturationLoss.py) computed on the whole image rather than on
every cutout: the same pull, one pass instead of cutn.
"""

from __future__ import annotations

from typing import Callable

import torch


def tv(image: torch.Tensor) -> torch.Tensor:
    """Mean gradient magnitude (total variation): flat regions cost nothing, noise and texture a lot."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    # sqrt of the summed squares over colour; 1e-8 keeps the gradient finite where the image is flat
    magnitude = (dx[..., :-1, :].pow(2) + dy[..., :, :-1].pow(2)).sum(1).add(1e-8).sqrt()
    return magnitude.mean(dim=(1, 2))


def saturation(image: torch.Tensor) -> torch.Tensor:
    """Minus Hasler and Suesstrunk's colourfulness (2003), over 5 as pixray scales it: rewards vivid colour."""
    r, g, b = image[:, 0], image[:, 1], image[:, 2]
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    spread = (rg.var(1) + yb.var(1)).sqrt()
    mean = (rg.mean(1).pow(2) + yb.mean(1).pow(2)).sqrt()
    return -(spread + 0.3 * mean) / 5


LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tv": tv,
    "saturation": saturation,
}


def image_losses(image: torch.Tensor, weights: dict[str, float]) -> torch.Tensor:
    """The weighted sum of the named losses of each image: [B]."""
    total = image.new_zeros(image.shape[0])
    for name, weight in weights.items():
        if weight:
            total = total + weight * LOSSES[name](image)
    return total
