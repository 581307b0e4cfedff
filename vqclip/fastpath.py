"""The fast path: the speed switches of a run, resolved for its device, and how they are applied.

`SpeedConfig` (in the run's config) says what the user asked for, with `None`/"auto" meaning "where it
pays"; `resolve` turns it into a `FastPath` of plain booleans for one device and image size. The loop reads
the FastPath; nothing else in vqclip decides about precision or memory layout.

Why each default is what it is:
- bf16, never fp16: the taming decoder's activations overflow fp16's range. Only on CUDA by default: on the
  CPU, autocast bf16 of CLIP measured 2-3x slower than fp32 (attention and layer norms fall back to slow
  kernels), so the CPU path stays fp32 unless asked (figures in BENCHMARKS.md).
- channels_last pays on tensor-core convolutions (CUDA); on the CPU it measured no faster for this decoder.
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
from dataclasses import dataclass

import torch

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
    bf16 = speed.precision == "bf16" or speed.precision == "auto" and cuda and torch.cuda.is_bf16_supported()
    return FastPath(
        decoder_bf16=bf16,
        clip_bf16=bf16,
        channels_last=cuda if speed.channels_last is None else speed.channels_last,
        fused_optim=cuda if speed.fused_optim is None else speed.fused_optim and device.type != "mps",
        compile=speed.compile,
        compile_mode=speed.compile_mode if speed.compile else "default",
        checkpoint=0 < speed.checkpoint_pixels < width * height,
        fused_attention=speed.fused_attention,
    )


def prepare(vqgan, perceptors, fast: FastPath) -> None:
    """Apply the model-side switches in place (memory layout, checkpointing, compilation); idempotent."""
    fmt = torch.channels_last if fast.channels_last else torch.contiguous_format
    vqgan.to(memory_format=fmt)
    for p in perceptors:
        p.to(memory_format=fmt)
    vqgan.set_checkpointing(fast.checkpoint)
    vqgan.set_fused_attention(fast.fused_attention)
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
