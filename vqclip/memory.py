"""How much memory a run needs, estimated before any model loads, and advice when it does not fit.

The estimate is measured, not guessed: the models run once on the `meta` device, which computes shapes
without allocating, and a saved-tensor hook adds up the storage autograd keeps for the backward pass. It counts
- the VQGAN's weights and its decoder's saved activations, which dominate at large sizes, with the run's fast
  path applied (fused attention, activation checkpointing with its recompute, bf16);
- each CLIP's weights and the activations of its cutouts, which do not grow with the image but do with cutn.
It leaves out what is small or allocator-dependent (gradients in flight, the optimiser state, the cutouts
themselves, fragmentation), and under bf16 autocast it counts every activation as bf16 though norms and softmax
stay fp32. Against the peak memory of real CPU steps it came within 9% (tests/test_memory.py, BENCHMARKS.md);
on CUDA it is unmeasured, so it refuses only what it estimates above free memory.
"""

# size: the estimate, the fitting size and the advice share Workload (about 300 lines before ruff format)

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import unittest.mock
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch

from .clip import ClipRef, check_clip, meta_clip
from .config import SpeedConfig
from .errors import ConfigError, OutOfMemory
from .fastpath import REFERENCE, FastPath, resolve
from .memory_cache import cached
from .vqgan import VQGAN, VQGANSpec

SUGGEST_SHARE = 0.6  # the share of free memory a suggested size may use; the rest: what the estimate leaves out
# above this many pixels the decoder is not run even on meta: activations grow at least linearly with pixels
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


def _dtype(bf16: bool) -> torch.dtype:
    return torch.bfloat16 if bf16 else torch.float32


@functools.lru_cache(maxsize=8)
def _meta_vqgan(spec_json: str, bf16: bool = False) -> VQGAN:
    with torch.device("meta"):
        return VQGAN(VQGANSpec(**json.loads(spec_json))).requires_grad_(False).to(_dtype(bf16))


@functools.lru_cache(maxsize=8)
def _meta_clip(spec: str | ClipRef, bf16: bool):
    # under the meta device as a default too: open_clip builds some buffers (the text tower's causal mask,
    # context_length^2 floats) with a bare torch.empty before moving the model, which allocated 6 GB for a
    # crafted context_length of 40000
    with torch.device("meta"):
        return meta_clip(spec).to(_dtype(bf16))


def _spec_key(spec: VQGANSpec) -> str:
    return json.dumps(
        {
            "ddconfig": spec.ddconfig,
            "n_embed": spec.n_embed,
            "embed_dim": spec.embed_dim,
            "gumbel": spec.gumbel,
            "kl_weight": spec.kl_weight,
        },
        sort_keys=True,
    )


def _weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters as loaded: fp32 whatever the autocast (the meta copy may be bf16)."""
    return sum(p.numel() * 4 if p.is_floating_point() else p.numel() * p.element_size() for p in model.parameters())


_sdpa = torch.nn.functional.scaled_dot_product_attention


def _fused_sdpa_on_meta(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
    """On meta, SDPA has no kernel choice and falls back to the maths that keeps the [L, L] attention matrix;
    count it as the fused kernel it is on a real device (flash/memory-efficient, as CLIP's attention and the
    fused VQGAN attention get there), which keeps only q, k, v, the output and a logsumexp."""
    if query.device.type == "meta" and attn_mask is None and not is_causal and not kw:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, scale=scale)[0]
    return _sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, **kw)


class _SavedBytes:
    """Adds up the storage bytes autograd saves for backward while active: each storage once, so views of one
    tensor count once, and the model's own parameters (and views of them) not at all."""

    def __init__(self, model: torch.nn.Module):
        self.total = 0
        self._seen = {p.untyped_storage()._cdata for p in model.parameters()}

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage._cdata not in self._seen:
            self._seen.add(storage._cdata)
            self.total += storage.nbytes()
        return t

    def run(self, fn: Callable[[], object]) -> int:
        # F.multi_head_attention_forward (CLIP) looks the name up in torch.nn.functional at call time
        with (
            torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t),
            unittest.mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", _fused_sdpa_on_meta),
        ):
            fn()
        return self.total


