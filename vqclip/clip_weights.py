"""A CLIP weights file -> a checked state dict: which file to read, whether to trust it, what went wrong.

vqclip reads every CLIP weights file itself (open_clip only builds the architecture), so each failure is named:
- `.safetensors` is read as it is; a pickled state dict (`.pt`, `.bin`, `.pth`) only with `torch.load(weights_only)`,
  so a file that pickles code is refused (see vqclip.checkpoint), never retried unsafely;
- an OpenAI TorchScript archive (`~/.cache/clip/ViT-B-32.pt`) only when its SHA-256 is one OpenAI published
  (vqclip.openai_clip), read without running its code, and cached once as safetensors under the checkpoints dir
  (`cache/clip-<sha>.safetensors`, locked in vqclip.lock.json like the VQGAN cache) so later runs memory-map it;
- weights that do not fit the named architecture say so, instead of "missing".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from . import openai_clip
from .checkpoint import load_checkpoint
from .errors import UsageError, first_line
from .store import integrity
from .store.download import sha256_file
from .store.registry import checkpoints_dir

__all__ = ["Weights", "check_file", "find_openai", "load_weights", "weights_in_dir"]

log = logging.getLogger("vqclip")


@dataclass(frozen=True)
class Weights:
    """A checked CLIP weights file: what to read, the open_clip architecture to build, and its provenance."""

    path: Path  # what to read: the file as given, or the safetensors cache of an OpenAI archive
    build: str  # the open_clip model name (or local-dir: spec) the weights are loaded into
    source: Path  # the file as named (messages, provenance)
    sha256: Optional[str] = None  # the source's hash, when it was checked (OpenAI archives)
    cache_dir: Optional[str] = None  # set when an archive is verified but not cached yet: the first load caches it

    @property
    def openai(self) -> Optional[openai_clip.OpenAIArchive]:
        return openai_clip.identify(self.sha256) if self.sha256 else None


def _digest(path: Path, base: Path) -> str:
    """The file's SHA-256, from the lock when its size and mtime are unchanged since it was hashed."""
    entry = integrity.recorded(path, base)
    st = path.stat()
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return entry["sha256"]
    return sha256_file(path)


def _published(path: Path, base: Path, model: str) -> Weights:
    """An OpenAI archive whose hash is published and whose architecture is the named model, else a one-line no."""
    digest = _digest(path, base)
    archive = openai_clip.identify(digest)
    if archive is None:
        raise UsageError(openai_clip.refusal(path, digest))
    if model not in archive.names:
        raise UsageError(f"{path} is OpenAI's {archive.name} CLIP, not {model}; pass --clip {archive.open_clip}:{path}")
    entry = integrity.recorded(path, base)
    if not entry or entry.get("sha256") != digest or entry.get("size") != path.stat().st_size:
        integrity.record(path, base, digest, source=f"OpenAI CLIP {archive.name} (published SHA-256)")
    cached = integrity.cached_weights(base, digest, "clip")
    return Weights(cached or path, archive.open_clip, path, digest, None if cached else str(base))


def check_file(path: str | Path, model: str, ckpt_dir: Optional[str] = None) -> Weights:
    """Check a weights file given as NAME:/path without reading its weights (an archive's hash is checked)."""
    path = Path(path).expanduser()
    if openai_clip.is_torchscript(path):
        return _published(path, checkpoints_dir(ckpt_dir), model)
    return Weights(path, model, path)


def find_openai(model: str, ckpt_dir: Optional[str] = None) -> Optional[Weights]:
    """OpenAI's weights for NAME:openai already on disk: their safetensors cache, an archive `models import`
    registered, or one in ~/.cache/clip; None when there is none (open_clip then fetches its own copy)."""
    base = checkpoints_dir(ckpt_dir)
    known = openai_clip.by_name(model)
    for sha, archive in known:
        cached = integrity.cached_weights(base, sha, "clip")
        if cached:
            return Weights(cached, archive.open_clip, cached, sha)
    locked = integrity.read_lock(base)
    for sha, archive in known:
        places = [openai_clip.default_cache_dir() / archive.file]
        places += [Path(k) for k, e in locked.items() if e.get("sha256") == sha and os.path.isabs(k)]
        for path in places:
            if not path.is_file():
                continue
            try:
                return _published(path, base, model)
            except UsageError:
                log.warning(f"{path} is not OpenAI's {archive.name} (its SHA-256 differs); it is not used")
    return None


