"""Getting model files: download registry VQGANs (checked, locked), CLIP through open_clip, add a user's VQGAN.

This is the library behind `vqclip models`; every function takes the checkpoints dir as an override
(None: $VQCLIP_CHECKPOINTS or the default) and reports progress through a callback, never a bar of its own.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import ModelFilesMissing, UnknownNameError, UsageError
from ..files import check_regular
from ..locks import locked, temp_name, write_atomic
from ..offline import is_offline
from . import integrity
from .acceptance import deadline, loads_as, max_bytes
from .download import ProgressFn, fetch, with_mirror
from .registry import (
    VQGAN_MODELS,
    UserModel,
    checkpoints_dir,
    locate_vqgan,
    resolve_clip,
    user_models,
    user_models_path,
)

log = logging.getLogger("vqclip")

# the CLIP choices `models list` shows; any other open_clip NAME:TAG works too
USUAL_CLIPS = ["ViT-B-32-quickgelu:openai", "ViT-B-16:openai", "ViT-L-14:openai",
               "ViT-B-32:laion2b_s34b_b79k", "toy"]


@dataclass(frozen=True)
class VQGANFiles:
    """A VQGAN's files, found, fetched if they were missing, and verified: what a run loads."""

    name: str
    config: Path
    weights: Path  # what to load: the checkpoint, or the verified safetensors cache of it
    ckpt: Path  # the checkpoint as named (messages, provenance)
    sha256: tuple[tuple[str, str], ...] = ()  # (kind, hash) of the files checked against the lock
    cache_dir: Optional[str] = None  # set when the checkpoint is verified but not yet cached as safetensors

    def digest(self, kind: str) -> Optional[str]:
        return dict(self.sha256).get(kind)


def resolve_vqgan(spec: str, ckpt: Optional[str] = None, ckpt_dir: Optional[str] = None, download: bool = False,
                  mirror: Optional[str] = None, on_progress: Optional[ProgressFn] = None) -> VQGANFiles:
    """A registry name, a user model name or a taming yaml -> its verified files, each file hashed at most once.

    With download, a registry VQGAN whose files are missing is fetched first (never when offline). Files of named
    models are checked against the lock (trust on first use); the weights are the safetensors cache once made.
    """
    where = locate_vqgan(spec, ckpt, ckpt_dir)
    digests: dict[str, str] = {}
    if where.missing and where.kind == "registry" and download and not is_offline():
        digests = _fetch_missing(spec, ckpt_dir, mirror, on_progress)
    if where.missing:
        raise ModelFilesMissing(f"VQGAN {where.name}: missing {' and '.join(map(str, where.missing))}; {where.hint}")
    if not where.locked:
        return VQGANFiles(where.name, where.config, where.ckpt, where.ckpt)
    base = checkpoints_dir(ckpt_dir)
    entry = VQGAN_MODELS.get(spec)
    hint = f"; run `vqclip models download {spec} --force` to fetch it again" if entry else \
        f"; delete it, or add the model again with `vqclip models add {spec}`"
    for kind, path in (("yaml", where.config), ("ckpt", where.ckpt)):
        if kind not in digests:
            source = entry.sources.get(kind) if entry else None
            digests[kind] = integrity.verify(path, base, source.sha256 if source else None, hint=hint)
    cached = integrity.cached_weights(base, digests["ckpt"])
    # a checkpoint not yet cached is cached by the run's first load (`cache_loaded`), never read just for that
    return VQGANFiles(where.name, where.config, cached or where.ckpt, where.ckpt, tuple(sorted(digests.items())),
                      cache_dir=str(base) if cached is None and where.ckpt.suffix != ".safetensors" else None)


