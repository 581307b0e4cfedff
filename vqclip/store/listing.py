"""What is on disk: `vqclip models list`'s rows for every known VQGAN, the user's own, and the usual CLIPs.

Nothing here downloads, hashes or imports open_clip (listing must take no seconds); `hub` gets the files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import integrity
from .registry import VQGAN_MODELS, checkpoints_dir, locate_vqgan, resolve_clip, user_models

__all__ = ["USUAL_CLIPS", "ModelRow", "list_models"]

# the CLIP choices `models list` shows; any other open_clip NAME:TAG works too
USUAL_CLIPS = ["ViT-B-32-quickgelu:openai", "ViT-B-16:openai", "ViT-L-14:openai", "ViT-B-32:laion2b_s34b_b79k", "toy"]


@dataclass
class ModelRow:
    """One line of `vqclip models list`."""

    kind: str  # "vqgan", "user" or "clip"
    name: str
    description: str
    size: Optional[int]  # bytes: the real size when present, else the registry's approximate size
    present: bool
    path: str
    partial: int = 0  # bytes of an unfinished download


def list_models(ckpt_dir: Optional[str] = None) -> list[ModelRow]:
    base = checkpoints_dir(ckpt_dir)
    rows = []
    for entry in VQGAN_MODELS.values():
        where = locate_vqgan(entry.name, ckpt_dir=ckpt_dir)  # the checkpoints dir's files, or imported ones
        files = [where.config, where.ckpt]
        present = all(p.is_file() for p in files)
        size = (
            sum(p.stat().st_size for p in files if p.is_file())
            if present
            else (int(entry.size_mb * 1e6) if entry.size_mb else None)
        )
        partial = sum(p.stat().st_size for f in files if (p := f.with_name(f.name + ".partial")).is_file())
        rows.append(ModelRow("vqgan", entry.name, entry.description, size, present, str(files[1]), partial))
    for m in user_models(ckpt_dir).values():
        if m.name in VQGAN_MODELS:  # an official model's imported files: listed on its own row above
            continue
        present = m.config.is_file() and m.ckpt.is_file()
        size = m.ckpt.stat().st_size + m.config.stat().st_size if present else None
        rows.append(ModelRow("user", m.name, m.description or "added with models add", size, present, str(m.ckpt)))
    for spec in USUAL_CLIPS:
        openai = _openai_file(spec, base)
        path = openai or _clip_file(spec, base / "clip")
        resolved = resolve_clip(spec)
        where = resolved.split(":", 1)[1] if resolved.startswith("local-dir:") else str(base / "clip")
        approx = _HF_REPOS.get(spec, (None, None))[1]
        size = path.stat().st_size if path else (int(approx * 1e6) if approx else None)
        what = "toy CLIP (bundled)" if spec == "toy" else "OpenAI's own file" if openai else "open_clip"
        rows.append(ModelRow("clip", spec, what, size, path is not None, str(path) if path else where))
    return rows


def _clip_file(spec: str, cache_dir: Path) -> Optional[Path]:
    """The local weights file of a CLIP spec, if present (the HF cache layout open_clip downloads into)."""
    resolved = resolve_clip(spec)
    if resolved.startswith("local-dir:"):
        folder = Path(resolved.split(":", 1)[1])
        found = sorted(folder.glob("open_clip_*.safetensors")) + sorted(folder.glob("open_clip_*.bin"))
        return found[0] if found else None
    name, _, tag = spec.partition(":")
    snapshots = _hf_snapshots(name, tag, cache_dir)
    for folder in snapshots:
        for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            if (folder / f).is_file():
                return (folder / f).resolve()
    return None


def _openai_file(spec: str, base: Path) -> Optional[Path]:
    """OpenAI's own weights for NAME:openai on disk (their safetensors cache, an imported archive or one in
    ~/.cache/clip), found without hashing (the first run checks the hash)."""
    from .. import openai_clip

    name, _, tag = spec.partition(":")
    if tag != "openai":
        return None
    locked = integrity.read_lock(base)
    for sha, archive in openai_clip.by_name(name):
        places = [integrity.cache_path(base, sha, "clip"), openai_clip.default_cache_dir() / archive.file]
        places += [Path(k) for k, e in locked.items() if e.get("sha256") == sha and os.path.isabs(k)]
        found = next((p for p in places if p.is_file()), None)
        if found:
            return found
    return None


def _hf_snapshots(name: str, tag: str, cache_dir: Path) -> list[Path]:
    """Snapshot folders of the HF repo open_clip uses for name:tag, found without importing open_clip."""
    if not cache_dir.is_dir():
        return []
    repo, _ = _HF_REPOS.get(f"{name}:{tag}", (None, None))
    if repo is None:
        return []
    return sorted((cache_dir / f"models--{repo.replace('/', '--')}" / "snapshots").glob("*"))


# where open_clip 3.x fetches the usual choices (its pretrained.py), and their size as fp32 parameters x 4 bytes
# (counted from the architectures); listing them must not import open_clip, which takes seconds
_HF_REPOS = {
    "ViT-B-32-quickgelu:openai": ("timm/vit_base_patch32_clip_224.openai", 605),
    "ViT-B-16:openai": ("timm/vit_base_patch16_clip_224.openai", 598),
    "ViT-L-14:openai": ("timm/vit_large_patch14_clip_224.openai", 1710),
    "ViT-B-32:laion2b_s34b_b79k": ("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 605),
}
