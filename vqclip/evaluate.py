"""`vqclip eval`: the real generate loop over captions x seeds, each final image judged by its pixels.

Every image is made by `pipeline.generate` from a config resolved like `vqclip generate`'s (presets, then
`--set` overrides, then the caption and seed), and judged by `vqclip.judge`, which never looks at CLIP. The same
runs on untrained models (random weights of the same architectures, loaded through the same loaders) are the
control: a judge or a world that lets them score above chance measures nothing.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import judge, toy
from .clip import ClipRef, load_clip
from .config import Config, resolve
from .errors import UsageError
from .plan import Plan
from .runner import Models, VQGANFinder, load_models, plan_run, prepare_run
from .version import __version__
from .vqgan import load_vqgan

CHANCE = {"colour": 1 / len(toy.COLOURS), "shape": 1 / len(toy.SHAPES)}
CONTROL_SEED = 0  # torch seed the untrained models are initialised from


@dataclass
class EvalOptions:
    presets: Sequence[str] = ("toy",)
    options: dict = field(default_factory=dict)  # dotted config key -> value, as generate's own options
    overrides: Sequence[str] = ()  # `--set key=value` items, applied last
    captions: Sequence[str] = toy.CAPTIONS
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    control: bool = True  # also run untrained models of the same architectures


@dataclass
class Judged:
    """One generated image and what the judge read from it."""

    caption: str
    seed: int
    colour: str
    shape: str
    iou: float
    edge: float
    fit: str  # the best-fitting ideal shape even where the judge names none (judge.Verdict.fit)
    seconds: float  # wall time of the generate loop (models already loaded)
    cpu_seconds: float  # CPU time of the process over the same span (all threads)
    image: Optional[torch.Tensor] = field(default=None, repr=False)  # [3, H, W] in [0, 1]

    @property
    def colour_right(self) -> bool:
        return self.colour == self.caption.split()[1]

    @property
    def shape_right(self) -> bool:
        return self.shape == self.caption.split()[2]


def image_config(options: EvalOptions, caption: str, seed: int) -> Config:
    return resolve(options.presets, None, {**options.options, "prompt": caption, "seed": seed}, options.overrides)


def untrained_models(plan: Plan, device: torch.device) -> Models:
    """Random weights of the plan's architectures, built by the same loaders from a fixed torch seed."""
    torch.manual_seed(CONTROL_SEED)
    perceptors = [load_clip(ClipRef(dataclasses.replace(ref.spec, random=True), None), device) for ref in plan.clips]
    vqgan = load_vqgan(plan.vqgan.config, None, device, name=f"{plan.vqgan_name} (untrained)", spec=plan.vqgan_spec)
    return Models(vqgan, perceptors, f"{plan.vqgan_name} (untrained)")


def judge_run(
    options: EvalOptions,
    models: Models,
    device: torch.device,
    finder: VQGANFinder,
    on_image: Optional[Callable[[Judged], None]] = None,
) -> list[Judged]:
    """Generate and judge every caption x seed with these models (the run path of `vqclip generate`, no files)."""
    out = []
    for caption in options.captions:
        for seed in options.seeds:
            run = prepare_run(
                image_config(options, caption, seed), device=device, models=models, outputs=False, finder=finder
            )
            start, cpu_start = time.perf_counter(), time.process_time()
            final = None
            for step in run.steps():
                final = step
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            # judged as the PNG would store it: rounded to 8 bits
            image = final.image[0].detach().float().clamp(0, 1).mul(255).round().div(255).cpu()
            verdict = judge.judge(image)
            item = Judged(
                caption,
                seed,
                verdict.colour,
                verdict.shape,
                verdict.iou,
                verdict.edge,
                verdict.fit,
                seconds,
                cpu,
                image,
            )
            out.append(item)
            if on_image:
                on_image(item)
    return out


