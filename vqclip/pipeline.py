"""From a Config to a stream of Steps: check inputs, load models, embed prompts, run the loop.

Everything that can be checked without loading a model is checked first (`check`), so a typo never costs
a model load. This module writes no files; `vqclip.session` does that.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from . import fastpath
from .config import Config
from .errors import ConfigError, DeviceError, ImageError, first_line
from .models import VQGAN, Perceptor, VQGANSpec, check_clip, load_clip, load_vqgan, read_vqgan_yaml
from .optimize import Guide, LoopSettings, Step, optimize, random_latent
from .prompts import Prompt, PromptLoss, parse_prompts, split_path_weight
from .registry import checkpoints_dir, resolve_clip, resolve_vqgan
from .story import segments

log = logging.getLogger("vqclip")


def pick_device(name: str = "auto") -> torch.device:
    """auto picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but no CUDA GPU is available; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("device 'mps' was asked for but Apple's MPS is not available; use --device cpu or auto")
    return torch.device(name)


@dataclass
class Plan:
    """What `check` resolved: model files, prompts, the latent size."""

    vqgan_config: Path
    vqgan_ckpt: Path
    vqgan_name: str
    vqgan_spec: VQGANSpec
    clip_specs: list[str]
    prompts: list[Prompt]
    image_prompts: list[tuple[Path, float]]
    width: int
    height: int
    story: list[tuple[int, list[Prompt]]] = field(default_factory=list)  # later prompts by start step (frame)
    schedule: list[tuple[int, str]] = field(default_factory=list)  # every segment's (start, prompt text)
    unit: str = "step"  # what the schedule counts: optimisation steps, or animation frames


def check(cfg: Config, need_prompt: bool = True, unit: str = "step") -> Plan:
    """Validate everything that needs no model weights; adjust the size to the VQGAN's factor with a notice.

    `unit` is what a story's schedule counts: "step" (generate, batch) or "frame" (animate).
    """
    config, ckpt, name = resolve_vqgan(cfg.model.vqgan, cfg.model.vqgan_ckpt, cfg.model.checkpoints_dir)
    spec = read_vqgan_yaml(config)
    schedule = segments(cfg, unit) or [(0, "")]
    first = schedule[0][1]
    prompts = parse_prompts(first) if (first.strip() or need_prompt and not cfg.image_prompts) else []
    story = [(step, parse_prompts(text)) for step, text in schedule[1:]]
    images = []
    for item in cfg.image_prompts:
        path, weight = split_path_weight(item)
        _check_image(path, "image prompt")
        images.append((Path(path), weight))
    if cfg.init_image:
        _check_image(cfg.init_image, "init image")
    width, height = _fit_size(cfg.width, cfg.height, spec.factor)
    for clip_spec in cfg.model.clip:  # an unknown CLIP name must not cost a VQGAN load
        check_clip(resolve_clip(clip_spec))
    return Plan(config, ckpt, name, spec, [resolve_clip(c) for c in cfg.model.clip], prompts, images, width, height,
                story, schedule, unit)


def _fit_size(width: int, height: int, factor: int) -> tuple[int, int]:
    if width < factor or height < factor:
        raise ConfigError(f"size {width}x{height} is smaller than one VQGAN token ({factor} px); "
                          f"use at least --size {factor} {factor}")
    w, h = max(factor, width // factor * factor), max(factor, height // factor * factor)
    if (w, h) != (width, height):
        log.warning(f"size {width}x{height} is not a multiple of the VQGAN's factor {factor}; using {w}x{h}")
    return w, h


def _check_image(path: str | Path, what: str) -> None:
    """A local, regular, decodable image file: URLs are never fetched, and a bad file fails before models load."""
    from PIL import Image

    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(path)):
        raise ImageError(f"{what} {path} is a URL; vqclip does not fetch URLs, download it and pass the local file")
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{what} {p} does not exist")
    if not p.is_file():
        raise ImageError(f"{what} {p} is not a regular file; give a PNG, JPEG or WebP file")
    if p.stat().st_size == 0:
        raise ImageError(f"{what} {p} is empty (0 bytes); give a PNG, JPEG or WebP file")
    try:
        with Image.open(p) as im:
            im.load()  # decode it all: a truncated or corrupt file fails here, not after the models load
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read {what} {p} ({first_line(e)}); give a PNG, JPEG or WebP file") from None



