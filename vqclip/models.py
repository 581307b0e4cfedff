"""VQGAN and CLIP behind two small wrappers. Every quirk of taming-transformers and open_clip lives here.

- The VQGAN is built from `taming.modules` (never `taming.models.vqgan`, which imports Lightning code removed
  in PL 2.x) and its training loss is never constructed (it downloads LPIPS/VGG weights).
- Official checkpoints are Lightning pickles; they are read with `weights_only=True` and one allowlisted
  stand-in for the ModelCheckpoint class their callbacks are keyed by. Anything else pickled is refused.
- open_clip is imported lazily so that offline mode (HF_HUB_OFFLINE) can be set before huggingface_hub loads.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import pickle
import struct
import warnings
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import CheckpointError, ConfigError, DownloadError, ModelFilesMissing, UsageError, first_line
from .ops import nearest_codes, vector_quantize

# ---------------------------------------------------------------------------------------------------------
# checkpoints


class _ModelCheckpointStandIn:
    """Stands in for pytorch_lightning's ModelCheckpoint, whose class keys the callbacks of official ckpts."""


# the only globals a checkpoint may name beyond plain tensors and containers
_LIGHTNING_GLOBALS = [
    (_ModelCheckpointStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
]


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """Read a .ckpt/.pt/.pth or .safetensors file safely and return its state dict."""
    path = Path(path)
    if not path.is_file():
        raise ModelFilesMissing(f"{what} file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{what} {path} is corrupt or truncated ({e}); download it again") from None
    try:
        # a corrupt file can make torch warn (e.g. about an unknown pickle protocol) before it fails
        with torch.serialization.safe_globals(_LIGHTNING_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "not an allowed global" in str(e) or "GLOBAL" in str(e):
            raise CheckpointError(
                f"{what} {path} was refused: it pickles Python objects beyond tensors "
                f"({first_line(e)}), and loading it could run arbitrary code; use a trusted file") from None
        raise CheckpointError(f"{what} {path} is corrupt or truncated ({first_line(e)}); download it again") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError,
            # random bytes read as pickle opcodes fail in many more ways
            IndexError, KeyError, TypeError, AttributeError, UnicodeDecodeError, OverflowError, MemoryError,
            struct.error) as e:
        raise CheckpointError(f"{what} {path} is corrupt or truncated ({first_line(e)}); download it again") from None
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict) or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{what} {path} holds no state dict of tensors")
    return ckpt


# ---------------------------------------------------------------------------------------------------------
# VQGAN


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


def read_vqgan_yaml(path: str | os.PathLike) -> VQGANSpec:
    """Parse the model section of a taming yaml (the lossconfig and data sections are ignored)."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        model = cfg["model"]
        if "first_stage_config" in model["params"]:  # a whole Net2NetTransformer: its first stage is the VQGAN
            model = model["params"]["first_stage_config"]
        params = model["params"]
        ddconfig = dict(params["ddconfig"])
        spec = VQGANSpec(ddconfig=ddconfig, n_embed=int(params["n_embed"]), embed_dim=int(params["embed_dim"]),
                         gumbel="Gumbel" in str(model.get("target", "")),
                         kl_weight=float(params.get("kl_weight", 5e-4)))
        for key in ("ch", "ch_mult", "num_res_blocks", "attn_resolutions", "z_channels", "resolution"):
            ddconfig[key]
    except FileNotFoundError:
        raise ModelFilesMissing(f"VQGAN config {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - yaml, key and type errors all mean "not a taming config"
        raise ConfigError(f"{path} is not a taming VQGAN config ({type(e).__name__}: {e})") from None
    return spec


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
            self.quantize = GumbelQuantize(dd["z_channels"], spec.embed_dim, n_embed=spec.n_embed,
                                           kl_weight=spec.kl_weight, temp_init=1.0)
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
        return {k[len(_FIRST_STAGE):]: v for k, v in state_dict.items() if k.startswith(_FIRST_STAGE)}
    return state_dict


def build_vqgan(spec: VQGANSpec, state_dict: Optional[dict] = None, name: str = "VQGAN") -> VQGAN:
    """Build the model; with a state dict, every key must fit (no silent strict=False garbage)."""
    model = VQGAN(spec)
    if state_dict is None:
        return model
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
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: checkpoint {tuple(state[k].shape)} "
                         f"vs config {tuple(own[k].shape)})")
        raise CheckpointError(f"the checkpoint of {name} does not fit its config: {'; '.join(parts)}; "
                              f"check that the yaml and ckpt belong together")
    model.load_state_dict(state)
    return model


def load_vqgan(config_path: str | os.PathLike, ckpt_path: Optional[str | os.PathLike],
               device: torch.device | str = "cpu", name: Optional[str] = None) -> VQGAN:
    """Load a taming yaml + checkpoint pair, frozen and in eval mode. ckpt_path None gives random weights."""
    spec = read_vqgan_yaml(config_path)
    name = name or Path(config_path).stem
    state = load_checkpoint(ckpt_path, f"VQGAN checkpoint of {name}") if ckpt_path is not None else None
    model = build_vqgan(spec, state, name)
    return model.eval().requires_grad_(False).to(device)


# ---------------------------------------------------------------------------------------------------------
# CLIP


class Perceptor(nn.Module):
    """A CLIP model with its own input size and normalisation; takes images in [0, 1]."""

    def __init__(self, model: nn.Module, tokenizer, mean: Sequence[float], std: Sequence[float], name: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, S, S] in [0, 1] at the model's input size -> embeddings [N, D] (not normalised)."""
        return self.model.encode_image((images - self.mean) / self.std)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.mean.device)
        return self.model.encode_text(tokens).float()

    def count_tokens(self, text: str) -> int:
        """Number of BPE tokens (with start/end) the text needs; CLIP truncates past its context length."""
        encode = getattr(self.tokenizer, "encode", None)
        return len(encode(text)) + 2 if encode else 0

    @property
    def context_length(self) -> int:
        return int(getattr(self.model, "context_length", 77))

    @property
    def logit_scale(self) -> float:
        """The learned temperature CLIP multiplies cosine similarities by before a softmax (100 for OpenAI's)."""
        scale = getattr(self.model, "logit_scale", None)
        # capped at 100 as CLIP's training caps it; a checkpoint may hold a larger raw value
        return min(float(scale.exp()), 100.0) if scale is not None else 100.0


