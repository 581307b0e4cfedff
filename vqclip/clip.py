"""CLIP through open_clip behind one small wrapper that travels with its preprocessing. Every open_clip quirk
lives here.

- open_clip is imported lazily, so offline mode (HF_HUB_OFFLINE) is set before huggingface_hub loads: otherwise
  an offline `pretrained='openai'` retries the network for ~47 s.
- The model's input size and mean/std are read from the model (or, in older open_clip, its transforms) once.
- open_clip builds the architectures and fetches its tags; weights files (NAME:/path, local-dir:, OpenAI's
  TorchScript archives) are read by vqclip itself (vqclip.clip_weights), so open_clip's TorchScript loading
  (`open_clip.openai`, gone from its development branch) is never used. The open_clip names vqclip relies on
  are the ones `tests/test_clip.py` checks for.
"""

# size: every quirk of open_clip is absorbed here, as the house style asks (about 300 lines before ruff format)

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from . import clip_fused, openai_clip
from .clip_import import ensure_timm, import_open_clip
from .clip_weights import Weights, check_file, find_openai, load_weights, weights_in_dir
from .errors import CheckpointError, DownloadError, ModelFilesMissing, UnknownNameError, UsageError, first_line
from .offline import is_offline
from .skip_init import skipped_init

__all__ = [
    "ClipRef",
    "ClipSpec",
    "Perceptor",
    "check_clip",
    "download_clip",
    "load_clip",
    "meta_clip",
    "parse_clip_spec",
]


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

    def set_fused(self, enabled: bool) -> None:
        """Run the image tower's attention and patch embedding through fused forwards (the same maths; see
        vqclip.clip_fused) or open_clip's own."""
        clip_fused.set_fused(self.model.visual, enabled)

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
        text = f"{self.model}:{self.pretrained}" if self.pretrained else self.model
        return f"{text}:random" if self.random else text


@dataclass(frozen=True)
class ClipRef:
    """A checked CLIP spec: the model open_clip builds and the weights it reads (a tag, a checked file or none).

    `check_clip` makes one without loading anything; `load_clip` and `meta_clip` take it as it is, so a run
    checks each CLIP once.
    """

    spec: ClipSpec
    pretrained: Optional[str]  # an open_clip tag it fetches and loads itself, or the file named in the spec
    weights: Optional[Weights] = None  # a file vqclip reads itself (paths, local-dir, OpenAI archives)

    def __str__(self) -> str:
        return str(self.spec)

    @property
    def build(self) -> str:
        """The open_clip architecture to build (an OpenAI archive's is its QuickGELU variant)."""
        return self.weights.build if self.weights else self.spec.model


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or s.endswith((".pt", ".pth", ".bin", ".safetensors"))


