"""Trust on first use: the SHA-256 of each model file, recorded in `vqclip.lock.json` beside the checkpoints.

A file is hashed when it is first downloaded (once it loads as a model) or first used, if it was put there by
hand. What later loads check is a trade-off, stated here and in the README: re-hashing a 1 GB checkpoint on every
run would cost seconds, so the record keeps size and mtime too, and a file whose size and mtime are unchanged
is not hashed again. That catches a replaced, re-downloaded, truncated or rewritten file (each changes the
stat), not bytes changed in place with the mtime put back; `vqclip models verify` (`verify_all`) re-hashes
every recorded file for that. Each read-modify-write of the lock file runs under its file lock (vqclip.locks),
so processes recording at once lose no entry.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

from ..errors import CheckpointError
from ..files import check_regular
from ..locks import locked, write_atomic
from .download import sha256_file

LOCK_NAME = "vqclip.lock.json"


def lock_path(ckpt_dir: Path) -> Path:
    return Path(ckpt_dir) / LOCK_NAME


def _key(path: Path, ckpt_dir: Path) -> str:
    """Files inside the checkpoints dir by relative name (the folder can move); others by absolute path."""
    path, ckpt_dir = Path(path).resolve(), Path(ckpt_dir).resolve()
    try:
        return path.relative_to(ckpt_dir).as_posix()
    except ValueError:
        return str(path)


def read_lock(ckpt_dir: Path) -> dict:
    p = lock_path(ckpt_dir)
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
        files = data.get("files", {})
        if not (isinstance(files, dict) and all(isinstance(v, dict) for v in files.values())):
            raise ValueError("its files are not a mapping of records")
    except (OSError, ValueError, AttributeError, RecursionError) as e:
        raise CheckpointError(
            f"{p} is unreadable ({str(e)[:80]}); fix it or delete it to trust the files again"
        ) from None
    return files


def recorded(path: Path, ckpt_dir: Path) -> Optional[dict]:
    return read_lock(ckpt_dir).get(_key(path, ckpt_dir))


def record(path: Path, ckpt_dir: Path, sha256: str, source: Optional[str] = None) -> dict:
    """Write the file's hash, size and mtime into the lock file (atomically)."""
    st = Path(path).stat()
    entry = {
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if source:
        entry["source"] = source
    p = lock_path(ckpt_dir)
    with locked(p):  # read, change one entry, write: another process's entry must survive
        files = read_lock(ckpt_dir)
        files[_key(path, ckpt_dir)] = entry
        write_atomic(p, (json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=2) + "\n").encode())
    return entry


def verify(path: Path, ckpt_dir: Path, expected: Optional[str] = None, hint: str = "") -> str:
    """Check path against the registry's hash or the lock's; record it when neither knows it. Returns the hash."""
    path = check_regular(path, "model file", "put the model's own file there", CheckpointError)
    entry = recorded(path, ckpt_dir)
    want = expected or (entry or {}).get("sha256")
    st = path.stat()
    if (
        entry
        and entry.get("sha256") == want
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
    ):
        return want  # unchanged since it was hashed
    digest = sha256_file(path)
    if want and digest != want:
        where = "the registry" if expected else f"{lock_path(ckpt_dir)} on {entry.get('recorded', '?')}"
        raise CheckpointError(
            f"{path} does not match the SHA-256 recorded in {where} (expected {want[:16]}..., "
            f"got {digest[:16]}...); it is not used{hint or ': delete it'}"
        )
    record(path, ckpt_dir, digest, (entry or {}).get("source"))
    return digest


def cache_path(ckpt_dir: Path, ckpt_sha256: str, kind: str = "vqgan") -> Path:
    """Where the safetensors conversion of a verified checkpoint lives: named by its kind and the checkpoint's hash."""
    return Path(ckpt_dir) / "cache" / f"{kind}-{ckpt_sha256[:16]}.safetensors"


def cached_weights(ckpt_dir: Path, ckpt_sha256: str, kind: str = "vqgan") -> Optional[Path]:
    """The conversion of that checkpoint if it was made (and is unchanged since), else None."""
    path = cache_path(ckpt_dir, ckpt_sha256, kind)
    if not path.is_file() or recorded(path, ckpt_dir) is None:
        return None
    try:
        verify(path, ckpt_dir, hint="; it is only a cache, so it is removed and made again from the checkpoint")
    except CheckpointError as e:  # only a cache: drop it, and the checkpoint is used (and cached again)
        logging.getLogger("vqclip").warning(str(e))
        path.unlink(missing_ok=True)
        return None
    return path


def verify_all(ckpt_dir: Path) -> list[tuple[str, str]]:
    """Re-hash every file the lock records, whatever its stat says: (name, problem) for each that does not match
    (changed bytes, missing); an empty list when all do."""
    problems = []
    base = Path(ckpt_dir)
    for key, entry in sorted(read_lock(base).items()):
        path = Path(key) if Path(key).is_absolute() else base / key
        if not path.is_file():
            problems.append((key, "is missing"))
        elif sha256_file(path) != entry.get("sha256"):
            problems.append((key, f"does not match the SHA-256 recorded on {entry.get('recorded', '?')}"))
    return problems