def cache_loaded(files: VQGANFiles, model, digest: Optional[str] = None) -> None:
    """After a run loaded a verified checkpoint that has no safetensors cache yet, write the cache from the
    loaded model (no second read of the checkpoint): later runs load it in ~1 s instead of ~3 s."""
    if files.cache_dir is None:
        return
    try:
        convert_to_safetensors(files.config, files.ckpt, files.cache_dir, digest=digest or files.digest("ckpt"),
                               model=model)
    except OSError as e:  # only a cache: the run goes on from the checkpoint it has loaded
        logging.getLogger("vqclip").warning(f"could not cache {files.ckpt.name} as safetensors ({e.strerror or e})")


def download_vqgan(name: str, ckpt_dir: Optional[str] = None, mirror: Optional[str] = None,
                   on_progress: Optional[ProgressFn] = None, convert: bool = True, force: bool = False,
                   **fetch_options) -> tuple[Path, Path]:
    """Fetch the yaml and ckpt of a registry VQGAN that are not there yet; both end up verified and locked.

    With convert, the used weights are also cached as safetensors (see `convert_to_safetensors`). With force,
    both files are fetched again even if present, and the lock records the new ones once they load: the way out
    when a first download was bad and its hash got recorded.
    """
    digests = _fetch_missing(name, ckpt_dir, mirror, on_progress, force=force, **fetch_options)
    config, ckpt = (checkpoints_dir(ckpt_dir) / f for f in VQGAN_MODELS[name].files)
    if convert:
        convert_to_safetensors(config, ckpt, ckpt_dir, digest=digests["ckpt"])
    return config, ckpt


def _fetch_missing(name: str, ckpt_dir: Optional[str], mirror: Optional[str], on_progress: Optional[ProgressFn],
                   force: bool = False, **fetch_options) -> dict[str, str]:
    """Verify the present files of a registry VQGAN and download the missing ones; their hashes by kind.

    A file without a published hash is locked only once it loads (the yaml as a taming config, the checkpoint
    as a model of it): a body cut short without a Content-Length, or any other wrong file, is never trusted.
    """
    entry = VQGAN_MODELS.get(name)
    if entry is None:
        raise UnknownNameError("VQGAN model", name, [n for n, e in VQGAN_MODELS.items() if not e.bundled])
    if entry.bundled:
        raise UsageError(f"{name} ships with vqclip; there is nothing to download")
    base = checkpoints_dir(ckpt_dir)
    digests, loaded = {}, {}
    config = base / entry.files[0]
    for kind, filename in zip(("yaml", "ckpt"), entry.files):
        dest, source = base / filename, entry.sources[kind]
        if dest.is_file() and not force:
            digests[kind] = integrity.verify(dest, base, source.sha256,
                                             hint=f"; run `vqclip models download {name} --force` to fetch it again")
            continue
        if is_offline():
            raise ModelFilesMissing(f"VQGAN {name}: {dest} is missing and offline mode forbids downloading it; "
                                    f"run `vqclip models download {name}` where there is network, or copy it there")
        entry_before = integrity.recorded(dest, base) or {}
        known = source.sha256 or (None if force else entry_before.get("sha256"))
        recover = "" if source.sha256 or not known else \
            (f"; if the first download (recorded {entry_before.get('recorded', '?')}) was bad, run "
             f"`vqclip models download {name} --force`")
        options = {"max_bytes": max_bytes(entry, kind), "deadline": deadline(entry, kind), **fetch_options}
        accept = None if known else loads_as(kind, config, name, loaded)
        digests[kind] = fetch(with_mirror(source.urls, filename, mirror), dest, known, on_progress,
                              accept=accept, recover=recover, reuse=not force, **options)
        if force and entry_before.get("sha256") not in (None, digests[kind]):
            log.warning(f"{dest.name} differs from the file recorded on {entry_before.get('recorded', '?')}; "
                        f"the lock now records the new one")
        integrity.record(dest, base, digests[kind], source="registry" if source.sha256 else
                         "forced download" if force else "first download")
    if "model" in loaded:  # cache the weights from the check's own load: the first run then loads in ~1 s
        cache_loaded(VQGANFiles(name, config, base / entry.files[1], base / entry.files[1], cache_dir=str(base)),
                     loaded["model"], digests["ckpt"])
    return digests