def parse_clip_spec(spec: str) -> ClipSpec:
    """NAME, NAME:TAG, NAME:/path/to/weights, NAME:random, local-dir:DIR or local-dir:DIR:random."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty CLIP spec; use e.g. ViT-B-32-quickgelu:openai")
    if spec.startswith(("local-dir:", "hf-hub:")):
        random = spec.endswith(":random")
        return ClipSpec(spec.removesuffix(":random") if random else spec, random=random)
    name, sep, rest = spec.partition(":")
    if not sep:
        return ClipSpec(name)
    if rest == "random":
        return ClipSpec(name, None, random=True)
    return ClipSpec(name, rest)


def _open_clip():
    if is_offline():
        # must be set before huggingface_hub is first imported, or it retries the network for ~47 s
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if "huggingface_hub" in sys.modules:  # imported already: it read the variable then, so tell it now
            sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    return import_open_clip()


def register_clip_architectures(folder: str | os.PathLike) -> None:
    """Make open_clip model configs (*.json) in folder loadable by name, e.g. as `NAME:random`."""
    _open_clip().add_model_config(Path(folder))


def _check_local_dir(cs: ClipSpec, ckpt_dir: Optional[str]) -> ClipRef:
    d = Path(cs.model.split(":", 1)[1]).expanduser()
    if not (d / "open_clip_config.json").is_file():
        raise ModelFilesMissing(
            f"CLIP folder {d} has no open_clip_config.json; it needs open_clip_config.json and the weights beside it"
        )
    if cs.random:
        return ClipRef(cs, None)
    found = weights_in_dir(d)
    if found is None:  # open_clip would build it with random weights and only log a warning
        raise ModelFilesMissing(
            f"CLIP folder {d} has open_clip_config.json but no weights "
            f"(open_clip_model.safetensors or open_clip_pytorch_model.bin); put them beside "
            f"it, or use --clip local-dir:{d}:random for random weights"
        )
    return ClipRef(cs, None, check_file(found, cs.model, ckpt_dir))


def check_clip(spec: str | ClipSpec | ClipRef, ckpt_dir: Optional[str] = None) -> ClipRef:
    """Check a CLIP spec without loading weights: a known name and tag, or files that exist and fit the name.

    An OpenAI archive's hash is checked here (once: the lock keeps it); NAME:openai uses OpenAI's weights already
    on disk (their cache, an imported archive or ~/.cache/clip) before open_clip's own download.
    """
    if isinstance(spec, ClipRef):
        return spec
    cs = parse_clip_spec(spec) if isinstance(spec, str) else spec
    name = cs.model
    if name.startswith("local-dir:"):
        return _check_local_dir(cs, ckpt_dir)
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise UnknownNameError("CLIP model", name, open_clip.list_models())
    if cs.random:
        return ClipRef(cs, None)
    pretrained = cs.pretrained
    if pretrained is None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        pretrained = "openai" if "openai" in tags else (tags[0] if tags else None)
    if pretrained and _looks_like_path(pretrained):
        if not Path(pretrained).expanduser().is_file():
            raise ModelFilesMissing(f"CLIP weights file {pretrained} does not exist")
        return ClipRef(cs, pretrained, check_file(pretrained, name, ckpt_dir))
    found = find_openai(name, ckpt_dir) if pretrained == "openai" else None
    if pretrained and found is None:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise UnknownNameError(f"pretrained tag for {name}", pretrained, tags)
    return ClipRef(cs, pretrained, found)


def _quiet_create(open_clip, name: str, **kwargs):
    """open_clip.create_model without weights, minus its root-logger warning that none were loaded."""
    ensure_timm(open_clip, name)
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return open_clip.create_model(name, pretrained=None, load_weights=False, **kwargs)
    finally:
        logger.setLevel(level)


def load_clip(
    spec: str | ClipSpec | ClipRef,
    device: torch.device | str = "cpu",
    cache_dir: Optional[str] = None,
    ckpt_dir: Optional[str] = None,
) -> Perceptor:
    """Load a CLIP model, frozen, with its mean/std: weights files vqclip reads itself (see vqclip.clip_weights),
    open_clip tags through open_clip's registry, sources and cache (cache_dir)."""
    ref = check_clip(spec, ckpt_dir)
    cs, open_clip = ref.spec, _open_clip()
    if ref.weights is not None or cs.random:
        # weights read from a file are loaded strictly (every one is replaced): skip their random init
        with skipped_init() if ref.weights is not None else contextlib.nullcontext():
            model = _quiet_create(open_clip, ref.build, device="cpu")
        if ref.weights is not None:
            load_weights(model, ref.weights, cs.model)
        mean, std = _preprocess_mean_std(model, None)
    else:
        model, mean, std = _from_tag(open_clip, ref, cache_dir)
    if ref.weights is not None and ref.weights.openai:
        mean, std = openai_clip.MEAN, openai_clip.STD
    tokenizer = open_clip.get_tokenizer(ref.build)
    perceptor = Perceptor(model, tokenizer, mean, std, str(cs))
    return perceptor.eval().requires_grad_(False).to(device)


def _from_tag(open_clip, ref: ClipRef, cache_dir: Optional[str]):
    """NAME:TAG through open_clip's own download and load; failures named by their cause."""
    cs, name, pretrained = ref.spec, ref.spec.model, ref.pretrained
    try:
        # a tag's weights are loaded strictly by open_clip: skip their random init (none without a tag)
        ensure_timm(open_clip, name)
        with skipped_init() if pretrained else contextlib.nullcontext():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device="cpu", cache_dir=cache_dir
            )
    except (RuntimeError, FileNotFoundError, OSError) as e:
        if "loading state_dict" in str(e) or "size mismatch" in str(e):
            raise CheckpointError(f"CLIP {cs}: open_clip's weights do not fit {name} ({first_line(e)})") from None
        why = "offline mode forbids downloading them" if is_offline() else first_line(e)
        raise ModelFilesMissing(
            f"CLIP weights for {cs} are not in {cache_dir or 'the default cache'} ({why}); provide "
            f"{clip_weights_source(open_clip, name, pretrained)}: run `vqclip models download clip:{cs}` on a "
            f"machine with internet, or pass --clip {name}:/path/to/that/file"
        ) from None
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"CLIP {cs} could not be built from its files ({first_line(e)})") from None
    mean, std = _preprocess_mean_std(model, preprocess)
    return model, mean, std


def meta_clip(spec: str | ClipSpec | ClipRef) -> Perceptor:
    """The CLIP model of spec built on the `meta` device (shapes only, no weights read, no memory used), for
    memory estimates. Raises the same errors as `check_clip` for an unknown name."""
    ref = check_clip(spec)
    with torch.device("meta"):  # built there, not on the CPU and moved: no memory, no random init (~1 s CPU)
        model = _quiet_create(_open_clip(), ref.build, device="meta")
    return Perceptor(model, None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), str(ref.spec)).requires_grad_(False).to("meta")


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
    if is_offline():
        raise ModelFilesMissing(f"offline mode forbids downloading CLIP {cs}; unset VQCLIP_OFFLINE/--offline")
    open_clip = _open_clip()
    if cs.model not in open_clip.list_models():
        raise UnknownNameError("CLIP model", cs.model, open_clip.list_models())
    tags = open_clip.list_pretrained_tags_by_model(cs.model)
    if cs.pretrained not in tags:
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
    if (mean is None or std is None) and preprocess is None:  # built without transforms: OpenAI's defaults
        mean, std = openai_clip.MEAN, openai_clip.STD
    elif mean is None or std is None:  # older open_clip: read them from the Normalize transform
        norm = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
        mean, std = norm.mean, norm.std
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)
