"""A run of one image: consume the loop's steps, save frames, the final PNG and the progress video.

The loop never writes files; this is where a run's outputs are decided. An interrupt (Ctrl-C, SIGTERM)
saves the current image marked as interrupted before it propagates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from . import __version__, story
from .config import Config, to_yaml, with_seed
from .optimize import Step
from .outputs import VideoWriter, save_png, slugify, unique_dir
from .pipeline import Models, Plan, check, generate_batch, load_models, pick_device


@dataclass
class RunResult:
    image: Optional[Path]
    folder: Path
    status: str  # complete | interrupted
    step: int
    loss: Optional[float]
    seconds: float
    videos: list[Path] = field(default_factory=list)


class Interrupted(Exception):
    """Raised after an interrupted run has saved what it made; carries the result."""

    def __init__(self, result: RunResult):
        super().__init__("interrupted")
        self.result = result


def metadata(cfg: Config, plan: Plan, step: int, status: str, loss: Optional[float]) -> dict:
    """Provenance of every PNG: enough to reproduce the run from the image alone (`--from`)."""
    meta = {"prompt": cfg.prompt, "seed": cfg.seed, "config": to_yaml(cfg), "vqgan": plan.vqgan_name,
            "clip": ",".join(cfg.model.clip), "vqclip_version": __version__, "step": step, "steps": cfg.steps,
            "status": status, "loss": None if loss is None else f"{loss:.6f}", "Software": f"vqclip {__version__}"}
    if plan.story:  # story mode: the whole schedule, what it counts, and the prompt this image was scored against
        meta.update(story=json.dumps(plan.schedule), story_unit=plan.unit,
                    active_prompt=story.prompt_at(plan.schedule, step))
    return meta


def run_name(cfg: Config) -> str:
    first = cfg.prompt or (cfg.keyframes and cfg.keyframes[min(cfg.keyframes)]) or "image-prompt"
    return cfg.output.name or f"{slugify(first, 60)}-s{cfg.seed}"


def run(cfg: Config, models: Optional[Models] = None, device: Optional[torch.device] = None,
        on_step: Optional[Callable[[Step], None]] = None, plan: Optional[Plan] = None) -> RunResult:
    """Generate one image for cfg and write its outputs; returns where they went."""
    cfg = with_seed(cfg)
    plan = plan or check(cfg)
    device = device or pick_device(cfg.device)
    models = models or load_models(plan, device, cfg.model.checkpoints_dir)
    # the size actually used is what gets recorded
    cfg.width, cfg.height = plan.width, plan.height
    folder = unique_dir(Path(cfg.output.dir), run_name(cfg))
    video = VideoWriter(folder / "progress.mp4", cfg.output.fps, cfg.output.gif) if cfg.output.video else None
    start, last = time.perf_counter(), None
    try:
        for step in generate_batch(cfg, plan, models, device, [plan.prompts], [cfg.seed]):
            last = step
            if on_step is not None:
                on_step(step)
            every = cfg.output.save_every
            if not step.final and every and step.i % every == 0:
                _save_frame(cfg, plan, folder, step, video)
        loss = float(last.loss[0])
        image = save_png(last.image[0], folder / "final.png", metadata(cfg, plan, last.i, "complete", loss))
        if video is not None:
            video.add(last.image[0])
        videos = video.close() if video is not None else []
        return RunResult(image, folder, "complete", last.i, loss, time.perf_counter() - start, videos)
    except KeyboardInterrupt:
        result = _save_interrupted(cfg, plan, folder, last, video, start)
        raise Interrupted(result) from None
    except BaseException:
        if video is not None:
            video.abort()
        _remove_if_empty(folder)
        raise


def _remove_if_empty(folder: Path) -> None:
    """A run that failed before saving anything leaves no empty folder behind."""
    for sub in (folder / "frames", folder):
        try:
            sub.rmdir()  # only succeeds when empty
        except OSError:
            pass


def _save_frame(cfg: Config, plan: Plan, folder: Path, step: Step, video: Optional[VideoWriter]) -> None:
    frames = folder / "frames"
    frames.mkdir(exist_ok=True)
    meta = metadata(cfg, plan, step.i, "frame", float(step.loss[0]))
    save_png(step.image[0], frames / f"step_{step.i:05d}.png", meta)
    if video is not None:
        video.add(step.image[0])


def _save_interrupted(cfg, plan, folder, last: Optional[Step], video, start) -> RunResult:
    image = None
    loss = float(last.loss[0]) if last is not None else None
    if last is not None:
        image = save_png(last.image[0], folder / "final.png", metadata(cfg, plan, last.i, "interrupted", loss))
    videos = video.close() if video is not None else []
    return RunResult(image, folder, "interrupted", last.i if last else 0, loss, time.perf_counter() - start, videos)
