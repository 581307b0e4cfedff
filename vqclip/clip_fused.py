"""CLIP's image tower through fused forwards: open_clip's maths in fewer, larger kernels (part of clip.py's wrapper).

Why each one pays (ViT-B/32, 8 cutouts, forward + input-gradient backward, one CPU thread; BENCHMARKS.md):
- Attention: open_clip's blocks call `nn.MultiheadAttention(batch_first=True)`, which transposes its input to
  [L, N, D] before the input projection. A linear layer on that strided view runs as L small batched products
  against the weight expanded L times (and under CPU bf16 autocast that expanded weight is copied: 2.5x slower
  than fp32). Projecting the contiguous [N, L, D] input in one matmul and calling SDPA is the same maths.
- In bf16 on the CPU, attention over a short sequence is a plain matmul + softmax (see `_SHORT`).
- Patch embedding: a convolution whose kernel equals its stride is one matmul over the flattened patches;
  oneDNN's backward of that convolution (the input gradient the loop needs) is a slow path.
Blocks that do not have the expected shape (cross-attention, masks, other towers) keep open_clip's forward.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from . import bf16

__all__ = ["fused_modules", "set_fused"]


# up to this many tokens, CPU bf16 attention runs as a plain matmul + softmax: SDPA's CPU kernel measured 1.5x
# slower for ViT-B/32's 50 tokens in bf16 (equal in fp32); the [L, L] matrix it keeps is small at these lengths
_SHORT = 256


def _attention(block: nn.Module, q_x: torch.Tensor, k_x=None, v_x=None, attn_mask=None) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock.attention for self-attention without a mask, on [N, L, D]."""
    if k_x is not None or v_x is not None or attn_mask is not None:
        return type(block).attention(block, q_x, k_x, v_x, attn_mask)
    mha = block.attn
    n, length, d = q_x.shape
    heads = mha.num_heads
    qkv = F.linear(q_x, bf16.weight(mha, "in_proj_weight", q_x), bf16.weight(mha, "in_proj_bias", q_x))  # one matmul
    q, k, v = qkv.view(n, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)  # [N, heads, L, d/heads]
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and length <= _SHORT and not mha.training:
        out = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
    else:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=mha.dropout if mha.training else 0.0)
    return mha.out_proj(out.transpose(1, 2).reshape(n, length, d))


def _patch_embedding(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x) for a convolution with kernel == stride and no padding, as one matmul over flattened patches."""
    n, c, h, w = x.shape
    kh, kw = conv.kernel_size
    if h % kh or w % kw:  # the convolution would drop the remainder; keep its own code for that case
        return type(conv).forward(conv, x)
    patches = x.view(n, c, h // kh, kh, w // kw, kw).permute(0, 2, 4, 1, 3, 5).reshape(n, h // kh, w // kw, -1)
    w = bf16.weight(conv, "weight", x)
    out = F.linear(patches, w.reshape(conv.out_channels, -1), bf16.weight(conv, "bias", x))
    return out.permute(0, 3, 1, 2)  # [N, D, h/k, w/k] as the convolution returns it (a view)


def _fusable_attention(block: nn.Module) -> bool:
    mha = getattr(block, "attn", None)
    return (
        isinstance(mha, nn.MultiheadAttention)
        and callable(getattr(type(block), "attention", None))
        and mha.batch_first
        and mha._qkv_same_embed_dim
        and mha.bias_k is None
        and not mha.add_zero_attn
    )


def _fusable_patches(conv) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == conv.stride
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


def fused_modules(visual: nn.Module) -> list[nn.Module]:
    """The modules of an open_clip image tower that `set_fused` replaces the forward of."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", [])
    found = [b for b in blocks if _fusable_attention(b)]
    conv = getattr(visual, "conv1", None)
    return found + ([conv] if _fusable_patches(conv) else [])


def set_fused(visual: nn.Module, enabled: bool) -> None:
    """Run visual's attention blocks and patch embedding through the fused forwards (enabled) or open_clip's."""
    for module in fused_modules(visual):
        name = "forward" if isinstance(module, nn.Conv2d) else "attention"
        module.__dict__.pop(name, None)  # back to the class's method
        if enabled:
            fn = _patch_embedding if name == "forward" else _attention
            setattr(module, name, functools.partial(fn, module))
