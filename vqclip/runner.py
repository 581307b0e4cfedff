"""The one way a run is assembled: `prepare_run` turns a Config into a Run every entry point steps the same way.

generate, batch, animate, the Python API and the benchmark's memory check all go through it, in this order:
1. resolve the model files: download a missing registry VQGAN when allowed (not offline), verify each file once;
2. check the plan: everything that needs no weights (prompts, images, CLIP names, the size);
3. pick the device; 4. refuse an output folder that cannot be written;
5. estimate the memory and refuse a run that cannot fit, suggesting a size that does;
6. load the models (or reuse them: `ModelCache`); 7. switch them to the device's fast path.
`Run.steps()` then yields the loop's Steps, with an out-of-memory failure turned into the same one-line advice.
`prepare_resume(folder)` is the same path for a run continued from its saved state (vqclip.state): the state is
checked against the run before any model loads (config, size, device) and after (the models' weights).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import torch

from . import fastpath
from .clip import Perceptor
from .config import Config, with_seed
from .device import pick_device
from .errors import ConfigError
from .images import load_image
from .inits import INITS
from .loading import ModelCache, Models, VQGANFinder, load_models  # noqa: F401  (names of the API)
from .memory import Workload, check_memory, oom_advice
from .observe import Observer
from .optimize import Guide, LoopSettings, LoopState, Step, optimize
from .outputs import check_writable
from .plan import Plan, check
from .prompts import Prompt, PromptLoss
from .resume import check_config, check_fit, check_models, resume_config, state_meta
from .state import SavedState, read_state
from .store import VQGANFiles
from .writer import Layout, ResumeAt, RunResult, RunWriter, write_steps

__all__ = [
    "ModelCache",
    "Models",
    "Run",
    "VQGANFinder",
    "embed_prompts",
    "generate",
    "load_models",
    "make_guides",
    "plan_run",
    "prepare_resume",
    "prepare_run",
    "run",
    "run_image",
    "settings",
]

log = logging.getLogger("vqclip")


def embed_prompts(
    perceptor: Perceptor,
    prompts: Sequence[Prompt],
    image_prompts: Sequence[tuple[Path, float]] = (),
    noise_prompts: Sequence[tuple[int, float]] = (),
) -> list[PromptLoss]:
    """Text, image and noise prompts -> PromptLoss modules on the perceptor's device."""
    losses = []
    for p in prompts:
        n = perceptor.count_tokens(p.text)
        if n > perceptor.context_length:
            log.warning(
                f"prompt {p.text[:40]!r}... has {n} tokens; CLIP reads only the first "
                f"{perceptor.context_length}, the rest is ignored"
            )
        losses.append(PromptLoss(perceptor.encode_text([p.text])[0], p.weight, p.stop))
    for path, weight in image_prompts:
        size = perceptor.input_size
        image = load_image(path, (size, size)).to(perceptor.mean.device)
        with torch.no_grad():  # the image and its mirror: a little robustness for one extra forward
            embed = perceptor.encode_image(torch.cat([image, image.flip(3)])).float().mean(0)
        losses.append(PromptLoss(embed, weight))
    if noise_prompts:
        dim = perceptor.encode_text([""]).shape[-1]
        for seed, weight in noise_prompts:  # a random direction in embedding space, drawn from its seed on the CPU
            embed = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
            losses.append(PromptLoss(embed.to(perceptor.mean.device), weight))
    return losses


def settings(cfg: Config, device: Optional[torch.device] = None) -> LoopSettings:
    """The loop's settings; with a device, the fast path is resolved for it (without, the fp32 reference)."""
    fast = fastpath.resolve(cfg.speed, device, cfg.width, cfg.height) if device is not None else fastpath.REFERENCE
    return LoopSettings(
        fast=fast,
        steps=cfg.steps,
        lr=cfg.optim.lr,
        optimizer=cfg.optim.name,
        weight_decay=cfg.optim.weight_decay,
        cutn=cfg.cutouts.cutn,
        cut_pow=cfg.cutouts.cut_pow,
        augments=tuple(cfg.cutouts.augments),
        init_weight=cfg.init_weight,
        init_schedule=cfg.init_schedule,
        schedule=cfg.optim.schedule,
        ema=cfg.optim.ema,
        losses=dict(cfg.losses),
        cutout_method=cfg.cutouts.method,
    )


