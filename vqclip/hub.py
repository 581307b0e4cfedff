"""Getting model files: download registry VQGANs (checked, locked), CLIP through open_clip, add a user's VQGAN.

This is the library behind `vqclip models`; every function takes the checkpoints dir as an override
(None: $VQCLIP_CHECKPOINTS or the default) and reports progress through a callback, never a bar of its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import integrity
from .download import ProgressFn, fetch, with_mirror
from .errors import ModelFilesMissing, UnknownNameError, UsageError
from .registry import (VQGAN_MODELS, UserModel, checkpoints_dir, resolve_clip, user_models, user_models_path)

# the CLIP choices `models list` shows; any other open_clip NAME:TAG works too
USUAL_CLIPS = ["ViT-B-32-quickgelu:openai", "ViT-B-16:openai", "ViT-L-14:openai",
               "ViT-B-32:laion2b_s34b_b79k", "toy"]


def offline() -> bool:
    return os.environ.get("VQCLIP_OFFLINE", "") not in ("", "0")


def download_vqgan(name: str, ckpt_dir: Optional[str] = None, mirror: Optional[str] = None,
                   on_progress: Optional[ProgressFn] = None, convert: bool = True,
                   **fetch_options) -> tuple[Path, Path]:
    """Fetch the yaml and ckpt of a registry VQGAN that are not there yet; both end up verified and locked.

    With convert, the used weights are also cached as safetensors (see `convert_to_safetensors`).
    """
    entry = VQGAN_MODELS.get(name)
    if entry is None:
        raise UnknownNameError("VQGAN model", name, [n for n, e in VQGAN_MODELS.items() if not e.bundled])
    if entry.bundled:
        raise UsageError(f"{name} ships with vqclip; there is nothing to download")
    base = checkpoints_dir(ckpt_dir)
    paths = []
    for kind, filename in zip(("yaml", "ckpt"), entry.files):
        dest, source = base / filename, entry.sources[kind]
        paths.append(dest)
        if dest.is_file():
            integrity.verify(dest, base, source.sha256, hint=f" and run `vqclip models download {name}` again")
            continue
        if offline():
            raise ModelFilesMissing(f"VQGAN {name}: {dest} is missing and offline mode forbids downloading it; "
                                    f"run `vqclip models download {name}` where there is network, or copy it there")
        known = source.sha256 or (integrity.recorded(dest, base) or {}).get("sha256")
        urls = with_mirror(source.urls, filename, mirror)
        digest = fetch(urls, dest, known, on_progress, **fetch_options)
        integrity.record(dest, base, digest, source="registry" if source.sha256 else "first download")
    if convert:
        convert_to_safetensors(paths[0], paths[1], ckpt_dir)
    return paths[0], paths[1]


def ensure_vqgan(spec: str, ckpt: Optional[str] = None, ckpt_dir: Optional[str] = None,
                 mirror: Optional[str] = None, on_progress: Optional[ProgressFn] = None) -> bool:
    """Download a registry VQGAN named by spec when its files are missing, unless offline. True if it did.

    Present files are verified and converted to the safetensors cache once (both quick when already done).
    """
    entry = VQGAN_MODELS.get(spec)
    if entry is None or entry.bundled or ckpt:
        return False
    missing = not all((checkpoints_dir(ckpt_dir) / f).is_file() for f in entry.files)
    if missing and offline():
        return False  # check() says what is missing and how to get it
    download_vqgan(spec, ckpt_dir, mirror, on_progress)
    return missing


def convert_to_safetensors(config: Path, ckpt: Path, ckpt_dir: Optional[str] = None) -> Path:
    """Cache the parts generation uses (encoder, quantiser, decoder) of a checkpoint as safetensors.

    Reading it skips the pickle and the optimizer state official checkpoints carry (~3x the weights), and it
    is memory-mapped: loading the f16_16384 VQGAN drops from ~3 s to ~1 s. Named by the ckpt's SHA-256, so
    a changed checkpoint never meets a stale cache; `resolve_vqgan` picks it up for named models.
    """
    from safetensors.torch import save_file

    from .models import load_vqgan

    base = checkpoints_dir(ckpt_dir)
    digest = integrity.verify(Path(ckpt), base)
    dest = integrity.cache_path(base, digest)
    if integrity.cached_weights(base, digest):
        return dest
    model = load_vqgan(config, ckpt)  # the safe loader and the strict key check, as for any load
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
              metadata={"source_sha256": digest, "format": "vqclip-vqgan"})
    os.replace(tmp, dest)
    integrity.record(dest, base, integrity.sha256_file(dest), source=f"converted from {Path(ckpt).name}")
    return dest


def download_clip(spec: str, ckpt_dir: Optional[str] = None) -> Path:
    """Fetch CLIP NAME:TAG with open_clip's own download into <checkpoints>/clip; returns the weights file."""
    from .models import download_clip as fetch_clip

    return fetch_clip(spec, str(checkpoints_dir(ckpt_dir) / "clip"))


