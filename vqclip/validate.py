"""The checks a Config's values pass beyond their types: ranges, finite numbers, known names (no model needed)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .choices import (
    AUGMENT_NAMES,
    COMPILE_MODES,
    CUTOUT_METHOD_NAMES,
    INIT_NAMES,
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
)
from .errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from .config import Config, SpeedConfig

__all__ = [
    "MAX_SEED",
    "MAX_WEIGHT",
    "check_motion",
    "check_quality",
    "check_seed",
    "check_weight",
    "validate",
    "validate_speed",
]

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64 bits; numpy and the manifest's JSON readers 63
MAX_WEIGHT = 1e4  # |loss weight| of a prompt or the init image: beyond it fp32 losses overflow towards inf
# upper bounds of the other numbers: far past any useful value, well short of an overflow
HIGHEST = {
    "optim.lr": 1e4,
    "optim.weight_decay": 1e4,
    "init_weight": MAX_WEIGHT,
    "cutouts.cut_pow": 100.0,
    "output.fps": 1000,
}


def validate(cfg: Config) -> None:
    """Checks that need no model: positive counts, known names."""
    positive = {
        "steps": cfg.steps,
        "width": cfg.width,
        "height": cfg.height,
        "cutouts.cutn": cfg.cutouts.cutn,
        "optim.lr": cfg.optim.lr,
        "output.fps": cfg.output.fps,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    floats = {
        "optim.lr": cfg.optim.lr,
        "optim.weight_decay": cfg.optim.weight_decay,
        "init_weight": cfg.init_weight,
        "cutouts.cut_pow": cfg.cutouts.cut_pow,
    }
    for key, value in floats.items():
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
    for key, value in (("optim.weight_decay", cfg.optim.weight_decay), ("init_weight", cfg.init_weight)):
        if value < 0:
            raise ConfigError(f"{key} must be 0 (off) or positive, got {value}")
    for key, value in {**floats, "output.fps": cfg.output.fps}.items():
        if value > HIGHEST[key]:
            raise ConfigError(f"{key} must be at most {HIGHEST[key]:g}, got {value:g}")
    _check_lists(cfg)
    validate_speed(cfg.speed)
    if cfg.output.save_every < 0:
        raise ConfigError(f"output.save_every must be 0 (no frames) or positive, got {cfg.output.save_every}")
    if cfg.story_every < 0:
        raise ConfigError(f"story_every must be 0 (split evenly) or positive, got {cfg.story_every}")
    for key in ("frames", "steps_per_frame"):
        if not getattr(cfg.animation, key) > 0:
            raise ConfigError(f"animation.{key} must be positive, got {getattr(cfg.animation, key)}")
    if cfg.animation.blend < 0:
        raise ConfigError(f"animation.blend must be 0 (a cut) or positive, got {cfg.animation.blend}")
    if cfg.cutouts.cut_pow <= 0:
        raise ConfigError(f"cutouts.cut_pow must be positive, got {cfg.cutouts.cut_pow}")
    check_motion(cfg.animation.zoom, cfg.animation.rotate, cfg.animation.pan)
    if cfg.optim.name not in OPTIMIZER_NAMES:
        raise UnknownNameError("optimizer", cfg.optim.name, OPTIMIZER_NAMES)
    for aug in cfg.cutouts.augments:
        if aug not in AUGMENT_NAMES:
            raise UnknownNameError("augmentation", aug, AUGMENT_NAMES)
    check_quality(cfg)
    if cfg.device not in ("auto", "cpu", "cuda", "mps") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    if not cfg.model.clip:
        raise ConfigError("model.clip needs at least one CLIP model")
    if cfg.seed is not None:
        check_seed(cfg.seed)


def check_seed(seed, what: str = "seed") -> int:
    """A whole number in [0, 2**63-1] (a batch's SEED+k is checked with what="--seed S + job index k")."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{what} must be a whole number, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be between 0 and 2**63-1, got {seed}")
    return seed


def check_weight(weight: float, what: str) -> float:
    """A loss weight: finite, and at most MAX_WEIGHT either way (1e308 would overflow every loss to inf)."""
    if not (math.isfinite(weight) and abs(weight) <= MAX_WEIGHT):
        raise ConfigError(f"{what} has weight {weight:g}; use a weight between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")
    return weight


def _check_lists(cfg: Config) -> None:
    """What OmegaConf's List[str] lets through (a list nested in it): every item of the type its field holds."""
    texts = {
        "image_prompts": cfg.image_prompts,
        "model.clip": cfg.model.clip,
        "cutouts.augments": cfg.cutouts.augments,
        "keyframes": list(cfg.keyframes.values()),
    }
    for key, items in texts.items():
        for item in items:
            if not isinstance(item, str):
                raise ConfigError(f"{key} holds {item!r:.40}; each item must be text")
    for value in cfg.animation.pan:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"animation.pan must be two numbers (right, down), got {list(cfg.animation.pan)!r:.60}")


