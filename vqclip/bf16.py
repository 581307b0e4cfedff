"""bf16 copies of frozen weights for CPU autocast: the same maths as autocast, without its cast on every call.

Autocast casts each fp32 weight to bf16 every time a convolution or matmul runs, because it only caches casts
of weights that require a gradient; the loop's weights are frozen, so the cast is the same every step. For the
f16_16384 decoder and ViT-B/32 that is ~125M parameters a step (0.25 CPU seconds measured on one thread, ~7%
of a bf16 step). `keep(modules)` stores each weight's bf16 copy once and, while bf16 autocast is on, the
convolutions and linear layers use it; outside autocast (the quality guard's fp32 evaluator, prompt embedding)
they run on their fp32 weights as before.
"""

from __future__ import annotations

import functools
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["keep", "weight"]

_COPY = "_vqclip_bf16"  # module.__dict__ key: {parameter name: (parameter, its version, its bf16 copy)}


def _autocast_bf16(x: torch.Tensor) -> bool:
    kind = x.device.type
    return torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16


def weight(module: nn.Module, name: str, x: torch.Tensor):
    """module's parameter `name` as the op on x should see it: its kept bf16 copy under bf16 autocast, else itself."""
    param = getattr(module, name)
    copies = module.__dict__.get(_COPY)
    if param is None or copies is None or not _autocast_bf16(x):
        return param
    source, version, copy = copies.get(name, (None, None, None))
    if source is not param or version != param._version:  # replaced or changed in place since: copy it again
        copy = param.detach().to(torch.bfloat16)
        copies[name] = (param, param._version, copy)
    return copy


def _conv_forward(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if not _autocast_bf16(x):
        return type(conv).forward(conv, x)
    return conv._conv_forward(x.to(torch.bfloat16), weight(conv, "weight", x), weight(conv, "bias", x))


def _linear_forward(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if not _autocast_bf16(x):
        return type(linear).forward(linear, x)
    return F.linear(x.to(torch.bfloat16), weight(linear, "weight", x), weight(linear, "bias", x))


def _ours(m: nn.Module) -> bool:
    fn = m.__dict__.get("forward")
    return isinstance(fn, functools.partial) and fn.func in (_conv_forward, _linear_forward)


def keep(modules: Iterable[nn.Module], enabled: bool) -> None:
    """Give modules' convolutions, linear layers and attention input projections bf16 copies of their frozen
    weights (made on first use), or drop them. A layer whose forward someone else replaced (vqclip.clip_fused's
    patch embedding) keeps that forward, which reads its weights through `weight`."""
    for module in modules:
        for m in module.modules():
            m.__dict__.pop(_COPY, None)
            if _ours(m):
                m.__dict__.pop("forward")
            if not enabled or not isinstance(m, (nn.Conv2d, nn.Linear, nn.MultiheadAttention)):
                continue
            m.__dict__[_COPY] = {}
            plain = type(m).forward in (nn.Conv2d.forward, nn.Linear.forward) and "forward" not in m.__dict__
            if plain:
                m.forward = functools.partial(_conv_forward if isinstance(m, nn.Conv2d) else _linear_forward, m)
