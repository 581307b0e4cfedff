"""How much memory a run needs, estimated before any model loads, and advice when it does not fit.

The estimate is the VQGAN decoder's saved activations (what autograd keeps for the backward pass through
the decoder, which dominates at large sizes) plus the VQGAN's weights. It is measured, not guessed: the
decoder runs once on the `meta` device, which computes shapes without allocating. CLIP's share does not
grow with the image and is left out, so the estimate is a lower bound: a run it refuses cannot fit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from typing import Iterator, Optional

import torch

from .errors import ConfigError, OutOfMemory
from .models import VQGAN, VQGANSpec

# the share of free memory a suggested size may use; the rest is left for CLIP, gradients and the allocator
SUGGEST_SHARE = 0.6
# above this many pixels the decoder is not run even on meta: activations grow at least linearly, so an
# estimate scaled up from this size is still a lower bound
_MAX_MEASURED_PIXELS = 2**24


def available_bytes(device: torch.device) -> Optional[int]:
    """Free memory on the device: MemAvailable for the CPU, the CUDA allocator's free bytes; None if unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        with contextlib.suppress(OSError, ValueError):
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        with contextlib.suppress(ValueError, OSError, AttributeError):
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


@functools.lru_cache(maxsize=8)
def _meta_vqgan(spec_json: str) -> VQGAN:
    with torch.device("meta"):
        return VQGAN(VQGANSpec(**json.loads(spec_json)))


def _spec_key(spec: VQGANSpec) -> str:
    return json.dumps({"ddconfig": spec.ddconfig, "n_embed": spec.n_embed, "embed_dim": spec.embed_dim,
                       "gumbel": spec.gumbel, "kl_weight": spec.kl_weight}, sort_keys=True)


def _decoder_activation_bytes(model: VQGAN, width: int, height: int) -> int:
    """Bytes autograd saves for one image's decode at this size (run on meta: no memory is used)."""
    params = {id(p) for p in model.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if id(t) not in params and id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
        return t

    f = model.factor
    z = torch.zeros(1, model.spec.embed_dim, height // f, width // f, device="meta", requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.decode(z)
    return total


def estimate_bytes(spec: VQGANSpec, width: int, height: int, batch: int = 1) -> int:
    """A lower bound of the memory one step of `batch` images of width x height needs."""
    model = _meta_vqgan(_spec_key(spec))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    pixels = width * height
    if pixels <= _MAX_MEASURED_PIXELS:
        per_image = _decoder_activation_bytes(model, width, height)
    else:  # scale a measured size up by the pixel ratio (activations grow at least linearly with pixels)
        scale = math.sqrt(_MAX_MEASURED_PIXELS / pixels)
        w, h = (max(model.factor, int(s * scale) // model.factor * model.factor) for s in (width, height))
        per_image = _decoder_activation_bytes(model, w, h) * (pixels / (w * h))
    return int(weights + per_image * batch)


def fitting_size(spec: VQGANSpec, width: int, height: int, budget: float, batch: int = 1) -> Optional[tuple[int, int]]:
    """The largest size with the same aspect ratio (multiples of the factor) whose estimate is within budget."""
    f = spec.factor
    scale = 1.0
    for _ in range(200):
        w = max(f, int(width * scale) // f * f)
        h = max(f, int(height * scale) // f * f)
        if estimate_bytes(spec, w, h, batch) <= budget:
            return w, h
        if (w, h) == (f, f):
            return None
        scale *= 0.9
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def advice(spec: VQGANSpec, width: int, height: int, device: torch.device, batch: int = 1,
           free: Optional[int] = None, failed: bool = False) -> str:
    """What to do instead: a size that fits the device's free memory, fewer cutouts, or the CPU.

    After a real failure (`failed`) the estimate was too low, so the size suggested is also at most half of
    the failed size's estimate.
    """
    free = available_bytes(device) if free is None else free
    budget = free * SUGGEST_SHARE if free else None
    if failed:
        half = estimate_bytes(spec, width, height, batch) / 2
        budget = min(budget, half) if budget else half
    fit = fitting_size(spec, width, height, budget, batch) if budget else None
    tips = [f"try --size {fit[0]} {fit[1]}"] if fit and fit != (width, height) else ["try a smaller --size"]
    tips.append("fewer cutouts (--set cutouts.cutn=16)")
    if device.type == "cuda":
        tips.append("or --device cpu")
    return ", ".join(tips)


def check_memory(spec: VQGANSpec, width: int, height: int, device: torch.device, batch: int = 1) -> None:
    """Refuse up front a size whose lower-bound estimate exceeds the device's free memory."""
    free = available_bytes(device)
    if free is None:
        return
    need = estimate_bytes(spec, width, height, batch)
    if need > free:
        raise ConfigError(f"{width}x{height} needs at least {_gib(need)} on {device.type} but only {_gib(free)} "
                          f"is free; {advice(spec, width, height, device, batch, free)}")


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text)


@contextlib.contextmanager
def oom_advice(spec: VQGANSpec, width: int, height: int, device: torch.device, batch: int = 1) -> Iterator[None]:
    """Turn a real out-of-memory failure into an OutOfMemory error with the same advice as `check_memory`."""
    failed = False
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        if not (_is_oom(e) or isinstance(e, MemoryError)):
            raise
        failed = True
    # out of the except block, so the failed step's tensors are freed before measuring what is free
    if failed:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemory(f"out of memory on {device.type} at {width}x{height}; "
                          f"{advice(spec, width, height, device, batch, failed=True)}")
