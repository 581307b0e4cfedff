"""Files several vqclip processes share: a lock around every read-modify-write, and writes under unique temp names.

The lock file (`vqclip.lock.json`), the user-model list, the caches and a batch's output folder may be used by
several processes at once (two terminals, torchrun ranks, a cron job). Each read-modify-write of them runs under
`locked(path)`, an flock through the `filelock` package: the OS drops it when its process dies, so a killed
process never leaves a stale lock behind. `write_atomic` writes under a name no other process or thread uses, so
two writers never mix their bytes; the last rename wins whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import Iterator

from .errors import OutputError

__all__ = ["lock_path", "locked", "temp_name", "try_lock", "write_atomic"]

log = logging.getLogger("vqclip")

WAIT_NOTICE = 1.0  # seconds before saying that another process holds the lock


def lock_path(path: str | os.PathLike) -> Path:
    """The companion lock file of path: a hidden sibling, left in place so every waiter locks the same inode."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


def _lock(path: Path):
    from filelock import FileLock

    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    # thread_local=False: a lock object shared by threads counts one holder; each `locked` call makes its own
    return FileLock(str(lock), thread_local=False)


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout: float = 600.0) -> Iterator[None]:
    """Hold the exclusive lock of path (its `.NAME.lock` sibling) for the block; waits up to timeout seconds."""
    from filelock import Timeout

    path = Path(path)
    try:
        lock = _lock(path)
    except OSError as e:
        raise OutputError(f"cannot lock {path} ({e.strerror or e}); check that its folder is writable") from None
    try:
        try:
            lock.acquire(timeout=WAIT_NOTICE)
        except Timeout:
            log.warning(f"waiting for another vqclip process that is using {path}")
            lock.acquire(timeout=timeout)
    except Timeout:
        raise OutputError(
            f"{path} stayed locked by another vqclip process for {timeout:.0f} s; let it finish and run again"
        ) from None
    except OSError as e:
        raise OutputError(f"cannot lock {path} ({e.strerror or e}); check that its folder is writable") from None
    try:
        yield
    finally:
        lock.release()


def try_lock(path: str | os.PathLike):
    """Take path's lock without waiting: the held lock (call its release() when done), or None if another holds it."""
    from filelock import Timeout

    lock = _lock(Path(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


def temp_name(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A hidden sibling name for a temp file that no other process or thread picks: pid and a random token."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write data to path through a unique temp file: fsynced, then renamed over path (readers see old or new)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        # O_EXCL: never write into a file someone else made; 0o666 leaves the permissions to the umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path
