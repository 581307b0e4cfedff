"""The VQGAN+CLIP loop as a generator of steps. It owns z and the optimiser; it writes and prints nothing.

The algorithm is the one of the crowsonkb notebook that every peer tool reuses:
decode the straight-through-quantised latent, clamp-with-grad to [0, 1], score augmented cutouts against
each prompt with the spherical distance, step the optimiser, clamp z to the codebook's range.

Every Step carries the `LoopState` the next step starts from (the latent, the optimiser's moments, every
generator's state), and `optimize(start=...)` continues from one: an interrupted run resumed from its state
makes the same pixels as the run that was never stopped (vqclip.state writes and reads the files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from .cutouts import make_cutouts
from .fastpath import REFERENCE, FastPath
from .losses import image_losses
from .ops import clamp_with_grad
from .prompts import PromptLoss
from .schedules import factor

if TYPE_CHECKING:  # the loop takes the models as they come; importing them would put it above them
    from .clip import Perceptor
    from .vqgan import VQGAN


def _unfused(cls, **fixed):
    """An optimiser torch has no fused kernel for: the fast path's fused=True is dropped (foreach stays)."""
    return lambda params, lr, wd, fused=None, **kw: cls(params, lr=lr, weight_decay=wd, **fixed, **kw)


# extra keyword arguments (e.g. fused=True) come from the fast path
OPTIMIZERS = {
    "adam": lambda params, lr, wd, **kw: torch.optim.Adam(params, lr=lr, weight_decay=wd, **kw),
    "adamw": lambda params, lr, wd, **kw: torch.optim.AdamW(params, lr=lr, weight_decay=wd, **kw),
    "sgd": lambda params, lr, wd, **kw: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, **kw),
    "adagrad": _unfused(torch.optim.Adagrad),  # its fused kernel is CPU-only
    "adamax": _unfused(torch.optim.Adamax),
    "nadam": _unfused(torch.optim.NAdam),
    "radam": _unfused(torch.optim.RAdam),
    "rmsprop": _unfused(torch.optim.RMSprop),
}


@dataclass
class Guide:
    """One CLIP model and, for each image of the batch, the prompt losses it scores."""

    perceptor: Perceptor
    targets: list[list[PromptLoss]]  # targets[b]: the prompts of image b, embedded by this perceptor


@dataclass
class LoopState:
    """Where the loop stands between two steps: enough to continue it bit for bit.

    `step` is the next step to run (an animation's: the next frame); `z` [B, C, h, w] the latent; `z_orig` what
    init_weight pulls towards; `optim` the optimiser's state of z (Adam: step, exp_avg, exp_avg_sq); `generators`
    each image's torch.Generator state; `ema` optim.ema's average of z. Tensors batched like z are per image; the
    rest (Adam's step) are shared.
    """

    step: int
    z: torch.Tensor
    z_orig: torch.Tensor
    optim: dict[str, torch.Tensor] = field(default_factory=dict)
    generators: list[torch.Tensor] = field(default_factory=list)
    ema: Optional[torch.Tensor] = None  # optim.ema's biased average of z, like z (None: no average kept)

    def _batched(self, t: torch.Tensor) -> bool:
        return t.dim() == self.z.dim() and t.shape[0] == self.z.shape[0]

    def image(self, b: int) -> "LoopState":
        """Image b's state alone (a batch's images are independent: each one's slice continues its own run)."""

        def part(t):
            return t[b : b + 1] if self._batched(t) else t

        return LoopState(
            self.step,
            part(self.z),
            part(self.z_orig),
            {k: part(v) for k, v in self.optim.items()},
            [self.generators[b]],
            None if self.ema is None else part(self.ema),
        )

    @staticmethod
    def stack(states: Sequence["LoopState"]) -> "LoopState":
        """One batch's state from its images' states, which must be at the same step."""
        first = states[0]
        if any(
            s.step != first.step or s.optim.keys() != first.optim.keys() or (s.ema is None) != (first.ema is None)
            for s in states
        ):
            raise ValueError("images stepped together must resume from the same step")

        def join(key: str):
            parts = [s.optim[key] for s in states]
            return torch.cat(parts) if first._batched(parts[0]) else parts[0]

        return LoopState(
            first.step,
            torch.cat([s.z for s in states]),
            torch.cat([s.z_orig for s in states]),
            {k: join(k) for k in first.optim},
            [g for s in states for g in s.generators],
            None if first.ema is None else torch.cat([s.ema for s in states]),
        )


