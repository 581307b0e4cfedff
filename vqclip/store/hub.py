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
    user_models,
    user_models_path,
)

log = logging.getLogger("vqclip")


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


def resolve_vqgan(
    spec: str,
    ckpt: Optional[str] = None,
    ckpt_dir: Optional[str] = None,
    download: bool = False,
    mirror: Optional[str] = None,
    on_progress: Optional[ProgressFn] = None,
) -> VQGANFiles:
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
    hint = (
        f"; run `vqclip models download {spec} --force` to fetch it again"
        if entry
        else f"; delete it, or add the model again with `vqclip models add {spec}`"
    )
    for kind, path in (("yaml", where.config), ("ckpt", where.ckpt)):
        if kind not in digests:
            source = entry.sources.get(kind) if entry else None
            digests[kind] = integrity.verify(path, base, source.sha256 if source else None, hint=hint)
    cached = integrity.cached_weights(base, digests["ckpt"])
    # a checkpoint not yet cached is cached by the run's first load (`cache_loaded`), never read just for that
    return VQGANFiles(
        where.name,
        where.config,
        cached or where.ckpt,
        where.ckpt,
        tuple(sorted(digests.items())),
        cache_dir=str(base) if cached is None and where.ckpt.suffix != ".safetensors" else None,
    )


def cache_loaded(files: VQGANFiles, model, digest: Optional[str] = None) -> None:
    """After a run loaded a verified checkpoint that has no safetensors cache yet, write the cache from the
    loaded model (no second read of the checkpoint): later runs load it in ~1 s instead of ~3 s."""
    if files.cache_dir is None:
        return
    try:
        convert_to_safetensors(
            files.config, files.ckpt, files.cache_dir, digest=digest or files.digest("ckpt"), model=model
        )
    except OSError as e:  # only a cache: the run goes on from the checkpoint it has loaded
        logging.getLogger("vqclip").warning(f"could not cache {files.ckpt.name} as safetensors ({e.strerror or e})")


def download_vqgan(
    name: str,
    ckpt_dir: Optional[str] = None,
    mirror: Optional[str] = None,
    on_progress: Optional[ProgressFn] = None,
    convert: bool = True,
    force: bool = False,
    **fetch_options,
) -> tuple[Path, Path]:
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


def _fetch_missing(
    name: str,
    ckpt_dir: Optional[str],
    mirror: Optional[str],
    on_progress: Optional[ProgressFn],
    force: bool = False,
    **fetch_options,
) -> dict[str, str]:
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
            digests[kind] = integrity.verify(
                dest, base, source.sha256, hint=f"; run `vqclip models download {name} --force` to fetch it again"
            )
            continue
        if is_offline():
            raise ModelFilesMissing(
                f"VQGAN {name}: {dest} is missing and offline mode forbids downloading it; "
                f"run `vqclip models download {name}` where there is network, or copy it there"
            )
        entry_before = integrity.recorded(dest, base) or {}
        known = source.sha256 or (None if force else entry_before.get("sha256"))
        recover = (
            ""
            if source.sha256 or not known
            else (
                f"; if the first download (recorded {entry_before.get('recorded', '?')}) was bad, run "
                f"`vqclip models download {name} --force`"
            )
        )
        options = {"max_bytes": max_bytes(entry, kind), "deadline": deadline(entry, kind), **fetch_options}
        accept = None if known else loads_as(kind, config, name, loaded)
        digests[kind] = fetch(
            with_mirror(source.urls, filename, mirror),
            dest,
            known,
            on_progress,
            accept=accept,
            recover=recover,
            reuse=not force,
            **options,
        )
        if force and entry_before.get("sha256") not in (None, digests[kind]):
            log.warning(
                f"{dest.name} differs from the file recorded on {entry_before.get('recorded', '?')}; "
                f"the lock now records the new one"
            )
        integrity.record(
            dest,
            base,
            digests[kind],
            source="registry" if source.sha256 else "forced download" if force else "first download",
        )
    if "model" in loaded:  # cache the weights from the check's own load: the first run then loads in ~1 s
        cache_loaded(
            VQGANFiles(name, config, base / entry.files[1], base / entry.files[1], cache_dir=str(base)),
            loaded["model"],
            digests["ckpt"],
        )
    return digests


def convert_to_safetensors(
    config: Path, ckpt: Path, ckpt_dir: Optional[str] = None, digest: Optional[str] = None, model=None
) -> Path:
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
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(tmp),
            metadata={"source_sha256": digest, "format": "vqclip-vqgan"},
        )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    integrity.record(dest, base, integrity.sha256_file(dest), source=f"converted from {Path(ckpt).name}")
    return dest


def download_clip(spec: str, ckpt_dir: Optional[str] = None) -> Path:
    """Fetch CLIP NAME:TAG with open_clip's own download into <checkpoints>/clip; returns the weights file."""
    from ..clip import download_clip as fetch_clip

    return fetch_clip(spec, str(checkpoints_dir(ckpt_dir) / "clip"))


def add_vqgan(
    name: str,
    config: Path,
    ckpt: Path,
    ckpt_dir: Optional[str] = None,
    description: str = "",
    check: bool = True,
    official: bool = False,
) -> UserModel:
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
    digests = [integrity.record(p, base, integrity.sha256_file(p), source=source)["sha256"] for p in (config, ckpt)]
    if check and ckpt.suffix != ".safetensors":
        convert_to_safetensors(config, ckpt, ckpt_dir, digest=digests[1])
    path = user_models_path(ckpt_dir)
    with locked(path):  # read, add one model, write: a model another process adds meanwhile must survive
        user_models(ckpt_dir)  # a broken list is refused, not overwritten
        data = json.loads(path.read_text()) if path.is_file() else {"version": 1, "models": {}}
        data.setdefault("models", {})[name] = {"config": str(config), "ckpt": str(ckpt), "description": description}
        write_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
    return UserModel(name, config, ckpt, description)