def convert_to_safetensors(config: Path, ckpt: Path, ckpt_dir: Optional[str] = None,
                           digest: Optional[str] = None, model=None) -> Path:
    """Cache the parts generation uses (encoder, quantiser, decoder) of a checkpoint as safetensors.

    Reading it skips the pickle and the optimizer state official checkpoints carry (~3x the weights), and it
    is memory-mapped: loading the f16_16384 VQGAN drops from ~3 s to ~1 s. Named by the ckpt's SHA-256, so
    a changed checkpoint never meets a stale cache; `resolve_vqgan` picks it up for named models.
    """
    from safetensors.torch import save_file

    from ..vqgan import load_vqgan

    base = checkpoints_dir(ckpt_dir)
    digest = digest or integrity.verify(Path(ckpt), base)  # the caller's hash, when it has just checked the file
    dest = integrity.cache_path(base, digest)
    if integrity.cached_weights(base, digest):
        return dest
    model = model or load_vqgan(config, ckpt)  # the safe loader and the strict key check, as for any load
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)  # two processes converting at once each write their own file; one rename wins whole
    try:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"source_sha256": digest, "format": "vqclip-vqgan"})
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    integrity.record(dest, base, integrity.sha256_file(dest), source=f"converted from {Path(ckpt).name}")
    return dest


def download_clip(spec: str, ckpt_dir: Optional[str] = None) -> Path:
    """Fetch CLIP NAME:TAG with open_clip's own download into <checkpoints>/clip; returns the weights file."""
    from ..clip import download_clip as fetch_clip

    return fetch_clip(spec, str(checkpoints_dir(ckpt_dir) / "clip"))


def add_vqgan(name: str, config: Path, ckpt: Path, ckpt_dir: Optional[str] = None, description: str = "",
              check: bool = True, official: bool = False) -> UserModel:
    """Record a user's VQGAN by name (after loading it once, unless check=False) and lock its files' hashes.

    official: the files are a built-in model's, found elsewhere (`models import`), and are recorded by its name.
    """
    if name in VQGAN_MODELS and not (official and not VQGAN_MODELS[name].bundled):
        raise UsageError(f"{name!r} is a built-in VQGAN name; pick another name for your model")
    if not name or "/" in name or os.sep in name or name.endswith((".yaml", ".yml")):
        raise UsageError(f"{name!r} is not a usable model name; use letters, digits, - and _")
    for p, what in ((config, "config"), (ckpt, "checkpoint")):
        check_regular(Path(p).expanduser(), f"the model's {what}", "give the path of a file", ModelFilesMissing)
    config, ckpt = Path(config).expanduser().resolve(), Path(ckpt).expanduser().resolve()
    if check:  # a pair that does not load is refused now, not on the first generate
        from ..vqgan import load_vqgan

        load_vqgan(config, ckpt, name=name)
    base = checkpoints_dir(ckpt_dir)
    source = "models import" if official else "models add"
    digests = [integrity.record(p, base, integrity.sha256_file(p), source=source)["sha256"]
               for p in (config, ckpt)]
    if check and ckpt.suffix != ".safetensors":
        convert_to_safetensors(config, ckpt, ckpt_dir, digest=digests[1])
    path = user_models_path(ckpt_dir)
    with locked(path):  # read, add one model, write: a model another process adds meanwhile must survive
        user_models(ckpt_dir)  # a broken list is refused, not overwritten
        data = json.loads(path.read_text()) if path.is_file() else {"version": 1, "models": {}}
        data.setdefault("models", {})[name] = {"config": str(config), "ckpt": str(ckpt), "description": description}
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
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
        where = locate_vqgan(entry.name, ckpt_dir=ckpt_dir)  # the checkpoints dir's files, or imported ones
        files = [where.config, where.ckpt]
        present = all(p.is_file() for p in files)
        size = sum(p.stat().st_size for p in files if p.is_file()) if present else \
            (int(entry.size_mb * 1e6) if entry.size_mb else None)
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
