"""What every PNG records about the run that made it, and how a run's config is rebuilt from such a PNG (`--from`).

A PNG carries the prompt, the seed, the resolved config (YAML), the model names and the SHA-256 of the VQGAN's files,
the torch version and the device, so the run can be reproduced from the image alone. A re-run takes its prompts and
settings from the PNG, never its folder name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional

from . import story
from .config import Config, resolve, to_yaml
from .errors import UsageError
from .outputs import read_png_metadata, slugify
from .version import __version__

__all__ = ["config_for", "describe_device", "metadata", "run_name"]


def metadata(cfg: Config, plan, step: int, status: str, loss: Optional[float], extras: Optional[dict] = None,
             device: Optional[str] = None) -> dict:
    """Provenance of one PNG; `extras` are the loop's words about this step (an animation frame's prompt, blend),
    `device` the one it was made on (see describe_device). The model files' SHA-256 are those the lock verified."""
    import torch  # loaded by now: the image to record is a tensor

    meta = {"prompt": cfg.prompt, "seed": cfg.seed, "config": to_yaml(cfg), "vqgan": plan.vqgan_name,
            "clip": ",".join(cfg.model.clip), "vqclip_version": __version__, "step": step, "steps": cfg.steps,
            "status": status, "loss": None if loss is None else f"{loss:.6f}", "Software": f"vqclip {__version__}",
            "torch_version": torch.__version__, "device": device,
            "vqgan_sha256": json.dumps(dict(plan.vqgan.sha256), sort_keys=True) if plan.vqgan.sha256 else None}
    if plan.story:  # story mode: the whole schedule, what it counts, and the prompt this image was scored against
        meta.update(story=json.dumps(plan.schedule), story_unit=plan.unit,
                    active_prompt=story.prompt_at(plan.schedule, step))
        extras = extras or {}
        if "prompt" in extras:  # what the loop was given, rather than what the schedule says it should be
            meta["active_prompt"] = extras["prompt"]
        if "blend" in extras:
            meta["blend"] = json.dumps(extras["blend"])
    return meta


def describe_device(device) -> str:
    """"cpu", "mps", or "cuda:0 (NVIDIA H200)": the device and, for a GPU, its model."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def run_name(cfg: Config) -> str:
    """A run's folder name: the one given, else the first prompt's slug and the seed."""
    first = cfg.prompt or (cfg.keyframes and cfg.keyframes[min(cfg.keyframes)]) or "image-prompt"
    return cfg.output.name or f"{slugify(first, 60)}-s{cfg.seed}"


def config_for(prompt: Optional[str], presets: Iterable[str] = (), from_png: Optional[Path] = None,
               sets: Iterable[str] = (), options: Optional[dict] = None, command: str = "generate") -> Config:
    """defaults <- presets <- the PNG's recorded config <- explicit options <- --set.

    An animation's frame re-runs only as an animation (`command="animate"`): it depends on the frames before it.
    """
    options = dict(options or {})
    base = None
    if from_png is not None:
        try:
            meta = read_png_metadata(from_png)
        except OSError as e:
            raise UsageError(f"cannot read {from_png} ({e}); --from takes a PNG written by vqclip") from None
        base = meta.get("config")
        if not base:
            raise UsageError(f"{from_png} carries no vqclip config; --from takes a PNG written by vqclip")
        if "animation" in meta and command != "animate":
            raise UsageError(f"{from_png} is a frame of an animation; re-run it with vqclip animate --from "
                             f"{from_png}, or start a still from it with --init-image")
        options.setdefault("output.name", None)  # a re-run is a new run: its own folder name, not the recorded one
    if prompt is not None:
        options["prompt"] = prompt
    cfg = resolve(presets or (), base, options, sets or ())
    if from_png is not None and options.get("output.name") is None:
        cfg.output.name = None
    return cfg