def _decoder_activation_bytes(model: VQGAN, width: int, height: int, fast: FastPath = REFERENCE) -> int:
    """Peak bytes one image's decode keeps for the backward at this size, on meta (no memory is used).

    Without checkpointing the peak is everything saved, at the start of the backward. With it, a recomputed
    block keeps only its input; the backward recomputes block k once everything saved after it is freed, so
    the peak is the larger of all that is saved and, for each k, what was saved before k plus k's activations
    plus the gradient arriving at its output (the size of its input in this decoder).
    """
    model.set_fused_attention(fast.fused_attention)
    model.set_checkpointing(False)
    dtype = next(model.parameters()).dtype
    f = model.factor
    z = torch.zeros(1, model.spec.embed_dim, height // f, width // f, device="meta", dtype=dtype, requires_grad=True)
    counter = _SavedBytes(model)
    blocks, handles = [], []  # [saved before it, its input's bytes, saved inside it], in forward order
    if fast.checkpoint:

        def enter(block, args):
            blocks.append([counter.total, args[0].numel() * args[0].element_size(), 0])

        def leave(block, args, out):
            blocks[-1][2] = counter.total - blocks[-1][0]

        for block in model.checkpointable_blocks():
            handles += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
    try:
        total = counter.run(lambda: model.decode(z))
    finally:
        for h in handles:
            h.remove()
    if not blocks:
        return total
    peak = total - sum(inside - inputs for _, inputs, inside in blocks)  # all that checkpointing keeps
    dropped = 0  # what checkpointing does not keep of the blocks before this one
    for before, inputs, inside in blocks:
        peak = max(peak, before - dropped + inside + inputs)  # inside counts the block's input itself
        dropped += inside - inputs
    return peak


def _vqgan_bytes(spec: VQGANSpec, width: int, height: int, fast: FastPath) -> tuple[int, int]:
    model = _meta_vqgan(_spec_key(spec), fast.decoder_bf16)
    return _weight_bytes(model), _decoder_activation_bytes(model, width, height, fast)


def _clip_bytes_per_cutout(spec: str | ClipRef, bf16: bool) -> tuple[int, int]:
    """(weights, activation bytes per cutout) of one CLIP, measured on meta from the difference of two batch
    sizes, so tensors that do not grow with the batch are not counted as activations."""
    perceptor = _meta_clip(spec, bf16)
    size = perceptor.input_size

    def saved(n: int) -> int:
        x = torch.zeros(n, 3, size, size, device="meta", dtype=_dtype(bf16), requires_grad=True)
        return _SavedBytes(perceptor).run(lambda: perceptor.encode_image(x))

    return _weight_bytes(perceptor), (saved(4) - saved(2)) // 2


def estimate_bytes(
    spec: VQGANSpec,
    width: int,
    height: int,
    batch: int = 1,
    *,
    fast: FastPath = REFERENCE,
    clips: Sequence[str | ClipRef] = (),
    cutn: int = 0,
) -> int:
    """The memory one step of `batch` images of width x height needs on the given fast path (an estimate),
    with `cutn` cutouts scored by each CLIP in `clips` (specs as `check_clip` takes them)."""
    pixels, f, (w, h) = width * height, spec.factor, (width, height)
    if pixels > _MAX_MEASURED_PIXELS:  # scale a measured size up by the pixel ratio (activations grow at least so)
        scale = math.sqrt(_MAX_MEASURED_PIXELS / pixels)
        w, h = (max(f, int(s * scale) // f * f) for s in (width, height))
    key = [_spec_key(spec), w, h, fast.decoder_bf16, fast.fused_attention, fast.checkpoint]  # see memory_cache
    weights, per_image = cached("vqgan", key, 2, functools.partial(_vqgan_bytes, spec, w, h, fast))
    per_image *= pixels / (w * h)
    for clip in clips:
        build = check_clip(clip).build  # a local-dir's config may change under its name: measured every time
        measure = functools.partial(_clip_bytes_per_cutout, clip, fast.clip_bf16)
        clip_weights, per_cutout = (
            measure() if build.startswith("local-dir:") else cached("clip", [build, fast.clip_bf16], 2, measure)
        )
        weights += clip_weights
        per_image += per_cutout * cutn
    return int(weights + per_image * batch)


@dataclass(frozen=True)
class Workload:
    """One step's shape for the memory estimate: the models, the size, the batch and the speed switches."""

    spec: VQGANSpec
    width: int
    height: int
    device: torch.device
    batch: int = 1
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    clips: tuple[str | ClipRef, ...] = ()
    cutn: int = 0

    @classmethod
    def of(cls, plan, cfg, device: torch.device, batch: int = 1) -> "Workload":
        """The workload of a checked Plan and its Config on device."""
        return cls(
            plan.vqgan_spec, plan.width, plan.height, device, batch, cfg.speed, tuple(plan.clips), cfg.cutouts.cutn
        )

    def at(self, width: int, height: int) -> "Workload":
        return dataclasses.replace(self, width=width, height=height)

    def bytes(self) -> int:
        # the fast path depends on the size (checkpointing starts above speed.checkpoint_pixels)
        fast = resolve(self.speed, self.device, self.width, self.height)
        return estimate_bytes(
            self.spec, self.width, self.height, self.batch, fast=fast, clips=self.clips, cutn=self.cutn
        )


def fitting_size(work: Workload, budget: float) -> Optional[tuple[int, int]]:
    """The largest size with the same aspect ratio (multiples of the factor) whose estimate is within budget."""
    f = work.spec.factor
    scale = 1.0
    for _ in range(200):
        w = max(f, int(work.width * scale) // f * f)
        h = max(f, int(work.height * scale) // f * f)
        if work.at(w, h).bytes() <= budget:
            return w, h
        if (w, h) == (f, f):
            return None
        scale *= 0.9
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def advice(work: Workload, free: Optional[int] = None, failed: bool = False) -> str:
    """What to do instead: a size that fits the device's free memory, fewer cutouts, or the CPU.

    After a real failure (`failed`) the estimate was too low, so the size suggested is also at most half of
    the failed size's estimate.
    """
    free = available_bytes(work.device) if free is None else free
    budget = free * SUGGEST_SHARE if free else None
    if failed:
        half = work.bytes() / 2
        budget = min(budget, half) if budget else half
    fit = fitting_size(work, budget) if budget else None
    tips = [f"try --size {fit[0]} {fit[1]}"] if fit and fit != (work.width, work.height) else ["try a smaller --size"]
    tips.append("fewer cutouts (--set cutouts.cutn=16)")
    if work.batch > 1:
        tips.append("a smaller --batch-size")
    if work.device.type == "cuda":
        tips.append("or --device cpu")
    return ", ".join(tips)


def check_memory(work: Workload) -> None:
    """Refuse up front a run whose estimate exceeds the device's free memory."""
    free = available_bytes(work.device)
    if free is None:
        return
    need = work.bytes()
    if need > free:
        raise ConfigError(
            f"{work.width}x{work.height} needs at least {_gib(need)} on {work.device.type} but only "
            f"{_gib(free)} is free; {advice(work, free)}"
        )


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text)


@contextlib.contextmanager
def oom_advice(work: Workload) -> Iterator[None]:
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
        if work.device.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemory(
            f"out of memory on {work.device.type} at {work.width}x{work.height}; {advice(work, failed=True)}"
        )
