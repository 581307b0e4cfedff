"""Small differentiable operations of the VQGAN+CLIP loop."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


class _ReplaceGrad(torch.autograd.Function):
    """Forward x_forward, backward into x_backward: the straight-through estimator."""

    @staticmethod
    def forward(ctx, x_forward, x_backward):
        ctx.shape = x_backward.shape
        return x_forward

    @staticmethod
    def backward(ctx, grad_in):
        return None, grad_in.sum_to_size(ctx.shape)


replace_grad = _ReplaceGrad.apply


class _ClampWithGrad(torch.autograd.Function):
    """Clamp in the forward pass; in the backward pass let through gradients that point back into range."""

    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad_in):
        (x,) = ctx.saved_tensors
        # keep the gradient where it is inside the range or would move x towards it
        keep = (grad_in * (x - x.clamp(ctx.lo, ctx.hi)) >= 0).to(grad_in.dtype)
        return grad_in * keep, None, None


def clamp_with_grad(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return _ClampWithGrad.apply(x, lo, hi)


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each vector of z [..., D]."""
    flat = z.reshape(-1, z.shape[-1])
    # in fp32 even under autocast: bf16 distances would pick the wrong neighbour for close codes
    with _no_autocast(z.device):
        # ||z||^2 - 2 z.c + ||c||^2; the first term is constant per row so argmin ignores it
        d = codebook.float().pow(2).sum(1) - 2 * flat.float() @ codebook.float().T
    return d.argmin(dim=1).view(z.shape[:-1])


def _no_autocast(device: torch.device):
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def vector_quantize(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Straight-through quantisation of z [..., D]: forward uses the nearest code, gradient flows to z."""
    # an embedding gather, not a one-hot matmul: O(N*D) instead of O(N*K*D)
    zq = F.embedding(nearest_codes(z, codebook), codebook)
    return replace_grad(zq, z)


def spherical_dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between the directions of x and y (last dim), as in the CLIP-guided notebooks."""
    x = F.normalize(x, dim=-1)
    y = F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
