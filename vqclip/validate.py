"""The checks a Config's values pass beyond their types: ranges, finite numbers, known names (no model needed)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .choices import AUGMENT_NAMES, COMPILE_MODES, OPTIMIZER_NAMES
from .errors import ConfigError, UnknownNameError

if TYPE_CHECKING:
    from .config import Config, SpeedConfig

__all__ = ["check_motion", "validate", "validate_speed"]


def validate(cfg: Config) -> None:
    """Checks that need no model: positive counts, known names."""
    positive = {"steps": cfg.steps, "width": cfg.width, "height": cfg.height, "cutouts.cutn": cfg.cutouts.cutn,
                "optim.lr": cfg.optim.lr, "output.fps": cfg.output.fps}
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{key} must be positive, got {value}")
    floats = {"optim.lr": cfg.optim.lr, "optim.weight_decay": cfg.optim.weight_decay, "init_weight": cfg.init_weight,
              "cutouts.cut_pow": cfg.cutouts.cut_pow}
    for key, value in floats.items():
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}")
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
    if cfg.device not in ("auto", "cpu", "cuda", "mps") and not cfg.device.startswith("cuda:"):
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps, got {cfg.device!r}")
    if not cfg.model.clip:
        raise ConfigError("model.clip needs at least one CLIP model")
    if cfg.seed is not None and not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"seed must be between 0 and 2**63-1, got {cfg.seed}")


def check_motion(zoom: float, rotate: float, pan) -> None:
    """An animation's camera move: a positive finite zoom, a finite rotation and two finite pan offsets."""
    if not (zoom > 0 and math.isfinite(zoom)):
        raise ConfigError(f"zoom must be positive (1 keeps the size, 1.02 zooms in 2% a frame), got {zoom}")
    if len(pan) != 2 or not all(math.isfinite(v) for v in (rotate, *pan)):
        raise ConfigError(f"rotate must be a number and pan two numbers (right, down), got {rotate} and {list(pan)}")


def validate_speed(speed: SpeedConfig) -> None:
    """The speed switches' values (also checked by `vqclip bench`, which builds a SpeedConfig itself)."""
    if speed.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"speed.precision must be auto, fp32 or bf16, got {speed.precision!r}")
    if speed.compile_mode not in COMPILE_MODES:
        raise ConfigError(f"speed.compile_mode must be {', '.join(COMPILE_MODES[:-1])} or {COMPILE_MODES[-1]}, "
                          f"got {speed.compile_mode!r}")
    if speed.threads < 0:
        raise ConfigError(f"speed.threads must be 0 (auto) or a positive number of CPU threads, got {speed.threads}")
    if speed.checkpoint_pixels < 0:
        raise ConfigError(f"speed.checkpoint_pixels must be 0 (never) or positive, got {speed.checkpoint_pixels}")

