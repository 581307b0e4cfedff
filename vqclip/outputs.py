"""PNGs with provenance, progress videos and output paths: the only module that writes files.

Every file is written under a temporary name in its final folder and renamed once complete, so a crash,
Ctrl-C or a full disk never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import unicodedata
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from .errors import OutputError, UsageError
from .files import open_regular, read_regular
from .images import to_array, to_pil

_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def slugify(text: str, max_len: int = 60) -> str:
    """A file-name-safe slug: ASCII letters, digits and dashes only, so no prompt can name a path."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len].rstrip("-")
    if not slug or slug in _RESERVED:
        slug = f"run-{slug}" if slug else "untitled"
    return slug


def safe_name(text: str, max_len: int = 80) -> str:
    """A folder name as the user typed it (`--name animA` stays animA) when that is a safe file name: letters, digits
    (any script), `-`, `_` and `.`. Else each run of other characters becomes one `-`; a leading `.` or `-` (hidden,
    option-like), a trailing `.` and a reserved device name (con, nul ...) are never kept, so no name is a path."""
    name = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", text)).lstrip(".-")[:max_len].rstrip(".")
    while len(name.encode("utf-8")) > 200:  # file systems count bytes (255 at most): room for a -N suffix
        name = name[:-1]
    if not name or name.split(".")[0].lower() in _RESERVED:
        name = f"run-{name}" if name else "untitled"
    return name


def unique_dir(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3 ... if taken: an earlier run is never overwritten (see safe_name)."""
    name = safe_name(name)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for k in range(1, 10_000):
            path = parent / (name if k == 1 else f"{name}-{k}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as e:
        raise OutputError(
            f"cannot create an output folder in {parent} ({e.strerror}); choose another with --out"
        ) from None
    raise OutputError(f"too many runs named {name} in {parent}; choose another --out or name")


def check_writable(folder: str | os.PathLike) -> None:
    """Refuse up front an output folder that cannot be created or written to; writes nothing itself."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write outputs to {folder}: {existing} is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write outputs to {folder}: {existing} is not writable; choose another --out")


