"""The fast path: the speed switches of a run, resolved for its device, and how they are applied.

`SpeedConfig` (in the run's config) says what the user asked for, with `None`/"auto" meaning "where it
pays"; `resolve` turns it into a `FastPath` of plain booleans for one device and image size. The loop reads
the FastPath; nothing else in vqclip decides about precision or memory layout.

Why each default is what it is:
- bf16, never fp16: the taming decoder's activations overflow fp16's range. On CUDA, and on CPUs with AMX
  (Intel Sapphire Rapids and later), where oneDNN's bf16 convolutions and matmuls measured the decoder 2.4x and
  CLIP 2x faster than fp32 (one thread, forward + backward). With AVX-512 BF16 alone both were slower than fp32,
  so other CPUs stay fp32 unless asked (figures in BENCHMARKS.md).
- bf16 copies of the frozen weights (vqclip.bf16) spare autocast's cast of every weight on every call: the same
  maths, 7% less CPU time per step. CPU only (on CUDA the casts are cheap, and compiled graphs fuse them).
- CPU threads: all cores when the machine is quiet, fewer when other processes keep cores busy. On a busy 2-core
  machine one thread ran a step 2-3x faster than two: each parallel region waits for the thread another
  process has descheduled. The choice is made once per process (`cpu_threads`).
- channels_last pays on tensor-core convolutions (CUDA); on the CPU it measured no faster for this decoder.
- CLIP's fused image tower (vqclip.clip_fused: one input projection per attention block, the patch embedding
  as a matmul) is open_clip's maths with a third less CPU time; it comes with fused attention.
- Fused attention (SDPA) is the same maths as taming's bmm/softmax but does not keep the [hw, hw] attention
  matrix: at 2048x2048 that matrix alone is 1 GiB per image and copy. On the CPU one attention block measured
  0.4-1.5 ms slower up to 32x32 tokens (noise beside a 1.8 s step) and 9% faster at 64x64, so it is on everywhere.
- Activation checkpointing trades ~1/3 more decoder compute for not keeping the full-resolution blocks'
  activations, which dominate memory from 1024x1024 on.
- CUDA graphs come from torch.compile's "reduce-overhead" and "max-autotune" modes (cudagraph trees): each
  compiled call replays a recorded graph, and its outputs live in memory the next replay overwrites. The loop
  marks each step's start (`step_begin`) and keeps no compiled module's output past its step (synth copies
  the decoder's output, the prompt losses reduce CLIP's). Off CUDA, torch compiles without graphs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass

import torch

from . import bf16
from .config import SpeedConfig
from .errors import ConfigError


@dataclass(frozen=True)
class FastPath:
    """Concrete switches for one run; the default instance is the fp32 eager reference path."""

    decoder_bf16: bool = False  # autocast the VQGAN decoder to bf16 (codes are still picked in fp32)
    clip_bf16: bool = False  # autocast CLIP's image tower to bf16
    channels_last: bool = False  # NHWC weights for the convolutions
    fused_optim: bool = False  # one fused kernel for the optimiser step
    compile: bool = False  # torch.compile the decoder and CLIP's image tower
    compile_mode: str = "default"  # torch.compile's mode when compile is on (vqclip.config.COMPILE_MODES)
    checkpoint: bool = False  # recompute the high-resolution decoder blocks in the backward pass
    fused_attention: bool = False  # SDPA instead of taming's bmm/softmax attention in the VQGAN
    clip_fused: bool = False  # CLIP's attention and patch embedding through vqclip.clip_fused (same maths)
    bf16_weights: bool = False  # keep bf16 copies of the frozen weights autocast would cast every step (vqclip.bf16)

    def autocast(self, device: torch.device, enabled: bool):
        """bf16 autocast on device when enabled; a no-op context otherwise."""
        if not enabled:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def optimizer_kwargs(self) -> dict:
        return {"fused": True} if self.fused_optim else {}

    @property
    def cudagraphs(self) -> bool:
        """Whether compiled calls may run as CUDA graphs (torch's modes that turn on triton.cudagraphs)."""
        return self.compile and self.compile_mode in ("reduce-overhead", "max-autotune")

    def step_begin(self) -> None:
        """Mark the start of a step for CUDA graph trees: the previous step's graph outputs may be overwritten."""
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()


REFERENCE = FastPath()


def resolve(speed: SpeedConfig, device: torch.device, width: int, height: int) -> FastPath:
    """The switches for this device and size: explicit settings win, None/auto picks what pays here."""
    cuda = device.type == "cuda"
    if speed.precision == "bf16" and device.type not in ("cuda", "cpu"):
        raise ConfigError(f"speed.precision=bf16 needs a CUDA device or the CPU, not {device.type}; use fp32")
    native = torch.cuda.is_bf16_supported() if cuda else device.type == "cpu" and cpu_has_amx()
    bf16 = speed.precision == "bf16" or speed.precision == "auto" and native
    return FastPath(
        decoder_bf16=bf16,
        clip_bf16=bf16,
        channels_last=cuda if speed.channels_last is None else speed.channels_last,
        fused_optim=cuda if speed.fused_optim is None else speed.fused_optim and device.type != "mps",
        compile=speed.compile,
        compile_mode=speed.compile_mode if speed.compile else "default",
        checkpoint=0 < speed.checkpoint_pixels < width * height,
        fused_attention=speed.fused_attention,
        clip_fused=speed.fused_attention,
        # the same maths as autocast's own casts; on the CPU only, where the casts cost ~7% of a step (measured)
        bf16_weights=bf16 and device.type == "cpu" and not speed.compile,
    )


def cpu_has_amx() -> bool:
    """Whether oneDNN may use AMX tiles here (bf16 pays on the CPU only then; see the module's docstring)."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
    if isa not in ("ALL", "DEFAULT") and "AMX" not in isa:  # oneDNN was told to stop below AMX
        return False
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch >= 2.3; private, hence the getattr
    return bool(probe and probe())


def set_threads(speed: SpeedConfig, device: torch.device) -> None:
    """Set torch's CPU threads for a run on the CPU: speed.threads, or `cpu_threads()` when it is 0 (auto)."""
    if device.type == "cpu":  # process-wide, like torch's own setting
        torch.set_num_threads(speed.threads or cpu_threads()[0])


@functools.lru_cache(maxsize=1)
def cpu_threads() -> tuple[int, str]:
    """(threads, why): OMP_NUM_THREADS when set, else torch's default less the cores other processes keep busy.

    Decided once per process, before the run's own work shows up in the CPU counters.
    """
    default = torch.get_num_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        return default, "OMP_NUM_THREADS"
    # the smaller of a 0.1 s sample and the 1-minute load: a blip, or a job that has just ended, does not cost
    # a quiet machine its threads, while sustained contention shows in both
    busy = min((b for b in (busy_cores(), _load_1m()) if b is not None), default=None)
    if busy is None:
        return default, "all cores (load unknown)"
    threads = max(1, min(default, round(default - busy)))
    return threads, f"{busy:.1f} of {os.cpu_count()} cores busy"


def _load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


def busy_cores(seconds: float = 0.1) -> float | None:
    """Cores kept busy by all processes over a short sample of /proc/stat (Linux); None where it cannot be read."""

    def sample():
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total and idle + iowait jiffies (guest time is in user)

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / (total1 - total0))