def check_quality(cfg: Config) -> None:
    """The quality controls: known cutout method, init, schedules and losses; an EMA decay in [0, 1); one weight
    per noise prompt seed."""
    for kind, name, names in (
        ("cutout method", cfg.cutouts.method, CUTOUT_METHOD_NAMES),
        ("init", cfg.init, INIT_NAMES),
        ("lr schedule", cfg.optim.schedule, SCHEDULE_NAMES),
        ("init schedule", cfg.init_schedule, SCHEDULE_NAMES),
    ):
        if name not in names:
            raise UnknownNameError(kind, name, names)
    for name, weight in cfg.losses.items():
        if name not in LOSS_NAMES:
            raise UnknownNameError("loss", name, LOSS_NAMES)
        if not math.isfinite(weight):
            raise ConfigError(f"losses.{name} must be a finite number, got {weight}")
    if not (0 <= cfg.optim.ema < 1):
        raise ConfigError(f"optim.ema must be 0 (off) or a decay below 1 such as 0.99, got {cfg.optim.ema}")
    seeds, weights = cfg.noise_prompt_seeds, cfg.noise_prompt_weights
    if len(seeds) != len(weights):
        raise ConfigError(
            f"noise_prompt_seeds ({len(seeds)}) and noise_prompt_weights ({len(weights)}) need one "
            f"weight per seed, e.g. --set noise_prompt_seeds=[7] --set noise_prompt_weights=[-0.5]"
        )
    if any(s < 0 for s in seeds) or not all(math.isfinite(w) for w in weights):
        raise ConfigError("noise_prompt_seeds must be non-negative and noise_prompt_weights finite numbers")


def check_motion(zoom: float, rotate: float, pan) -> None:
    """An animation's camera move: a positive finite zoom, a finite rotation and two finite pan offsets."""
    if not (zoom > 0 and math.isfinite(zoom)):
        raise ConfigError(f"zoom must be positive (1 keeps the size, 1.02 zooms in 2% a frame), got {zoom}")
    if not 0.01 <= zoom <= 100:
        raise ConfigError(f"zoom must be between 0.01 and 100 a frame (1.02 zooms in 2% a frame), got {zoom:g}")
    if len(pan) != 2 or not all(math.isfinite(v) for v in (rotate, *pan)):
        raise ConfigError(f"rotate must be a number and pan two numbers (right, down), got {rotate} and {list(pan)}")
    if abs(rotate) > 360 or any(abs(v) > 1e4 for v in pan):  # a frame's move: past these it only overflows
        raise ConfigError(
            f"rotate must be within +-360 degrees and pan within +-10000 pixels a frame, got {rotate:g} and {list(pan)}"
        )


def validate_speed(speed: SpeedConfig) -> None:
    """The speed switches' values (also checked by `vqclip bench`, which builds a SpeedConfig itself)."""
    if speed.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"speed.precision must be auto, fp32 or bf16, got {speed.precision!r}")
    if speed.compile_mode not in COMPILE_MODES:
        raise ConfigError(
            f"speed.compile_mode must be {', '.join(COMPILE_MODES[:-1])} or {COMPILE_MODES[-1]}, "
            f"got {speed.compile_mode!r}"
        )
    if speed.threads < 0:
        raise ConfigError(f"speed.threads must be 0 (auto) or a positive number of CPU threads, got {speed.threads}")
    if speed.checkpoint_pixels < 0:
        raise ConfigError(f"speed.checkpoint_pixels must be 0 (never) or positive, got {speed.checkpoint_pixels}")
