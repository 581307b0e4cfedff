"""The VQGAN+CLIP loop as a generator of steps. It owns z and the optimiser; it writes and prints nothing.

The algorithm is the one of the crowsonkb notebook that every peer tool reuses:
decode the straight-through-quantised latent, clamp-with-grad to [0, 1], score augmented cutouts against
each prompt with the spherical distance, step the optimiser, clamp z to the codebook's range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from .cutouts import make_cutouts
from .fastpath import REFERENCE, FastPath
from .ops import clamp_with_grad
from .prompts import PromptLoss

if TYPE_CHECKING:  # the loop takes the models as they come; importing them would put it above them
    from .clip import Perceptor
    from .vqgan import VQGAN

# extra keyword arguments (e.g. fused=True) come from the fast path
OPTIMIZERS = {
    "adam": lambda params, lr, wd, **kw: torch.optim.Adam(params, lr=lr, weight_decay=wd, **kw),
    "adamw": lambda params, lr, wd, **kw: torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kw),
    "sgd": lambda params, lr, wd, **kw: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, **kw),
}


@dataclass
class Guide:
    """One CLIP model and, for each image of the batch, the prompt losses it scores."""

    perceptor: Perceptor
    targets: list[list[PromptLoss]]  # targets[b]: the prompts of image b, embedded by this perceptor


@dataclass
class Step:
    """What the loop yields: step i's decoded image [B, 3, H, W] in [0, 1] and its loss per image [B]."""

    i: int
    image: torch.Tensor
    loss: torch.Tensor
    final: bool = False
    extras: dict = field(default_factory=dict)


@dataclass
class LoopSettings:
    steps: int
    lr: float = 0.1
    optimizer: str = "adam"
    weight_decay: float = 0.0
    cutn: int = 32
    cut_pow: float = 1.0
    augments: Sequence[str] = ("flip", "affine", "noise")
    init_weight: float = 0.0
    fast: FastPath = REFERENCE  # precision and layout switches, resolved for the device


def random_latent(vqgan: VQGAN, height: int, width: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """A latent of uniformly random codebook tokens, one image per generator."""
    device = vqgan.codebook.device
    h, w = height // vqgan.factor, width // vqgan.factor
    codes = torch.stack([torch.randint(vqgan.codebook.shape[0], (h, w), generator=g, device=device)
                         for g in generators])
    return vqgan.codes_to_latent(codes)


def synth(vqgan: VQGAN, z: torch.Tensor, fast: FastPath = REFERENCE) -> torch.Tensor:
    """Latent -> image in [0, 1], differentiable through the quantiser and the clamp."""
    with fast.autocast(z.device, fast.decoder_bf16):
        image = vqgan.decode_quantized(z)
    return clamp_with_grad(image.float().add(1).div(2), 0, 1)


def score(image: torch.Tensor, guides: Sequence[Guide], s: LoopSettings,
          generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Prompt loss of each image of the batch, summed over guides and prompts: [B]."""
    b = image.shape[0]
    total = image.new_zeros(b)
    for guide in guides:
        p = guide.perceptor
        crops = make_cutouts(image, p.input_size, s.cutn, s.cut_pow, s.augments, generators)
        with s.fast.autocast(image.device, s.fast.clip_bf16):
            embeds = p.encode_image(crops)
        embeds = embeds.float().view(b, s.cutn, -1)
        for i in range(b):
            for target in guide.targets[i]:
                total[i] = total[i] + target(embeds[i])
    return total


def optimize(vqgan: VQGAN, guides: Sequence[Guide], z: torch.Tensor, s: LoopSettings,
             generators: Sequence[torch.Generator], z_orig: Optional[torch.Tensor] = None,
             schedule: Optional[Mapping[int, Sequence[Guide]]] = None) -> Iterator[Step]:
    """Yield Step(i) for i in 0..steps-1 (the image scored at step i), then a final Step of the result.

    `schedule` maps a step to the guides that take over from it (story mode: the prompts change mid-run).
    """
    z = z.detach().clone().requires_grad_(True)
    z_orig = z.detach().clone() if z_orig is None else z_orig
    opt = OPTIMIZERS[s.optimizer]([z], s.lr, s.weight_decay, **s.fast.optimizer_kwargs())
    book = vqgan.codebook
    z_min = book.min(dim=0).values.view(1, -1, 1, 1)
    z_max = book.max(dim=0).values.view(1, -1, 1, 1)
    for i in range(s.steps):
        s.fast.step_begin()  # CUDA graphs: step i-1's compiled outputs are dead from here on
        guides = schedule.get(i, guides) if schedule else guides
        opt.zero_grad(set_to_none=True)
        image = synth(vqgan, z, s.fast)
        loss = score(image, guides, s, generators)
        if s.init_weight:
            loss = loss + s.init_weight * F.mse_loss(z, z_orig, reduction="none").mean(dim=(1, 2, 3))
        # images are independent: summing their losses gives each one the gradient of its own run
        loss.sum().backward()
        # image and loss are computed outside the compiled modules (synth writes the decoder's output into a new
        # tensor), so no CUDA graph replay of a later step overwrites what a Step holds
        yield Step(i, image.detach(), loss.detach())
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, z_max), z_min))
    s.fast.step_begin()
    with torch.no_grad():
        image = synth(vqgan, z, s.fast)
        yield Step(s.steps, image, score(image, guides, s, generators), final=True, extras={"z": z.detach()})