def summary(items: Sequence[Judged]) -> dict:
    n = len(items)
    return {
        "images": n,
        "colour_accuracy": sum(i.colour_right for i in items) / n,
        "shape_accuracy": sum(i.shape_right for i in items) / n,
        "shape_none": sum(i.shape == judge.NONE for i in items) / n,  # images the judge would not name a shape in
        # near misses: the prompted shape fits the main blob best, though too loosely to be named (chance 1/3)
        "shape_fit": sum(i.fit == i.caption.split()[2] for i in items) / n,
        "mean_iou": float(np.mean([i.iou for i in items])),
        "seconds_per_image": float(np.mean([i.seconds for i in items])),
        "cpu_seconds_per_image": float(np.mean([i.cpu_seconds for i in items])),
        "per_image": [{k: v for k, v in dataclasses.asdict(i).items() if k != "image"} for i in items],
    }


def run_eval(
    options: EvalOptions, device: torch.device, on_image: Optional[Callable[[str, Judged], None]] = None
) -> tuple[dict, dict[str, list[Judged]]]:
    """Judge the trained models (and, with options.control, untrained ones) over captions x seeds.

    Returns the figures (JSON-ready) and the judged images of each run ("trained", "untrained").
    """
    if not options.captions or not options.seeds:
        raise UsageError("eval needs at least one caption and one seed")
    cfg = image_config(options, options.captions[0], options.seeds[0])
    finder = VQGANFinder()  # every image shares these model files: resolved, downloaded if allowed, checked once
    plan = plan_run(cfg, finder=finder)
    runs: dict[str, list[Judged]] = {}
    load_start = time.perf_counter()
    trained = load_models(plan, device)
    load_seconds = time.perf_counter() - load_start
    runs["trained"] = judge_run(options, trained, device, finder, lambda j: on_image and on_image("trained", j))
    if options.control:
        runs["untrained"] = judge_run(
            options, untrained_models(plan, device), device, finder, lambda j: on_image and on_image("untrained", j)
        )
    figures = {
        "vqclip_version": __version__,
        "presets": list(options.presets),
        "overrides": list(options.overrides),
        "captions": list(options.captions),
        "seeds": list(options.seeds),
        "size": [plan.width, plan.height],
        "steps": cfg.steps,
        "vqgan": plan.vqgan_name,
        "clip": list(cfg.model.clip),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "load_seconds": load_seconds,
        "chance": CHANCE,
        **{name: summary(items) for name, items in runs.items()},
    }
    return figures, runs


def table(figures: dict) -> str:
    """A few lines for the terminal: accuracy and time per run, with chance beside them."""
    lines = [
        f"{'models':<10} {'images':>6} {'colour':>7} {'shape':>7} {'no shape':>8} {'fit':>6} {'IoU':>5} "
        f"{'s/image':>8} {'cpu s':>6}"
    ]
    for name in ("trained", "untrained"):
        if name in figures:
            f = figures[name]
            lines.append(
                f"{name:<10} {f['images']:>6} {f['colour_accuracy']:>7.1%} {f['shape_accuracy']:>7.1%} "
                f"{f['shape_none']:>8.1%} {f['shape_fit']:>6.0%} {f['mean_iou']:>5.2f} "
                f"{f['seconds_per_image']:>8.2f} {f['cpu_seconds_per_image']:>6.2f}"
            )
    lines.append(
        f"chance: colour {CHANCE['colour']:.0%}, shape {CHANCE['shape']:.0%}; "
        f"{figures['size'][0]}x{figures['size'][1]}, {figures['steps']} steps, {figures['device']}"
    )
    return "\n".join(lines)


def contact_sheet(items: Sequence[Judged], columns: int) -> np.ndarray:
    """The judged images as one uint8 [H, W, 3] grid, `columns` per row (e.g. one row per caption)."""
    tiles = [(i.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for i in items]
    h, w, _ = tiles[0].shape
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        sheet[r * (h + 2) : r * (h + 2) + h, c * (w + 2) : c * (w + 2) + w] = tile
    return sheet
