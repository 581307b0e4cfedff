"""What every PNG records about the run that made it, and how a run's config is rebuilt from such a PNG (`--from`).

A PNG carries the prompt, the seed, the resolved config (YAML), the model names and the SHA-256 of the VQGAN's files,
the torch version and the device, so the run can be reproduced from the image alone. A re-run takes its prompts and
settings from the PNG, never its places: where outputs go (`output.dir`, the folder name) and where models live
(`model.checkpoints_dir`) are the user's, and files the PNG names by path (a VQGAN yaml or checkpoint, CLIP weights,
init and prompt images) are used only with a warning that names them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Optional

import yaml

from . import story
from .config import Config, resolve, to_yaml
from .errors import ConfigError, UsageError
from .outputs import read_png_metadata, slugify
from .safe_yaml import load_yaml
from .version import __version__

__all__ = ["PLACES", "config_for", "describe_device", "metadata", "run_name"]

log = logging.getLogger("vqclip")

# where a run writes and finds its models: the user's options or defaults, never a PNG's
PLACES = ("output.dir", "model.checkpoints_dir")


def metadata(
    cfg: Config,
    plan,
    step: int,
    status: str,
    loss: Optional[float],
    extras: Optional[dict] = None,
    device: Optional[str] = None,
) -> dict:
    """Provenance of one PNG; `extras` are the loop's words about this step (an animation frame's prompt, blend),
    `device` the one it was made on (see describe_device). The model files' SHA-256 are those the lock verified."""
    import torch  # loaded by now: the image to record is a tensor

    meta = {
        "prompt": cfg.prompt,
        "seed": cfg.seed,
        "config": to_yaml(cfg),
        "vqgan": plan.vqgan_name,
        "clip": ",".join(cfg.model.clip),
        "vqclip_version": __version__,
        "step": step,
        "steps": cfg.steps,
        "status": status,
        "loss": None if loss is None else f"{loss:.6f}",
        "Software": f"vqclip {__version__}",
        "torch_version": torch.__version__,
        "device": device,
        "vqgan_sha256": json.dumps(dict(plan.vqgan.sha256), sort_keys=True) if plan.vqgan.sha256 else None,
    }
    if plan.story:  # story mode: the whole schedule, what it counts, and the prompt this image was scored against
        meta.update(
            story=json.dumps(plan.schedule), story_unit=plan.unit, active_prompt=story.prompt_at(plan.schedule, step)
        )
        extras = extras or {}
        if "prompt" in extras:  # what the loop was given, rather than what the schedule says it should be
            meta["active_prompt"] = extras["prompt"]
        if "blend" in extras:
            meta["blend"] = json.dumps(extras["blend"])
    return meta


def describe_device(device) -> str:
    """ "cpu", "mps", or "cuda:0 (NVIDIA H200)": the device and, for a GPU, its model."""
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


def config_for(
    prompt: Optional[str],
    presets: Iterable[str] = (),
    from_png: Optional[Path] = None,
    sets: Iterable[str] = (),
    options: Optional[dict] = None,
    command: str = "generate",
) -> Config:
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
            raise UsageError(
                f"{from_png} is a frame of an animation; re-run it with vqclip animate --from "
                f"{from_png}, or start a still from it with --init-image"
            )
        options.setdefault("output.name", None)  # a re-run is a new run: its own folder name, not the recorded one
        base = _without_places(base, options, from_png)
    if prompt is not None:
        options["prompt"] = prompt
    cfg = resolve(presets or (), base, options, sets or ())
    if from_png is not None and options.get("output.name") is None:
        cfg.output.name = None
    return cfg


def _get(data: dict, key: str):
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _recorded_paths(data: dict) -> list[str]:
    """The `key=value`s of a recorded config that name files by path (registry names and bundled aliases do not)."""
    vqgan, ckpt, clips = _get(data, "model.vqgan"), _get(data, "model.vqgan_ckpt"), _get(data, "model.clip") or []
    found = []
    if isinstance(vqgan, str) and (vqgan.endswith((".yaml", ".yml")) or "/" in vqgan or "\\" in vqgan):
        found.append(("model.vqgan", vqgan))
    if isinstance(ckpt, str):
        found.append(("model.vqgan_ckpt", ckpt))
    for clip in clips if isinstance(clips, list) else []:
        if isinstance(clip, str) and ("/" in clip or "\\" in clip or clip.startswith("local-dir:")):
            found.append(("model.clip", clip))
    if isinstance(_get(data, "init_image"), str):
        found.append(("init_image", _get(data, "init_image")))
    images = _get(data, "image_prompts")
    for item in images if isinstance(images, list) else []:  # anything else is refused by `resolve` next
        found.append(("image_prompts", item))
    return [f"{k}={v}" for k, v in found]


def _without_places(base: str, options: dict, png: Path) -> str:
    """The recorded config with its places left out, and a warning naming the files it names by path."""
    try:
        data = load_yaml(base, "the recorded config")
    except ConfigError:
        return base  # `resolve` reports it, as for any broken recorded config
    if not isinstance(data, dict):
        return base
    for key in PLACES:
        *parents, leaf = key.split(".")
        node = _get(data, ".".join(parents)) if parents else data
        if isinstance(node, dict):
            node.pop(leaf, None)
    named = [p for p in _recorded_paths(data) if p.split("=")[0] not in options]  # an option given replaces it
    if named:
        log.warning(
            f"{png} names files by path, used as recorded: {', '.join(named)}; pass the options "
            f"(--vqgan, --clip, --init-image ...) to use others"
        )
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
