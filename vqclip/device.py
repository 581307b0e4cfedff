"""Which device a run uses: `auto` picks CUDA, then Apple's MPS, then the CPU; an explicit one must exist."""

from __future__ import annotations

import torch

from .errors import DeviceError

__all__ = ["pick_device"]


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """auto picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was asked for but no CUDA GPU is available; use --device cpu or auto")
    if name == "mps" and not _mps():
        raise DeviceError("device 'mps' was asked for but Apple's MPS is not available; use --device cpu or auto")
    return torch.device(name)
