"""The quality guard: a faster path must optimise as well as the fp32 eager reference path to count.

Two checks, both against the reference path on the same seeds:
- fidelity: at the same latent and the same cutouts, the path's gradient of the loss with respect to the latent
  must point the way the reference's does (cosine >= GRAD_COSINE_MIN). Deterministic: it measures the path's
  numerics, nothing else.
- progress: a deterministic evaluator (fp32 CLIP on fixed views of each step's image, no augmentation) scores
  every step of a short run; a path's quality ratio is its mean loss drop over the steps divided by the
  reference's. The ratio is noisy, because the latent is quantised: a difference in the last bits of a gradient
  picks other codes a few steps later, and from there the two runs differ as two seeds do (BENCHMARKS.md: fp32
  against itself with other augmentation draws spread the per-seed drop by ~30%). Averaging the drop over the
  steps rather than taking the last step's, and over `quality_seeds` seeds, brings its standard error
  (`quality_ratio_se`, reported) to ~0.08 at 8 seeds on the CPU configuration.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import fastpath
from ..config import Config, SpeedConfig
from ..cutouts import apply_crops
from ..optimize import Guide, random_latent, score, synth
from ..plan import Plan
from ..runner import Models, make_guides, prepare_run, settings
from .setup import BenchConfig, build_models, run_config

QUALITY_MIN = 0.95  # a path's quality ratio must reach this for its speed to count
GRAD_COSINE_MIN = 0.99  # and its gradient this cosine with the reference's (bf16 autocast measured 0.997)


def fixed_views(n: int) -> torch.Tensor:
    """[6, 2, 3] crop matrices: the whole image, its four quadrants and its centre half; no randomness."""
    boxes = [(1.0, 0.0, 0.0)] + [(0.5, x, y) for x in (-0.5, 0.5) for y in (-0.5, 0.5)] + [(0.5, 0.0, 0.0)]
    theta = torch.zeros(len(boxes), 2, 3)
    for i, (scale, x, y) in enumerate(boxes):
        theta[i, 0, 0] = theta[i, 1, 1] = scale
        theta[i, 0, 2], theta[i, 1, 2] = x, y
    return theta.expand(n, -1, -1, -1)


@torch.no_grad()
def evaluate_image(guides: Sequence[Guide], image: torch.Tensor) -> torch.Tensor:
    """Deterministic loss per image [B] of images in [0, 1]: fp32 CLIP, fixed views, no augmentation."""
    total = image.new_zeros(image.shape[0])
    for guide in guides:
        theta = fixed_views(image.shape[0]).to(image.device)
        crops = apply_crops(image.float(), theta, guide.perceptor.input_size)
        embeds = guide.perceptor.encode_image(crops).float().view(image.shape[0], theta.shape[1], -1)
        for b, targets in enumerate(guide.targets):
            for target in targets:
                total[b] = total[b] + target(embeds[b])
    return total


def evaluate(vqgan, guides: Sequence[Guide], z: torch.Tensor) -> torch.Tensor:
    """The evaluator's loss of latents z: their quantised image decoded in fp32, then `evaluate_image`."""
    with torch.no_grad():
        return evaluate_image(guides, synth(vqgan, z))  # synth's default is the fp32 reference path


def _seed_run(models: Models, plan: Plan, cfg: Config, device: torch.device, seed: int) -> tuple[float, torch.Tensor]:
    """(mean evaluator drop over the steps of one run from seed, the latent's gradient at its first step)."""
    run = prepare_run(cfg, plan, device=device, batch=1, outputs=False, models=models)  # the path's switches
    guides = make_guides(plan, models, [plan.prompts])
    z = random_latent(models.vqgan, plan.height, plan.width, [torch.Generator(device=device).manual_seed(seed)])
    z = z.detach().requires_grad_(True)
    crops = [torch.Generator(device=device).manual_seed(seed + 10_000)]  # the same cutouts on every path
    score(synth(models.vqgan, z, run.settings.fast), guides, run.settings, crops).sum().backward()
    losses = [float(evaluate_image(guides, step.image)) for step in run.steps([plan.prompts], [seed])]
    return statistics.fmean(losses[0] - x for x in losses[1:]), z.grad.detach().flatten().float()


def _path(models: Models, plan: Plan, cfg: Config, device: torch.device, seeds: Sequence[int]):
    runs = [_seed_run(models, plan, cfg, device, s) for s in seeds]
    return [d for d, _ in runs], [g for _, g in runs]


def quality(
    bc: BenchConfig, models: Models, speed: SpeedConfig, device: torch.device, steps: int, seeds: Sequence[int]
) -> dict:
    """quality_ratio = this path's mean loss drop / the fp32 eager reference path's, on the same seeds; with
    its standard error and the gradients' cosine (see the module's docstring)."""
    cfg, plan = run_config(bc, steps, speed)
    fast = settings(cfg, device).fast
    drops, grads = _path(models, plan, cfg, device, seeds)
    if fast == fastpath.REFERENCE:
        ref_drops, ref_grads = drops, grads  # the very same code path: the ratio is 1 by construction
    else:
        ref_cfg, _ = run_config(bc, steps, SpeedConfig.reference())
        # the same weights: the reference run switches layout, attention and checkpointing back itself, but a
        # compiled module stays compiled, so only then are the models built again
        ref_models = build_models(bc, device) if fast.compile else models
        ref_drops, ref_grads = _path(ref_models, plan, ref_cfg, device, seeds)
    return {**verdict(drops, ref_drops, grads, ref_grads), "quality_steps": steps, "quality_seeds": list(seeds)}


def verdict(
    drops: Sequence[float], ref_drops: Sequence[float], grads: Sequence[torch.Tensor], ref_grads: Sequence[torch.Tensor]
) -> dict:
    """The guard's figures from per-seed mean drops and first-step gradients of a path and of the reference."""
    drop, ref = statistics.fmean(drops), statistics.fmean(ref_drops)
    ratio = drop / ref if ref > 0 else None
    se = None
    if ratio is not None and len(drops) > 1:  # delta method on the paired per-seed drops
        se = statistics.stdev(d - ratio * r for d, r in zip(drops, ref_drops)) / (ref * math.sqrt(len(drops)))
    cosine = min(float(F.cosine_similarity(g, r, dim=0)) for g, r in zip(grads, ref_grads))
    return {
        "quality_ratio": ratio,
        "quality_ratio_se": se,
        "loss_drop": drop,
        "reference_loss_drop": ref,
        "grad_cosine": cosine,
        "quality_pass": ratio is not None and ratio >= QUALITY_MIN and cosine >= GRAD_COSINE_MIN,
    }
