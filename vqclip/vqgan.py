"""The VQGAN: taming-transformers' autoencoder and quantiser behind one small wrapper. Every taming quirk lives here.

- Built from `taming.modules` (never `taming.models.vqgan`, which imports Lightning code removed in PL 2.x); its
  training loss is never constructed (it downloads LPIPS/VGG weights).
- VectorQuantizer2 and GumbelQuantize checkpoints both load; a transformer checkpoint's first stage too.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .checkpoint import load_checkpoint
from .errors import CheckpointError, ConfigError, ModelFilesMissing
from .ops import nearest_codes, vector_quantize

__all__ = ["VQGAN", "VQGANSpec", "build_vqgan", "load_vqgan", "read_vqgan_yaml"]


@dataclass
class VQGANSpec:
    """What vqclip reads from a taming yaml: the autoencoder shape and the quantiser kind."""

    ddconfig: dict
    n_embed: int
    embed_dim: int
    gumbel: bool = False
    kl_weight: float = 5e-4

    @property
    def factor(self) -> int:
        """Downsampling factor: image side / latent side."""
        return 2 ** (len(self.ddconfig["ch_mult"]) - 1)


# what a config may ask vqclip to build: far above every published VQGAN (ch 128, ch_mult of 5, 2 res blocks,
# 16384 codes of 256), far below what would exhaust memory or time before the memory estimate can refuse
LIMITS = {
    "ch": 4096,
    "z_channels": 4096,
    "num_res_blocks": 64,
    "resolution": 2**16,
    "in_channels": 64,
    "out_ch": 64,
    "n_embed": 2**22,
    "embed_dim": 4096,
}
MAX_LEVELS = 10  # len(ch_mult): a factor of 2**9 = 512
MAX_YAML_BYTES = 2**20


def read_vqgan_yaml(path: str | os.PathLike) -> VQGANSpec:
    """Parse the model section of a taming yaml (the lossconfig and data sections are ignored).

    The file is data only: no OmegaConf interpolation is resolved (a `${oc.env:SECRET}` is refused, never read),
    no aliases are expanded, and the sizes it asks for are bounded (LIMITS) before anything is built.
    """
    from .files import read_regular
    from .safe_yaml import load_yaml, refuse_interpolation

    try:
        text = read_regular(
            path, "VQGAN config", "give the model's taming yaml", ModelFilesMissing, MAX_YAML_BYTES
        ).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a taming VQGAN config (not UTF-8 text)") from None
    cfg = load_yaml(text, str(path))
    refuse_interpolation(cfg, str(path))
    try:
        model = cfg["model"]
        if "first_stage_config" in model["params"]:  # a whole Net2NetTransformer: its first stage is the VQGAN
            model = model["params"]["first_stage_config"]
        params = model["params"]
        ddconfig = dict(params["ddconfig"])
        spec = VQGANSpec(
            ddconfig=ddconfig,
            n_embed=_count(params["n_embed"]),
            embed_dim=_count(params["embed_dim"]),
            gumbel="Gumbel" in str(model.get("target", "")),
            kl_weight=float(params.get("kl_weight", 5e-4)),
        )
        for key in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "resolution"):
            ddconfig[key]
    except Exception as e:  # noqa: BLE001 - key and type errors all mean "not a taming config"
        raise ConfigError(f"{path} is not a taming VQGAN config ({type(e).__name__}: {str(e)[:80]})") from None
    _check_limits(spec, path)
    return spec


def _count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {value!r:.40}")
    return value


def _check_limits(spec: VQGANSpec, path) -> None:
    """Every size the config asks for is a whole number within LIMITS, so building it (even on meta) is bounded."""
    dd = spec.ddconfig
    sizes = {
        "n_embed": spec.n_embed,
        "embed_dim": spec.embed_dim,
        **{k: dd[k] for k in LIMITS if k in dd and k not in ("n_embed", "embed_dim")},
    }
    mult, attn = dd["ch_mult"], dd["attn_resolutions"]
    if not (isinstance(mult, list) and 1 <= len(mult) <= MAX_LEVELS and isinstance(attn, list)):
        raise ConfigError(
            f"{path}: ddconfig.ch_mult must list 1 to {MAX_LEVELS} levels and attn_resolutions be a "
            f"list; this is not a VQGAN vqclip can build"
        )
    sizes.update({f"ch_mult[{k}]": m for k, m in enumerate(mult)})
    for key, value in sizes.items():
        limit = LIMITS.get(key.split("[")[0], 64)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ConfigError(
                f"{path}: {key} = {value!r:.40} is not a whole number from 1 to {limit}; this is not "
                f"a VQGAN vqclip can build"
            )
    if not all(isinstance(r, int) and not isinstance(r, bool) for r in attn):
        raise ConfigError(f"{path}: ddconfig.attn_resolutions must be whole numbers")


class VQGAN(nn.Module):
    """The parts of a taming VQModel/GumbelVQ that generation needs: encoder, quantiser, decoder."""

    def __init__(self, spec: VQGANSpec):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2

        self.spec = spec
        dd = spec.ddconfig
        with contextlib.redirect_stdout(io.StringIO()):  # taming prints shapes while building
            self.encoder = Encoder(**dd)
            self.decoder = Decoder(**dd)
        self.quant_conv = nn.Conv2d(dd["z_channels"], spec.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(spec.embed_dim, dd["z_channels"], 1)
        if spec.gumbel:
            self.quantize = GumbelQuantize(
                dd["z_channels"], spec.embed_dim, n_embed=spec.n_embed, kl_weight=spec.kl_weight, temp_init=1.0
            )
        else:
            self.quantize = VectorQuantizer2(spec.n_embed, spec.embed_dim, beta=0.25)

    @property
    def factor(self) -> int:
        return self.spec.factor

    @property
    def codebook(self) -> torch.Tensor:
        """[n_embed, embed_dim]: the rows the latent is quantised to."""
        return self.quantize.embed.weight if self.spec.gumbel else self.quantize.embedding.weight

    def decode(self, zq: torch.Tensor) -> torch.Tensor:
        """Quantised latent [B, D, h, w] -> image in [-1, 1] (roughly; the decoder is not bounded)."""
        return self.decoder(self.post_quant_conv(zq))

    def decode_quantized(self, z: torch.Tensor) -> torch.Tensor:
        """Continuous latent -> straight-through quantised -> image: the differentiable path of the loop."""
        zq = vector_quantize(z.movedim(1, 3), self.codebook).movedim(3, 1)
        return self.decode(zq)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] [B, 3, H, W] -> quantised latent [B, D, H/f, W/f]."""
        h = self.quant_conv(self.encoder(x))
        if self.spec.gumbel:  # GumbelVQ: the projection's logits pick the code
            codes = self.quantize.proj(h).argmax(dim=1)
        else:
            codes = nearest_codes(h.movedim(1, 3), self.codebook)
        return self.codes_to_latent(codes)

    def codes_to_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Token indices [B, h, w] -> latent [B, D, h, w] (what upstream's broken decode_code meant to do)."""
        return F.embedding(codes, self.codebook).movedim(3, 1)

    def set_fused_attention(self, enabled: bool) -> None:
        """Run the attention blocks through a fused SDPA kernel (enabled) or taming's own bmm/softmax code."""
        from taming.modules.diffusionmodules.model import AttnBlock

        for module in self.modules():
            if isinstance(module, AttnBlock):
                module.__dict__.pop("forward", None)  # back to the class's forward
                if enabled:
                    module.forward = functools.partial(_fused_attention_forward, module)

    def checkpointable_blocks(self, levels: int = 2) -> list[nn.Module]:
        """The residual blocks of the decoder's `levels` highest-resolution levels (taming's up[0] runs at full
        resolution): the ones `set_checkpointing` recomputes."""
        return [block for level in list(self.decoder.up)[:levels] for block in level.block]

    def set_checkpointing(self, enabled: bool, levels: int = 2) -> None:
        """Recompute `checkpointable_blocks` in the backward pass instead of keeping their activations."""
        for level in self.decoder.up:
            for block in level.block:
                block.__dict__.pop("forward", None)  # back to the class's forward
        if enabled:
            for block in self.checkpointable_blocks(levels):
                block.forward = functools.partial(_checkpointed, type(block).forward.__get__(block))


def _fused_attention_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """taming's AttnBlock.forward with the same maths through F.scaled_dot_product_attention, which picks a
    fused kernel (flash/memory-efficient) that never keeps the [hw, hw] attention matrix for the backward."""
    h = block.norm(x)
    b, c, height, width = x.shape
    # [B, hw, C] with unit stride on C (fused kernels fall back to the matrix otherwise); free if channels_last
    q, k, v = (conv(h).flatten(2).transpose(1, 2).contiguous().unsqueeze(1) for conv in (block.q, block.k, block.v))
    out = F.scaled_dot_product_attention(q, k, v)
    return x + block.proj_out(out.squeeze(1).transpose(1, 2).reshape(b, c, height, width))


def _checkpointed(forward, *args):
    if not torch.is_grad_enabled():
        return forward(*args)
    return checkpoint(forward, *args, use_reentrant=False)


# keys of a taming checkpoint that generation never uses
_IGNORED_PREFIXES = ("loss.",)
_FIRST_STAGE = "first_stage_model."  # transformer checkpoints keep the VQGAN under this prefix


def _vqgan_part(state_dict: dict) -> dict:
    """The VQGAN's own keys; a transformer checkpoint's first stage with its prefix taken off."""
    if any(k.startswith(_FIRST_STAGE) for k in state_dict):
        return {k[len(_FIRST_STAGE) :]: v for k, v in state_dict.items() if k.startswith(_FIRST_STAGE)}
    return state_dict


def build_vqgan(spec: VQGANSpec, state_dict: Optional[dict] = None, name: str = "VQGAN") -> VQGAN:
    """Build the model; with a state dict, every key must fit (no silent strict=False garbage)."""
    if state_dict is None:
        return VQGAN(spec)
    with torch.device("meta"):  # no random init of weights the state dict replaces (~0.5 s CPU for f16_16384)
        model = VQGAN(spec)
    state = {k: v for k, v in _vqgan_part(state_dict).items() if not k.startswith(_IGNORED_PREFIXES)}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: checkpoint {tuple(state[k].shape)} "
                f"vs config {tuple(own[k].shape)})"
            )
        raise CheckpointError(
            f"the checkpoint of {name} does not fit its config: {'; '.join(parts)}; "
            f"check that the yaml and ckpt belong together"
        )
    # the checkpoint's tensors become the weights (no copy), in the dtype the model declares
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, assign=True)
    return model


def load_vqgan(
    config_path: str | os.PathLike,
    ckpt_path: Optional[str | os.PathLike],
    device: torch.device | str = "cpu",
    name: Optional[str] = None,
    spec: Optional[VQGANSpec] = None,
) -> VQGAN:
    """Load a taming yaml + checkpoint pair, frozen and in eval mode. ckpt_path None gives random weights.

    `spec` is the yaml already read (a Plan holds it), so the file is not parsed twice.
    """
    spec = spec or read_vqgan_yaml(config_path)
    name = name or Path(config_path).stem
    state = load_checkpoint(ckpt_path, f"VQGAN checkpoint of {name}") if ckpt_path is not None else None
    model = build_vqgan(spec, state, name)
    return model.eval().requires_grad_(False).to(device)