def weights_in_dir(folder: Path) -> Optional[Path]:
    """The weights file of an open_clip local-dir folder, preferred names first (as open_clip picks them)."""
    for name in (
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.safetensors",
        "open_clip_pytorch_model.bin",
        "open_clip_pytorch_model.pth",
        "model.safetensors",
        "pytorch_model.bin",
        "pytorch_model.pth",
        "model.pth",
    ):
        if (folder / name).is_file():
            return folder / name
    found = sorted(p for ext in ("*.safetensors", "*.bin", "*.pth") for p in folder.glob(ext))
    return found[0] if found else None


def _format(path: Path) -> str:
    """What a weights file is, by its first bytes: safetensors (a JSON header), a zip, or a pickle."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    if head.startswith(b"PK"):  # torch.save's zip format, or a TorchScript archive
        return "archive" if openai_clip.is_torchscript(path) else "zip"
    return "pickle" if head.startswith(b"\x80") else "other"


def _read(w: Weights) -> dict[str, torch.Tensor]:
    kind = "safetensors" if w.path.suffix == ".safetensors" else _format(w.path)
    if kind == "other":
        raise UsageError(
            f"{w.source} is not a weights file (neither safetensors nor a PyTorch state dict); "
            f"pass the CLIP's .safetensors, .bin or .pt file"
        )
    if kind == "archive":
        if w.openai is None:  # every path here went through check_file; an unchecked archive is never read
            raise UsageError(openai_clip.refusal(w.source, w.sha256 or "?" * 16))
        return openai_clip.read_archive(w.path)
    state = load_checkpoint(w.path, f"CLIP weights for {w.build}")
    if state and next(iter(state)).startswith("module."):  # saved from a DataParallel/DDP wrapper
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}


def load_weights(model: torch.nn.Module, w: Weights, name: str) -> None:
    """Read w's file once and load it into model (strictly); an archive read for the first time is cached."""
    state = _read(w)
    own = model.state_dict()
    if "logit_scale" in state and "logit_scale" in own and state["logit_scale"].ndim != own["logit_scale"].ndim:
        state["logit_scale"] = state["logit_scale"].reshape(own["logit_scale"].shape)
    missing = [k for k in own if k not in state]
    # an archive pinned by OpenAI's hash may hold tensors that are no weights (a traced mask kept as an attribute)
    unexpected = [] if w.openai else [k for k in state if k not in own]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        what = (
            f"{wrong[0]} is {tuple(state[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}"
            if wrong
            else f"{len(missing)} weights missing, e.g. {missing[0]}"
            if missing
            else f"{len(unexpected)} unknown weights, e.g. {unexpected[0]}"
        )
        raise UsageError(
            f"CLIP weights {w.source} do not fit {name} ({what}); they are another architecture: "
            f"pass the model name they were trained as, NAME:{w.source}"
        )
    # the file's tensors become the weights (no copy) where they have the model's dtype (e.g. float16 is cast)
    model.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=True, assign=True)
    if w.cache_dir is not None:
        _cache(w, {k: state[k] for k in own})


def _cache(w: Weights, state: dict[str, torch.Tensor]) -> None:
    """Write the archive's weights as safetensors (as stored, mostly float16), named by the archive's hash."""
    from safetensors.torch import save_file

    base = Path(w.cache_dir)
    dest = integrity.cache_path(base, w.sha256, "clip")
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in state.items()},
            str(tmp),
            metadata={"source_sha256": w.sha256, "format": "vqclip-clip", "open_clip": w.build},
        )
        os.replace(tmp, dest)
        integrity.record(dest, base, sha256_file(dest), source=f"converted from {w.source.name}")
    except OSError as e:  # only a cache: the run goes on with the weights it has read
        tmp.unlink(missing_ok=True)
        log.warning(f"could not cache {w.source.name} as safetensors ({e.strerror or first_line(e)})")