def load_image(path: str | Path, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """An image file -> [1, 3, H, W] in [0, 1], optionally resized to (width, height)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                im = im.resize(size, Image.LANCZOS)
            data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
            return data.view(im.height, im.width, 3).permute(2, 0, 1).float().div(255).unsqueeze(0)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"cannot read image {path} ({e}); give a PNG, JPEG or WebP file") from None


@dataclass
class Models:
    vqgan: VQGAN
    perceptors: list[Perceptor]
    vqgan_name: str = ""


def load_models(plan: Plan, device: torch.device, cache_dir: Optional[str] = None) -> Models:
    # CLIP first: a missing CLIP (offline, not yet downloaded) then fails before a ~1 GB VQGAN load
    clip_cache = str(checkpoints_dir(cache_dir) / "clip")
    perceptors = [load_clip(spec, device, cache_dir=clip_cache) for spec in plan.clip_specs]
    vqgan = load_vqgan(plan.vqgan_config, plan.vqgan_ckpt, device, name=plan.vqgan_name)
    return Models(vqgan, perceptors, plan.vqgan_name)


def embed_prompts(perceptor: Perceptor, prompts: Sequence[Prompt],
                  image_prompts: Sequence[tuple[Path, float]] = ()) -> list[PromptLoss]:
    """Text and image prompts -> PromptLoss modules on the perceptor's device."""
    losses = []
    for p in prompts:
        n = perceptor.count_tokens(p.text)
        if n > perceptor.context_length:
            log.warning(f"prompt {p.text[:40]!r}... has {n} tokens; CLIP reads only the first "
                        f"{perceptor.context_length}, the rest is ignored")
        losses.append(PromptLoss(perceptor.encode_text([p.text])[0], p.weight, p.stop))
    for path, weight in image_prompts:
        size = perceptor.input_size
        image = load_image(path, (size, size)).to(perceptor.mean.device)
        with torch.no_grad():  # the image and its mirror: a little robustness for one extra forward
            embed = perceptor.encode_image(torch.cat([image, image.flip(3)])).float().mean(0)
        losses.append(PromptLoss(embed, weight))
    return losses


def settings(cfg: Config, device: Optional[torch.device] = None) -> LoopSettings:
    """The loop's settings; with a device, the fast path is resolved for it (without, the fp32 reference)."""
    fast = fastpath.resolve(cfg.speed, device, cfg.width, cfg.height) if device is not None else fastpath.REFERENCE
    return LoopSettings(fast=fast, steps=cfg.steps, lr=cfg.optim.lr, optimizer=cfg.optim.name,
                        weight_decay=cfg.optim.weight_decay, cutn=cfg.cutouts.cutn, cut_pow=cfg.cutouts.cut_pow,
                        augments=tuple(cfg.cutouts.augments), init_weight=cfg.init_weight)


def prepared_settings(cfg: Config, models: Models, device: torch.device) -> LoopSettings:
    """The loop's settings on device, with the models switched to its fast path (layout, attention, checkpointing,
    compilation) to match."""
    s = settings(cfg, device)
    fastpath.prepare(models.vqgan, models.perceptors, s.fast)
    return s


def make_guides(plan: Plan, models: Models, prompts: Sequence[Sequence[Prompt]]) -> list[Guide]:
    """One Guide per CLIP model, scoring image b against prompts[b] and the plan's image prompts."""
    return [Guide(p, [embed_prompts(p, ps, plan.image_prompts) for ps in prompts]) for p in models.perceptors]


def generate_batch(cfg: Config, plan: Plan, models: Models, device: torch.device,
                   prompts: Sequence[Sequence[Prompt]], seeds: Sequence[int]) -> Iterator[Step]:
    """Optimise len(seeds) images together, image b for prompts[b] from seed seeds[b].

    A story in the plan switches every image to the story's later prompts at their steps.
    """
    if len(prompts) != len(seeds):
        raise ConfigError("one seed per image is needed")
    generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    guides = make_guides(plan, models, prompts)
    schedule = {step: make_guides(plan, models, [ps] * len(seeds)) for step, ps in plan.story}
    if cfg.init_image:
        image = load_image(cfg.init_image, (plan.width, plan.height)).to(device)
        z = models.vqgan.encode(image * 2 - 1).expand(len(seeds), -1, -1, -1).contiguous()
    else:
        z = random_latent(models.vqgan, plan.height, plan.width, generators)
    yield from optimize(models.vqgan, guides, z, prepared_settings(cfg, models, device), generators,
                        schedule=schedule)


def generate(cfg: Config, models: Optional[Models] = None, device: Optional[torch.device] = None) -> Iterator[Step]:
    """The Python API: yield the Steps of one image for cfg (models are loaded when not given)."""
    from .config import with_seed

    cfg = with_seed(cfg)
    plan = check(cfg)
    device = device or pick_device(cfg.device)
    models = models or load_models(plan, device, cfg.model.checkpoints_dir)
    yield from generate_batch(cfg, plan, models, device, [plan.prompts], [cfg.seed])
