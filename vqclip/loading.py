"""A run's models: its VQGAN files found once per model (downloaded if missing and allowed), the VQGAN and CLIPs
loaded on the device, and kept loaded between runs that share their files."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch

from .clip import Perceptor, load_clip
from .config import Config
from .plan import Plan
from .resume import model_fingerprints
from .store import ProgressFn, VQGANFiles, cache_loaded, checkpoints_dir, resolve_vqgan
from .vqgan import VQGAN, load_vqgan

__all__ = ["ModelCache", "Models", "VQGANFinder", "load_models"]


@dataclass
class Models:
    vqgan: VQGAN
    perceptors: list[Perceptor]
    vqgan_name: str = ""

    @functools.cached_property
    def fingerprints(self) -> dict:
        """Short hashes of the weights, for the state files (computed once, when a state is first saved or read)."""
        return model_fingerprints(self.vqgan, self.perceptors)


def load_models(plan: Plan, device: torch.device, cache_dir: Optional[str] = None) -> Models:
    """The plan's VQGAN and CLIPs on device, frozen; CLIP first, so a missing CLIP fails before a ~1 GB VQGAN load."""
    clip_cache = str(checkpoints_dir(cache_dir) / "clip")
    perceptors = [load_clip(ref, device, cache_dir=clip_cache) for ref in plan.clips]
    vqgan = load_vqgan(plan.vqgan.config, plan.vqgan.weights, "cpu", name=plan.vqgan.name, spec=plan.vqgan_spec)
    cache_loaded(plan.vqgan, vqgan)
    return Models(vqgan.to(device), perceptors, plan.vqgan.name)


class ModelCache:
    """Keeps the models of the last plan loaded: runs that share model files (a batch's groups, a notebook's
    calls) load them once. A plan with other files frees the old models before loading its own."""

    def __init__(
        self, models: Optional[Models] = None, plan: Optional[Plan] = None, device: Optional[torch.device] = None
    ):
        self.models = models
        self.key = self.key_of(plan, device) if models is not None and plan is not None else None

    @staticmethod
    def key_of(plan: Plan, device: Optional[torch.device]) -> tuple:
        """What names a set of loaded models: the files, the CLIPs and the device."""
        return plan.vqgan.config, plan.vqgan.weights, tuple(plan.clip_specs), str(device)

    def get(self, plan: Plan, device: torch.device, cache_dir: Optional[str] = None) -> Models:
        key = self.key_of(plan, device)
        if key != self.key:
            self.models = None  # free the previous models before loading the next
            self.models = load_models(plan, device, cache_dir)
            self.key = key
        return self.models


class VQGANFinder:
    """Resolves each config's VQGAN files once per distinct model (a batch's thousand jobs verify a file once),
    downloading a missing registry model when `download` and not offline."""

    def __init__(self, download: bool = True, mirror: Optional[str] = None, on_progress: Optional[ProgressFn] = None):
        self.download, self.mirror, self.on_progress = download, mirror, on_progress
        self.found: dict[tuple, VQGANFiles] = {}

    def __call__(self, cfg: Config) -> VQGANFiles:
        m = cfg.model
        key = (m.vqgan, m.vqgan_ckpt, m.checkpoints_dir)
        if key not in self.found:
            self.found[key] = resolve_vqgan(
                *key, download=self.download, mirror=self.mirror, on_progress=self.on_progress
            )
        return self.found[key]