@dataclass
class Step:
    """What the loop yields: step i's decoded image [B, 3, H, W] in [0, 1] and its loss per image [B].

    `state` is where the next step begins (taken after step i's update, so an interrupt at any later moment
    still has a consistent one).
    """

    i: int
    image: torch.Tensor
    loss: torch.Tensor
    final: bool = False
    extras: dict = field(default_factory=dict)
    state: Optional[LoopState] = field(default=None, repr=False)


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
    init_schedule: str = "constant"  # how the pull towards the initial latent changes over the run (SCHEDULES)
    schedule: str = "constant"  # the learning rate's schedule (vqclip.schedules.SCHEDULES)
    ema: float = 0.0  # decay of an average of z that the final image is decoded from (0: off; pytti 0.99)
    losses: Mapping[str, float] = field(default_factory=dict)  # vqclip.losses name -> weight
    cutout_method: str = "crops"  # vqclip.cutouts.CUTOUT_METHODS
    fast: FastPath = REFERENCE  # precision and layout switches, resolved for the device


class EMA:
    """A bias-corrected exponential moving average of a tensor (Crowson's EMATensor in pytti).

    `biased` and the number of updates are all its state: a resumed loop passes the saved `biased` and the step it
    starts at (the average was updated once at the start and once after each step before it)."""

    def __init__(self, value: torch.Tensor, decay: float, biased: Optional[torch.Tensor] = None, step: int = 0):
        self.decay = decay
        if biased is None:
            self.updates, self.biased = 0, torch.zeros_like(value)
            self.update(value)
        else:
            self.updates, self.biased = 1 + step, biased.to(value.device).clone()

    @torch.no_grad()
    def update(self, value: torch.Tensor) -> None:
        self.updates += 1
        self.biased.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)

    @property
    def average(self) -> torch.Tensor:
        return self.biased / (1 - self.decay**self.updates)


