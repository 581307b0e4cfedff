"""A Config -> a checked Plan: model files, prompts, images and the latent size, all known before any weights load.

Everything that can be wrong without a model is caught here, so a typo never costs a model load: the VQGAN's yaml
(read once, kept in the plan), every CLIP name, every prompt and story segment, every image file, the size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Hashable, Optional, TypeVar

from .clip import ClipRef, check_clip
from .config import Config
from .errors import ConfigError, ModelFilesMissing
from .files import check_regular
from .images import check_image
from .prompts import Prompt, parse_prompts, split_path_weight
from .store import VQGANFiles, resolve_clip, resolve_vqgan
from .story import segments
from .validate import check_weight
from .vqgan import VQGANSpec, read_vqgan_yaml

__all__ = ["Plan", "VQGANResolver", "check"]

log = logging.getLogger("vqclip")

# config -> its VQGAN's files; `runner.plan_run` passes one that downloads and remembers what it resolved
VQGANResolver = Callable[[Config], VQGANFiles]
T = TypeVar("T")


def _resolve(cfg: Config) -> VQGANFiles:
    return resolve_vqgan(cfg.model.vqgan, cfg.model.vqgan_ckpt, cfg.model.checkpoints_dir)


@dataclass
class Plan:
    """What `check` resolved: model files, prompts, the latent size."""

    vqgan: VQGANFiles
    vqgan_spec: VQGANSpec
    clips: list[ClipRef]
    prompts: list[Prompt]
    image_prompts: list[tuple[Path, float]]
    width: int
    height: int
    story: list[tuple[int, list[Prompt]]] = field(default_factory=list)  # later prompts by start step (frame)
    schedule: list[tuple[int, str]] = field(default_factory=list)  # every segment's (start, prompt text)
    unit: str = "step"  # what the schedule counts: optimisation steps, or animation frames
    noise_prompts: list[tuple[int, float]] = field(default_factory=list)  # (seed, weight) of random targets

    @property
    def vqgan_name(self) -> str:
        return self.vqgan.name

    @property
    def clip_specs(self) -> list[str]:
        return [str(c) for c in self.clips]


def _once(memo: Optional[dict], key: Hashable, make: Callable[[], T]) -> T:
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def check(
    cfg: Config,
    need_prompt: bool = True,
    unit: str = "step",
    resolver: Optional[VQGANResolver] = None,
    memo: Optional[dict] = None,
) -> Plan:
    """Validate everything that needs no model weights; adjust the size to the VQGAN's factor with a notice.

    `unit` is what a story's schedule counts: "step" (generate, batch) or "frame" (animate, which also checks that
    its crossfades fit their segments). `resolver` finds the VQGAN's files (default: no download). `memo` (a dict
    the caller keeps) checks each model yaml, CLIP and image file once over many configs: a batch's jobs.
    """
    files = (resolver or _resolve)(cfg)
    spec = _once(memo, ("vqgan", files.config), lambda: read_vqgan_yaml(files.config))
    # a FIFO or a device as the weights is refused now by a stat, not when the load would block on it
    _once(
        memo,
        ("weights", files.weights),
        lambda: check_regular(
            files.weights, f"VQGAN checkpoint of {files.name}", "give the model's checkpoint", ModelFilesMissing
        ),
    )
    schedule = segments(cfg, unit) or [(0, "")]
    first = schedule[0][1]
    prompts = parse_prompts(first) if (first.strip() or need_prompt and not cfg.image_prompts) else []
    story = [(step, parse_prompts(text)) for step, text in schedule[1:]]
    if unit == "frame":
        _check_blend(cfg, schedule)
    images = []
    for item in cfg.image_prompts:
        path, weight = split_path_weight(item)
        check_weight(weight, f"image prompt {item!r}")
        _once(memo, ("image", path), lambda p=path: check_image(p, "image prompt"))
        images.append((Path(path), weight))
    if cfg.init_image:
        _once(memo, ("image", cfg.init_image), lambda: check_image(cfg.init_image, "init image"))
    width, height = _fit_size(cfg.width, cfg.height, spec.factor)
    ckpt_dir = cfg.model.checkpoints_dir
    clips = [
        _once(memo, ("clip", c, ckpt_dir), lambda c=c: check_clip(resolve_clip(c), ckpt_dir)) for c in cfg.model.clip
    ]
    noise = list(zip(cfg.noise_prompt_seeds, cfg.noise_prompt_weights))
    return Plan(files, spec, clips, prompts, images, width, height, story, schedule, unit, noise)


def _check_blend(cfg: Config, schedule: list[tuple[int, str]]) -> None:
    """Each crossfade of an animation's story must end within its segment."""
    blend, ends = cfg.animation.blend, [start for start, _ in schedule[1:]] + [cfg.animation.frames]
    for (start, text), end in zip(schedule[1:], ends[1:]):
        if blend >= end - start:
            raise ConfigError(
                f"blend of {blend} frames does not fit the segment {text!r} (frames {start}-{end - 1}); "
                f"lower --blend or space the prompts further apart"
            )


def _fit_size(width: int, height: int, factor: int) -> tuple[int, int]:
    if width < factor or height < factor:
        raise ConfigError(
            f"size {width}x{height} is smaller than one VQGAN token ({factor} px); "
            f"use at least --size {factor} {factor}"
        )
    w, h = max(factor, width // factor * factor), max(factor, height // factor * factor)
    if (w, h) != (width, height):
        log.warning(f"size {width}x{height} is not a multiple of the VQGAN's factor {factor}; using {w}x{h}")
    return w, h
