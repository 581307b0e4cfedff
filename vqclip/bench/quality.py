"""The quality guard: a faster path must optimise as well as the fp32 eager reference path to count.

A deterministic evaluator (fp32, the quantised latent's image, fixed views, no augmentation) scores the loss
before and after a short run; a path's quality ratio is its loss drop over the reference path's on the same seeds.
"""

from __future__ import annotations

import statistics
from typing import Sequence

import torch

from .. import fastpath
from ..config import Config, SpeedConfig
from ..cutouts import apply_crops
from ..optimize import Guide, random_latent, synth
from ..plan import Plan
from ..runner import Models, make_guides, settings
from .setup import BenchConfig, bench_steps, build_models, run_config

QUALITY_MIN = 0.95  # a path's quality ratio must reach this for its speed to count


def fixed_views(n: int) -> torch.Tensor:
    """[6, 2, 3] crop matrices: the whole image, its four quadrants and its centre half; no randomness."""
    boxes = [(1.0, 0.0, 0.0)] + [(0.5, x, y) for x in (-0.5, 0.5) for y in (-0.5, 0.5)] + [(0.5, 0.0, 0.0)]
    theta = torch.zeros(len(boxes), 2, 3)
    for i, (scale, x, y) in enumerate(boxes):
        theta[i, 0, 0] = theta[i, 1, 1] = scale
        theta[i, 0, 2], theta[i, 1, 2] = x, y
    return theta.expand(n, -1, -1, -1)


@torch.no_grad()
def evaluate(vqgan, guides: Sequence[Guide], z: torch.Tensor) -> torch.Tensor:
    """Deterministic loss per image [B]: fp32, the quantised latent's image, fixed views, no augmentation."""
    image = synth(vqgan, z)  # synth's default is the fp32 reference path
    total = image.new_zeros(image.shape[0])
    for guide in guides:
        theta = fixed_views(image.shape[0]).to(image.device)
        crops = apply_crops(image, theta, guide.perceptor.input_size)
        embeds = guide.perceptor.encode_image(crops).float().view(image.shape[0], theta.shape[1], -1)
        for b, targets in enumerate(guide.targets):
            for target in targets:
                total[b] = total[b] + target(embeds[b])
    return total


def loss_drop(models: Models, plan: Plan, cfg: Config, device: torch.device, seeds: Sequence[int]) -> float:
    """Mean drop of the evaluator's loss from step 0 to step cfg.steps over seeds, on cfg's speed path."""
    drops = []
    for seed in seeds:
        final = None
        for step in bench_steps(cfg, plan, models, device, [plan.prompts], [seed]):
            final = step
        guides = make_guides(plan, models, [plan.prompts])
        z0 = random_latent(models.vqgan, plan.height, plan.width, [torch.Generator(device=device).manual_seed(seed)])
        drops.append(float((evaluate(models.vqgan, guides, z0) - evaluate(models.vqgan, guides, final.extras["z"]))
                           .mean()))
    return statistics.fmean(drops)


def quality(bc: BenchConfig, models: Models, speed: SpeedConfig, device: torch.device, steps: int,
            seeds: Sequence[int]) -> dict:
    """quality_ratio = this path's loss drop / the fp32 eager reference path's, on the same seeds."""
    cfg, plan = run_config(bc, steps, speed)
    fast = settings(cfg, device).fast
    drop = loss_drop(models, plan, cfg, device, seeds)
    if fast == fastpath.REFERENCE:  # the very same code path: the ratio is 1 by construction
        ref = drop
    else:
        ref_cfg, _ = run_config(bc, steps, SpeedConfig.reference())
        # the same weights: the reference run switches layout, attention and checkpointing back itself, but a
        # compiled module stays compiled, so only then are the models built again
        ref_models = build_models(bc, device) if fast.compile else models
        ref = loss_drop(ref_models, plan, ref_cfg, device, seeds)
    ratio = drop / ref if ref > 0 else None
    return {"quality_ratio": ratio, "loss_drop": drop, "reference_loss_drop": ref, "quality_steps": steps,
            "quality_seeds": list(seeds), "quality_pass": ratio is not None and ratio >= QUALITY_MIN}