def add_vqgan(name: str, config: Path, ckpt: Path, ckpt_dir: Optional[str] = None, description: str = "",
              check: bool = True) -> UserModel:
    """Record a user's VQGAN by name (after loading it once, unless check=False) and lock its files' hashes."""
    from .models import load_vqgan

    if name in VQGAN_MODELS:
        raise UsageError(f"{name!r} is a built-in VQGAN name; pick another name for your model")
    if not name or "/" in name or os.sep in name or name.endswith((".yaml", ".yml")):
        raise UsageError(f"{name!r} is not a usable model name; use letters, digits, - and _")
    config, ckpt = Path(config).expanduser().resolve(), Path(ckpt).expanduser().resolve()
    for p in (config, ckpt):
        if not p.is_file():
            raise ModelFilesMissing(f"{p} does not exist")
    if check:  # a pair that does not load is refused now, not on the first generate
        load_vqgan(config, ckpt, name=name)
    base = checkpoints_dir(ckpt_dir)
    for p in (config, ckpt):
        integrity.record(p, base, integrity.sha256_file(p), source="models add")
    if check and ckpt.suffix != ".safetensors":
        convert_to_safetensors(config, ckpt, ckpt_dir)
    path = user_models_path(ckpt_dir)
    data = json.loads(path.read_text()) if path.is_file() else {"version": 1, "models": {}}
    data.setdefault("models", {})[name] = {"config": str(config), "ckpt": str(ckpt), "description": description}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return UserModel(name, config, ckpt, description)


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
        folder = _bundled_folder() if entry.bundled else base
        files = [folder / f for f in entry.files]
        present = all(p.is_file() for p in files)
        size = sum(p.stat().st_size for p in files if p.is_file()) if present else \
            (int(entry.size_mb * 1e6) if entry.size_mb else None)
        partial = sum(p.stat().st_size for f in files if (p := f.with_name(f.name + ".partial")).is_file())
        rows.append(ModelRow("vqgan", entry.name, entry.description, size, present, str(files[1]), partial))
    for m in user_models(ckpt_dir).values():
        present = m.config.is_file() and m.ckpt.is_file()
        size = m.ckpt.stat().st_size + m.config.stat().st_size if present else None
        rows.append(ModelRow("user", m.name, m.description or "added with models add", size, present, str(m.ckpt)))
    for spec in USUAL_CLIPS:
        path = _clip_file(spec, base / "clip")
        resolved = resolve_clip(spec)
        where = resolved.split(":", 1)[1] if resolved.startswith("local-dir:") else str(base / "clip")
        approx = _HF_REPOS.get(spec, (None, None))[1]
        size = path.stat().st_size if path else (int(approx * 1e6) if approx else None)
        rows.append(ModelRow("clip", spec, "toy CLIP (bundled)" if spec == "toy" else "open_clip", size,
                             path is not None, str(path) if path else where))
    return rows


def _bundled_folder() -> Path:
    from .registry import bundled_dir

    return bundled_dir()


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