def prepare(vqgan, perceptors, fast: FastPath) -> None:
    """Apply the model-side switches in place (memory layout, checkpointing, compilation); idempotent."""
    fmt = torch.channels_last if fast.channels_last else torch.contiguous_format
    vqgan.to(memory_format=fmt)
    for p in perceptors:
        p.to(memory_format=fmt)
        p.set_fused(fast.clip_fused)
    vqgan.set_checkpointing(fast.checkpoint)
    vqgan.set_fused_attention(fast.fused_attention)
    bf16.keep([vqgan.decoder, vqgan.post_quant_conv], fast.bf16_weights and fast.decoder_bf16)
    bf16.keep([p.model.visual for p in perceptors], fast.bf16_weights and fast.clip_bf16)
    if fast.compile:
        vqgan.decoder = _compiled(vqgan.decoder, fast.compile_mode)
        for p in perceptors:  # CLIP's image tower, the part that runs every step
            p.model.visual = _compiled(p.model.visual, fast.compile_mode)


def _compiled(module: torch.nn.Module, mode: str) -> torch.nn.Module:
    """module compiled with mode; a module already compiled is compiled again only for another mode."""
    if hasattr(module, "_orig_mod") and module.__dict__.get("_vqclip_compile_mode", "default") == mode:
        return module
    compiled = torch.compile(getattr(module, "_orig_mod", module), mode=mode)
    compiled.__dict__["_vqclip_compile_mode"] = mode  # on the wrapper: its setattr would write to the module
    return compiled