@dataclass(frozen=True)
class ClipSpec:
    """A parsed CLIP spec: an open_clip model name plus a pretrained tag, a weights file, or nothing."""

    model: str
    pretrained: Optional[str] = None  # tag, file path, or None for a local-dir model
    random: bool = False  # random weights: benchmarks only

    def __str__(self) -> str:
        return f"{self.model}:{self.pretrained}" if self.pretrained else self.model


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.endswith((".pt", ".pth", ".bin", ".safetensors"))


def parse_clip_spec(spec: str) -> ClipSpec:
    """NAME, NAME:TAG, NAME:/path/to/weights, local-dir:DIR or NAME:random."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty CLIP spec; use e.g. ViT-B-32-quickgelu:openai")
    if spec.startswith(("local-dir:", "hf-hub:")):
        return ClipSpec(spec)
    name, sep, rest = spec.partition(":")
    if not sep:
        return ClipSpec(name)
    if rest == "random":
        return ClipSpec(name, None, random=True)
    return ClipSpec(name, rest)


def _offline() -> bool:
    return os.environ.get("VQCLIP_OFFLINE", "") not in ("", "0")


def _open_clip():
    if _offline():
        # must be set before huggingface_hub is first imported, or it retries the network for ~47 s
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if "huggingface_hub" in sys.modules:  # imported already: it read the variable then, so tell it now
            sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    import open_clip

    return open_clip


def register_clip_architectures(folder: str | os.PathLike) -> None:
    """Make open_clip model configs (*.json) in folder loadable by name, e.g. as `NAME:random`."""
    _open_clip().add_model_config(Path(folder))


def check_clip(spec: str | ClipSpec) -> tuple[ClipSpec, Optional[str]]:
    """Check a CLIP spec without loading weights: a known name and tag, or files that exist.

    Returns the parsed spec and the pretrained tag or file to load.
    """
    cs = parse_clip_spec(spec) if isinstance(spec, str) else spec
    name = cs.model
    if name.startswith("local-dir:"):
        d = Path(name.split(":", 1)[1])
        if not (d / "open_clip_config.json").is_file():
            raise ModelFilesMissing(f"CLIP folder {d} has no open_clip_config.json; "
                                    f"it needs open_clip_config.json and the weights beside it")
        return cs, cs.pretrained
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        from .errors import UnknownNameError

        raise UnknownNameError("CLIP model", name, open_clip.list_models())
    pretrained = cs.pretrained
    if pretrained is None and not cs.random and not name.startswith(("local-dir:", "hf-hub:")):
        tags = open_clip.list_pretrained_tags_by_model(name)
        pretrained = "openai" if "openai" in tags else (tags[0] if tags else None)
    if pretrained and _looks_like_path(pretrained) and not Path(pretrained).is_file():
        raise ModelFilesMissing(f"CLIP weights file {pretrained} does not exist")
    if pretrained and not _looks_like_path(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            from .errors import UnknownNameError

            raise UnknownNameError(f"pretrained tag for {name}", pretrained, tags)
    return cs, pretrained


def load_clip(spec: str | ClipSpec, device: torch.device | str = "cpu", cache_dir: Optional[str] = None) -> Perceptor:
    """Load a CLIP model through open_clip (its registry, tags and cache), frozen, with its mean/std."""
    cs, pretrained = check_clip(spec)
    open_clip = _open_clip()
    name = cs.model
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device="cpu", cache_dir=cache_dir, load_weights=not cs.random)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        why = "offline mode forbids downloading them" if _offline() else first_line(e)
        raise ModelFilesMissing(
            f"CLIP weights for {cs} are not in {cache_dir or 'the default cache'} ({why}); provide "
            f"{clip_weights_source(open_clip, name, pretrained)}: run `vqclip models download clip:{cs}` on a "
            f"machine with internet, or pass --clip {name}:/path/to/that/file") from None
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"CLIP {cs} could not be built from its files ({first_line(e)})") from None
    mean, std = _preprocess_mean_std(model, preprocess)
    tokenizer = open_clip.get_tokenizer(name)
    perceptor = Perceptor(model, tokenizer, mean, std, str(cs))
    return perceptor.eval().requires_grad_(False).to(device)


def meta_clip(spec: str | ClipSpec) -> Perceptor:
    """The CLIP model of spec built on the `meta` device (shapes only, no weights read, no memory used), for
    memory estimates. Raises the same errors as `check_clip` for an unknown name."""
    cs, _ = check_clip(spec)
    open_clip = _open_clip()
    logger = logging.getLogger()  # open_clip warns on the root logger that no pretrained weights were loaded
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        model = open_clip.create_model(cs.model, pretrained=None, load_weights=False, device="meta")
    finally:
        logger.setLevel(level)
    return Perceptor(model, None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), str(cs)).requires_grad_(False).to("meta")


def clip_weights_source(open_clip, name: str, tag: Optional[str]) -> str:
    """The file open_clip fetches for name:tag, and where from (for messages that say what to provide)."""
    cfg = open_clip.get_pretrained_cfg(name, tag) if tag and not _looks_like_path(tag) else {}
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        return f"{filename or 'open_clip_pytorch_model.bin'} from https://huggingface.co/{repo}"
    return cfg.get("url") or f"the weights file of {name}"


def download_clip(spec: str | ClipSpec, cache_dir: Optional[str] = None) -> Path:
    """Fetch an open_clip NAME:TAG into cache_dir through open_clip's own download (its sources and checks)."""
    cs = parse_clip_spec(spec) if isinstance(spec, str) else spec
    if cs.random or not cs.pretrained or _looks_like_path(cs.pretrained) or cs.model.startswith(("local-dir:",)):
        raise UsageError(f"{cs} names no weights to download; use NAME:TAG, e.g. ViT-B-32-quickgelu:openai")
    if _offline():
        raise ModelFilesMissing(f"offline mode forbids downloading CLIP {cs}; unset VQCLIP_OFFLINE/--offline")
    open_clip = _open_clip()
    if cs.model not in open_clip.list_models():
        from .errors import UnknownNameError

        raise UnknownNameError("CLIP model", cs.model, open_clip.list_models())
    tags = open_clip.list_pretrained_tags_by_model(cs.model)
    if cs.pretrained not in tags:
        from .errors import UnknownNameError

        raise UnknownNameError(f"pretrained tag for {cs.model}", cs.pretrained, tags)
    try:
        path = open_clip.download_pretrained(open_clip.get_pretrained_cfg(cs.model, cs.pretrained), cache_dir=cache_dir)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise DownloadError(f"could not download CLIP {cs} ({first_line(e)}); try again later") from None
    return Path(path)


def _preprocess_mean_std(model, preprocess):
    visual = getattr(model, "visual", None)
    mean = getattr(visual, "image_mean", None)
    std = getattr(visual, "image_std", None)
    if mean is None or std is None:  # older open_clip: read them from the Normalize transform
        norm = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
        mean, std = norm.mean, norm.std
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