def make_guides(plan: Plan, models: Models, prompts: Sequence[Sequence[Prompt]]) -> list[Guide]:
    """One Guide per CLIP model, scoring image b against prompts[b] and the plan's image prompts."""
    return [
        Guide(p, [embed_prompts(p, ps, plan.image_prompts, plan.noise_prompts) for ps in prompts])
        for p in models.perceptors
    ]


def plan_run(
    cfg: Config,
    unit: str = "step",
    need_prompt: bool = True,
    finder: Optional[Callable[[Config], VQGANFiles]] = None,
    memo: Optional[dict] = None,
) -> Plan:
    """Steps 1-2: the config's seed drawn, its model files resolved (see VQGANFinder), its plan checked. The size
    actually used is written back into cfg, so it is what every output records. `memo`: see `plan.check`."""
    with_seed(cfg)
    plan = check(cfg, need_prompt, unit, resolver=finder or VQGANFinder(), memo=memo)
    cfg.width, cfg.height = plan.width, plan.height
    return plan


@dataclass
class Run:
    """A prepared run (see prepare_run): the config, its checked plan, the device, the memory workload, and, once
    loaded, the models and the loop's settings on the device's fast path."""

    cfg: Config
    plan: Plan
    device: torch.device
    work: Workload
    models: Optional[Models] = None
    settings: Optional[LoopSettings] = field(default=None, repr=False)
    resume: Optional[SavedState] = None  # the state this run continues from (prepare_resume)

    def load(self, models: Optional[Models | ModelCache] = None) -> "Run":
        """Steps 6-7: load (or reuse) the models and switch them to the device's fast path."""
        if isinstance(models, ModelCache):
            models = models.get(self.plan, self.device, self.cfg.model.checkpoints_dir)
        self.models = models or load_models(self.plan, self.device, self.cfg.model.checkpoints_dir)
        self.settings = settings(self.cfg, self.device)
        fastpath.prepare(self.models.vqgan, self.models.perceptors, self.settings.fast)
        fastpath.set_threads(self.cfg.speed, self.device)
        if self.resume is not None:
            check_models(self.resume, self.models.fingerprints)
        return self

    def state_meta(
        self, cfg: Optional[Config] = None, plan: Optional[Plan] = None, kind: str = "still", **extra
    ) -> dict:
        """What a state file of this run (or of a batch's image with its own cfg and plan) says about it."""
        return state_meta(cfg or self.cfg, plan or self.plan, kind, self.models.fingerprints, self.device, **extra)

    def steps(
        self,
        prompts: Optional[Sequence[Sequence[Prompt]]] = None,
        seeds: Optional[Sequence[int]] = None,
        starts: Optional[Sequence[LoopState]] = None,
    ) -> Iterator[Step]:
        """The loop's Steps: image b for prompts[b] from seeds[b] (default: the plan's prompts, the config's seed),
        continued from starts[b] when given (all at one step; default: the state a resumed run was prepared with).

        A story in the plan switches every image to the story's later prompts at their steps.
        """
        if self.models is None:
            raise RuntimeError("Run.steps() needs loaded models: call Run.load() (prepare_run does)")
        prompts = [self.plan.prompts] if prompts is None else prompts
        seeds = [self.cfg.seed] if seeds is None else seeds
        if starts is None and self.resume is not None:
            starts = [self.resume.loop]
        if len(prompts) != len(seeds) or starts is not None and len(starts) != len(seeds):
            raise ConfigError("one seed (and one start, when resuming) per image is needed")
        with oom_advice(self.work):
            yield from _loop(self, prompts, seeds, LoopState.stack(starts) if starts else None)