def random_latent(vqgan: VQGAN, height: int, width: int, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """A latent of uniformly random codebook tokens, one image per generator."""
    device = vqgan.codebook.device
    h, w = height // vqgan.factor, width // vqgan.factor
    codes = torch.stack(
        [torch.randint(vqgan.codebook.shape[0], (h, w), generator=g, device=device) for g in generators]
    )
    return vqgan.codes_to_latent(codes)


def synth(vqgan: VQGAN, z: torch.Tensor, fast: FastPath = REFERENCE) -> torch.Tensor:
    """Latent -> image in [0, 1], differentiable through the quantiser and the clamp."""
    with fast.autocast(z.device, fast.decoder_bf16):
        image = vqgan.decode_quantized(z)
    return clamp_with_grad(image.float().add(1).div(2), 0, 1)


def score(
    image: torch.Tensor, guides: Sequence[Guide], s: LoopSettings, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """Prompt loss of each image of the batch, summed over guides and prompts: [B]."""
    b = image.shape[0]
    total = image.new_zeros(b)
    for guide in guides:
        p = guide.perceptor
        crops = make_cutouts(image, p.input_size, s.cutn, s.cut_pow, s.augments, generators, s.cutout_method)
        with s.fast.autocast(image.device, s.fast.clip_bf16):
            embeds = p.encode_image(crops)
        embeds = embeds.float().view(b, s.cutn, -1)
        for i in range(b):
            for target in guide.targets[i]:
                total[i] = total[i] + target(embeds[i])
    return total


def optimize(
    vqgan: VQGAN,
    guides: Sequence[Guide],
    z: torch.Tensor,
    s: LoopSettings,
    generators: Sequence[torch.Generator],
    z_orig: Optional[torch.Tensor] = None,
    schedule: Optional[Mapping[int, Sequence[Guide]]] = None,
    start: Optional[LoopState] = None,
) -> Iterator[Step]:
    """Yield Step(i) for i in 0..steps-1 (the image scored at step i), then a final Step of the result.

    `schedule` maps a step to the guides that take over from it (story mode: the prompts change mid-run).
    `start` continues a run from a saved state instead (z, z_orig, the optimiser and the generators restored; the
    `z` argument is then unused): its Steps are those the uninterrupted run yields from start.step on.
    """
    if start is not None:
        z, z_orig = start.z.to(z.device), start.z_orig.to(z.device)
        for g, state in zip(generators, start.generators, strict=True):
            g.set_state(state)
    z = z.detach().clone().requires_grad_(True)
    z_orig = z.detach().clone() if z_orig is None else z_orig
    opt = OPTIMIZERS[s.optimizer]([z], s.lr, s.weight_decay, **s.fast.optimizer_kwargs())
    if start is not None and start.optim:
        # only the moments come from the state; lr and the rest come from the settings, which the state matched
        moments = {k: v.clone() for k, v in start.optim.items()}
        opt.load_state_dict({"state": {0: moments}, "param_groups": opt.state_dict()["param_groups"]})
    first = start.step if start is not None else 0
    earlier = [k for k in schedule or {} if k <= first]
    if earlier:  # a run resumed mid-story starts in the segment its first step belongs to
        guides = schedule[max(earlier)]
    book = vqgan.codebook
    z_min = book.min(dim=0).values.view(1, -1, 1, 1)
    z_max = book.max(dim=0).values.view(1, -1, 1, 1)
    ema = EMA(z, s.ema, start.ema if start is not None else None, first) if s.ema else None
    for i in range(first, s.steps):
        s.fast.step_begin()  # CUDA graphs: step i-1's compiled outputs are dead from here on
        guides = schedule.get(i, guides) if schedule else guides
        for group in opt.param_groups:
            group["lr"] = s.lr * factor(s.schedule, i, s.steps)
        opt.zero_grad(set_to_none=True)
        image = synth(vqgan, z, s.fast)
        loss = score(image, guides, s, generators)
        if s.init_weight:
            pull = s.init_weight * factor(s.init_schedule, i, s.steps)
            loss = loss + pull * F.mse_loss(z, z_orig, reduction="none").mean(dim=(1, 2, 3))
        if s.losses:
            loss = loss + image_losses(image, s.losses)
        # images are independent: summing their losses gives each one the gradient of its own run
        loss.sum().backward()
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, z_max), z_min))
        if ema is not None:
            ema.update(z)
        # image and loss are computed outside the compiled modules (synth writes the decoder's output into a new
        # tensor), so no CUDA graph replay of a later step overwrites what a Step holds; it is yielded after the
        # update, with the state step i+1 starts from (a copy: z, the moments and the average change in place)
        yield Step(i, image.detach(), loss.detach(), state=snapshot(i + 1, z, z_orig, opt, generators, ema))
    end = snapshot(s.steps, z, z_orig, opt, generators, ema)
    s.fast.step_begin()
    with torch.no_grad():
        z_out = ema.average if ema is not None else z.detach()
        image = synth(vqgan, z_out, s.fast)
        yield Step(s.steps, image, score(image, guides, s, generators), final=True, extras={"z": z_out}, state=end)


def snapshot(
    step: int,
    z: torch.Tensor,
    z_orig: torch.Tensor,
    opt: torch.optim.Optimizer,
    generators: Sequence[torch.Generator],
    ema: Optional[EMA] = None,
) -> LoopState:
    """A copy of the loop's state, taken where step `step` begins (~3 latent-sized copies: microseconds)."""
    moments = {k: v.detach().clone() for k, v in opt.state.get(z, {}).items() if torch.is_tensor(v)}
    return LoopState(
        step,
        z.detach().clone(),
        z_orig,
        moments,
        [g.get_state() for g in generators],
        ema.biased.clone() if ema is not None else None,
    )
