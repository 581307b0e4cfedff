"""Files from outside, opened only when they are regular files: a FIFO, a device or a socket never blocks a read.

Every command that reads a user's file (images, frames, job files, presets, model files, `--from` PNGs) asks
`check_regular` or `open_regular` first. The reason given names what the path really is (a FIFO, a link to
/dev/zero, a folder), never a misleading "does not exist". `open_regular` opens with O_NONBLOCK and checks the
open file itself, so a path swapped for a FIFO after the check cannot block either.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

from .errors import UsageError

__all__ = ["check_regular", "not_regular", "open_regular", "read_regular"]

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def _kind(mode: int) -> Optional[str]:
    """None for a regular file, else what it is."""
    return None if stat.S_ISREG(mode) else _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def not_regular(path: str | os.PathLike) -> Optional[str]:
    """Why path is not a readable regular file ("does not exist", "is a FIFO (named pipe)" ...), or None if it is.

    Only stat is called: nothing is opened, so a device or FIFO is never touched.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            return f"is a broken link (to {os.readlink(p)})"
        return "does not exist"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    kind = _kind(st.st_mode)
    if kind is None:
        return None
    if os.path.islink(p):
        return f"is a link to {os.path.realpath(p)}, {kind}, not a regular file"
    return f"is {kind}, not a regular file"


def check_regular(path: str | os.PathLike, what: str, fix: str = "", error: type[Exception] = UsageError) -> Path:
    """Path, if it is a regular file (links followed); else `error("<what> <path> <reason>; <fix>")`."""
    reason = not_regular(path)
    if reason is not None:
        raise error(f"{what} {path} {reason}" + (f"; {fix}" if fix else ""))
    return Path(path)


def open_regular(
    path: str | os.PathLike,
    what: str,
    fix: str = "",
    error: type[Exception] = UsageError,
    max_bytes: Optional[int] = None,
) -> BinaryIO:
    """Open a regular file for reading in binary; anything else, or a file above max_bytes, raises `error`."""
    check_regular(path, what, fix, error)
    try:
        # O_NONBLOCK: should the path have become a FIFO since the check, opening it does not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read {what} {path} ({e.strerror or e})" + (f"; {fix}" if fix else "")) from None
    st = os.fstat(fd)
    reason = _kind(st.st_mode)
    if reason is None and max_bytes is not None and st.st_size > max_bytes:
        reason = f"is {st.st_size / 1e6:.0f} MB, more than the {max_bytes / 1e6:.0f} MB vqclip reads for it"
    elif reason is not None:
        reason = f"is {reason}, not a regular file"
    if reason is not None:
        os.close(fd)
        raise error(f"{what} {path} {reason}" + (f"; {fix}" if fix else ""))
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(
    path: str | os.PathLike,
    what: str,
    fix: str = "",
    error: type[Exception] = UsageError,
    max_bytes: Optional[int] = None,
) -> bytes:
    """The bytes of a regular file (see open_regular); never more than max_bytes + 1 are read."""
    with open_regular(path, what, fix, error, max_bytes) as f:
        data = f.read() if max_bytes is None else f.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # it grew after the size check
        raise error(
            f"{what} {path} is more than the {max_bytes / 1e6:.0f} MB vqclip reads for it" + (f"; {fix}" if fix else "")
        )
    return data