@contextlib.contextmanager
def atomic_path(path: Path, suffix: Optional[str] = None, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it to `path` only if the block completes (never over an existing
    file unless overwrite)."""
    suffix = suffix if suffix is not None else path.suffix
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(3)}.tmp{suffix}")
    try:
        yield tmp
        place(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def place(tmp: Path, path: Path, overwrite: bool = False) -> None:
    """Rename a finished temp file to path; without overwrite, an existing path (even one made a moment ago by
    another process) is an OutputError and stays as it was."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and refuses an existing name, unlike a rename
    except FileExistsError:
        raise OutputError(f"{path} already exists; vqclip does not overwrite outputs, choose another --out") from None
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(path):
            raise OutputError(
                f"{path} already exists; vqclip does not overwrite outputs, choose another --out"
            ) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def save_png(image: torch.Tensor | Image.Image, path: Path, metadata: dict, overwrite: bool = False) -> Path:
    """Write a PNG whose text chunks carry `metadata` (prompt, seed, config, version ...)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; vqclip does not overwrite outputs")
    pil = image if isinstance(image, Image.Image) else to_pil(image)
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        if value is not None:
            info.add_itxt(key, str(value))
    return write_durably(path, lambda f: pil.save(f, format="PNG", pnginfo=info), overwrite=overwrite)


def write_durably(path: Path, write, mode: str = "wb", overwrite: bool = True, **open_kwargs) -> Path:
    """Call write(file) on a temporary sibling, fsync, then rename to `path`; OSError becomes OutputError."""
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, mode, **open_kwargs) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror or e}); free some space or choose another --out") from None
    return path


def save_tensors(data: dict, path: Path) -> Path:
    """torch.save a dict of tensors and plain values (a cache), atomically, creating its folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    except OSError as e:
        raise OutputError(
            f"cannot write {path} ({e.strerror or e}); free some space or check its permissions"
        ) from None
    return path


def read_png_metadata(path: str | os.PathLike) -> dict:
    """The text chunks of a PNG written by vqclip; OSError if it cannot be read (a FIFO or a device is refused as
    one, never opened)."""
    with open_regular(path, "the PNG", error=OSError) as f, Image.open(f) as im:
        im.load()
        return {str(k): str(v) for k, v in (getattr(im, "text", {}) or {}).items()}


class VideoWriter:
    """Streams frames into an mp4 (and optionally a gif) through imageio-ffmpeg's bundled ffmpeg (vqclip.ffmpeg:
    quiet, its exit status checked); neither file replaces an existing one, unless overwrite (a resumed run
    replacing its own earlier video, which it has read back)."""

    def __init__(self, path: Path, fps: float = 10, gif: bool = False, overwrite: bool = False):
        from .ffmpeg import Encoder

        self.path, self.fps, self.overwrite = Path(path), fps, overwrite
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}-{secrets.token_hex(3)}.tmp.mp4")
        self._mp4 = Encoder(self._tmp, fps, shown=self.path)
        self._gif_path = self.path.with_suffix(".gif") if gif else None
        self._gif_frames: list[np.ndarray] = []
        self.frames = 0

    def add(self, image: torch.Tensor | np.ndarray) -> None:
        frame = image if isinstance(image, np.ndarray) else to_array(image)
        self._mp4.add(frame)
        if self._gif_path is not None:
            self._gif_frames.append(frame)
        self.frames += 1

    def close(self) -> list[Path]:
        """Finish the files and move them to their final names; returns the paths written."""
        try:
            self._mp4.close()
        except OutputError:
            self._tmp.unlink(missing_ok=True)
            raise
        written = []
        if self.frames:
            place(self._tmp, self.path, self.overwrite)
            written.append(self.path)
        else:
            self._tmp.unlink(missing_ok=True)
        if self._gif_path is not None and self._gif_frames:
            from PIL import Image as _Image

            frames = [_Image.fromarray(f) for f in self._gif_frames]
            try:
                with atomic_path(self._gif_path, overwrite=self.overwrite) as tmp:
                    frames[0].save(
                        tmp,
                        format="GIF",
                        save_all=True,
                        append_images=frames[1:],
                        duration=max(1, round(1000 / self.fps)),
                        loop=0,
                    )
            except OSError as e:
                raise OutputError(
                    f"cannot write {self._gif_path} ({e.strerror or e}); free some space or choose another --out"
                ) from None
            written.append(self._gif_path)
        return written

    def abort(self) -> None:
        self._mp4.abort()
        self._tmp.unlink(missing_ok=True)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and fsync it, so a crash loses at most the line being written.

    A torn tail left by an earlier crash (bytes after the last newline) is cut off first, so it can never
    glue itself to this line. Only the process that owns the file appends to it.
    """
    path = Path(path)
    line = (_dumps(record) + "\n").encode("utf-8")
    try:
        with open(path, "a+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    f.seek(0)
                    f.truncate(f.read().rfind(b"\n") + 1)
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(
            f"cannot append to {path} ({e.strerror or e}); free some space or choose another --out"
        ) from None


def read_jsonl(path: Path, check: Optional[Callable[[dict, str], dict]] = None) -> list[dict]:
    """The records of a JSONL file (none if it is missing); a torn last line from a crash is ignored.

    Every other line must be a JSON object, and pass `check(record, "<path> line N")` when given; else a
    one-line UsageError names the line.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return []
    lines = read_regular(path, "the records file", "delete it or move it away").split(b"\n")
    records = []
    for k, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError):
            if k == len(lines) - 1:  # no newline after it: the append that a crash cut short
                continue
            raise UsageError(f"{path} line {k + 1} is not JSON; fix or delete that line and run again") from None
        if not isinstance(record, dict):
            raise UsageError(
                f"{path} line {k + 1} is not a record (a JSON object); fix or delete that line and run again"
            )
        records.append(check(record, f"{path} line {k + 1}") if check is not None else record)
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Replace a JSONL file atomically with `records`."""
    lines = [_dumps(r) + "\n" for r in records]
    return write_durably(Path(path), lambda f: f.writelines(lines), "w", encoding="utf-8")


def _dumps(record: dict) -> str:
    """One JSON line; NaN and infinities, which JSON cannot hold, are written as null."""
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_nan_to_none(record), ensure_ascii=False, allow_nan=False)


def _nan_to_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