def _loop(
    run: Run, prompts: Sequence[Sequence[Prompt]], seeds: Sequence[int], start: Optional[LoopState]
) -> Iterator[Step]:
    plan, models, device = run.plan, run.models, run.device
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    guides = make_guides(plan, models, prompts)
    schedule = {step: make_guides(plan, models, [ps] * len(seeds)) for step, ps in plan.story}
    if start is not None:
        z = start.z.to(device)  # optimize takes z, z_orig, the moments and the generators from the state
    elif run.cfg.init_image:
        image = load_image(run.cfg.init_image, (plan.width, plan.height)).to(device)
        z = models.vqgan.encode(image * 2 - 1).expand(len(seeds), -1, -1, -1).contiguous()
    else:
        z = INITS[run.cfg.init](models.vqgan, plan.height, plan.width, generators)
    yield from optimize(models.vqgan, guides, z, run.settings, generators, schedule=schedule, start=start)


def prepare_run(
    cfg: Config,
    plan: Optional[Plan] = None,
    *,
    device: Optional[torch.device] = None,
    batch: int = 1,
    unit: str = "step",
    need_prompt: bool = True,
    outputs: bool = True,
    load: bool = True,
    models: Optional[Models | ModelCache] = None,
    finder: Optional[Callable[[Config], VQGANFiles]] = None,
    resume: Optional[SavedState] = None,
) -> Run:
    """Steps 1-7 (see the module's docstring): a Run ready to step, or, with load=False, checked up to the memory.

    `plan` skips steps 1-2 when the caller planned already (a batch plans every job first); `outputs=False` for
    runs that write no files (the Python API's `generate`); `batch` images are stepped together; `resume` is the
    saved state the run continues from (see prepare_resume), refused here if it is not this run's.
    """
    if resume is not None:  # first: what differs from the saved run says more than what this one lacks
        check_config(resume, cfg, "animation" if unit == "frame" else "still")
    plan = plan or plan_run(cfg, unit, need_prompt, finder)
    device = device or pick_device(cfg.device)
    if outputs:
        check_writable(resume.folder if resume is not None else cfg.output.dir)
    if resume is not None:
        check_fit(resume, plan, device)
    work = Workload.of(plan, cfg, device, batch)
    check_memory(work)
    run = Run(cfg, plan, device, work, resume=resume)
    return run.load(models) if load else run


def prepare_resume(
    folder: str | Path, options: Optional[dict] = None, sets: Sequence[str] = (), animation: bool = False, **kwargs
) -> Run:
    """A Run that continues the still (or `animation`) saved in `folder` (interrupted, or saved with
    output.save_state) from its state, in that folder. `options` and `sets` may only change where it runs (the
    device); anything else is refused, as is the state of another kind of run."""
    saved = read_state(Path(folder))
    cfg = resume_config(saved, options, sets)
    return prepare_run(cfg, unit="frame" if animation else "step", resume=saved, **kwargs)


def generate(
    cfg: Config, models: Optional[Models | ModelCache] = None, device: Optional[torch.device] = None
) -> Iterator[Step]:
    """The Python API: yield the Steps of one image for cfg; nothing is written (models load when not given)."""
    yield from prepare_run(cfg, device=device, models=models, outputs=False).steps()


def run_image(
    run: Run, on_step: Optional[Callable[[Step], None]] = None, observers: Sequence[Observer] = ()
) -> RunResult:
    """Step a prepared run of one image into its folder: frames, final.png and the video (see vqclip.writer);
    `observers` watch it (a preview page, vqclip.notebook.NotebookDisplay)."""
    from .provenance import run_name

    writer = RunWriter(
        run.cfg,
        run.plan,
        Path(run.cfg.output.dir),
        run_name(run.cfg),
        Layout.still(run.cfg),
        state_meta=run.state_meta,
        at=ResumeAt.of(run.resume) if run.resume else None,
    )
    return write_steps(run.steps(), [writer], on_step, observers=observers)[0]


def run(
    cfg: Config,
    models: Optional[Models | ModelCache] = None,
    device: Optional[torch.device] = None,
    on_step: Optional[Callable[[Step], None]] = None,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """The Python API: generate one image for cfg and write its outputs; returns where they went."""
    return run_image(prepare_run(cfg, device=device, models=models), on_step, observers)
