"""Fetch one file over HTTP: sources tried in order, retries with backoff, Range resume, checks, then rename.

The file appears under its final name only once it is complete and checked; until then it is `<name>.partial`,
which a later call resumes. Ctrl-C leaves that partial behind, never a truncated file. Nothing a server says is
taken on trust: a malformed Content-Length, a 206 whose Content-Range does not start where the partial ends, a
body larger than `max_bytes` (or endless), an empty body, a web page sent as `application/octet-stream`, and a
server that drips a few bytes a second (below MIN_RATE over WINDOW seconds) all fail that source; `deadline`
bounds the whole file. `accept(partial)` is the caller's own check (a model file must load) before the rename.
"""

# size: one job, a download that trusts nothing; its checks are most of it (about 300 lines before ruff format)

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import DownloadError, UsageError, VQClipError, first_line
from ..locks import locked

CHUNK = 1 << 20
USER_AGENT = "vqclip (+https://github.com/vqclip)"
MIN_RATE = 1000  # bytes/s: a source slower than this over a whole WINDOW is dropped (a drip, not a network)
WINDOW = 60.0
_HTML = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml")
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Progress:
    """What a progress callback is told: the file, bytes so far (resumed bytes included) and the total."""

    name: str
    done: int
    total: Optional[int]
    url: str


ProgressFn = Callable[[Progress], None]


class _Transient(Exception):
    """Worth retrying the same URL: dropped connection, timeout, 5xx, a resume that started at the wrong byte."""


class _Permanent(Exception):
    """Give up on this URL and try the next: 404, 403, a web page or an empty body, too big, a checksum mismatch."""


@dataclass
class _Limits:
    """What one file's transfer may take: bytes, the overall deadline (monotonic clock), the slowest rate."""

    max_bytes: Optional[int]
    deadline: Optional[float]
    min_rate: float
    window: float
    timeout: float

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()


class _Deadline(Exception):
    """The file's overall deadline passed: stop every source (the partial is kept for a later resume)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def with_mirror(urls: Sequence[str], filename: str, mirror: Optional[str] = None) -> list[str]:
    """The mirror (option, else $VQCLIP_MIRROR) as `<base>/<file name>` first, then the registry's sources."""
    mirror = mirror or os.environ.get("VQCLIP_MIRROR") or None
    return ([f"{mirror.rstrip('/')}/{filename}"] if mirror else []) + list(urls)


def fetch(
    urls: Sequence[str],
    dest: Path,
    sha256: Optional[str] = None,
    on_progress: Optional[ProgressFn] = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    max_bytes: Optional[int] = None,
    deadline: Optional[float] = None,
    accept: Optional[Callable[[Path], None]] = None,
    min_rate: float = MIN_RATE,
    window: float = WINDOW,
    recover: str = "",
    reuse: bool = True,
) -> str:
    """Download dest from the first source that works; returns the verified SHA-256 of what was saved.

    `max_bytes` bounds the file's size, `deadline` the seconds the whole file may take; `accept(partial)` raises
    a VQClipError when the complete file is not what was asked for (the next source is tried). `recover` is
    added to the final error: what the user can do next. Processes fetching one dest take turns; with `reuse`, a
    dest that appeared meanwhile (and matches sha256, when given) is not fetched again.
    """
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"source {url!r} of {dest.name} is not an http(s) URL")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    limits = _Limits(max_bytes, None if deadline is None else time.monotonic() + deadline, min_rate, window, timeout)
    failures = []
    with locked(dest):  # two processes must never append to one partial
        if reuse and dest.is_file():
            digest = sha256_file(dest)
            if sha256 is None or digest == sha256:
                return digest
        for url in urls:
            try:
                digest = _fetch_one(url, partial, sha256, on_progress, retries, backoff, limits, accept)
            except _Permanent as e:
                failures.append(f"{_short(url)}: {e}")
                continue
            except _Deadline:
                have = partial.stat().st_size if partial.exists() else 0
                raise DownloadError(
                    f"could not download {dest.name} within {deadline:g} s ({have} bytes kept in "
                    f"{partial.name}); run the same command again to resume, or pass --mirror URL"
                    f"{recover}"
                ) from None
            _commit(partial, dest)
            return digest
    raise DownloadError(
        f"could not download {dest.name}: {'; '.join(failures)}; "
        f"try again later, or pass --mirror URL, or put the file at {dest} yourself{recover}"
    )


def _fetch_one(url, partial, sha256, on_progress, retries, backoff, limits: _Limits, accept) -> str:
    """Retry one URL until the partial is complete, then check it; a resumed file that fails gets one fresh try."""
    fresh_retry = True
    attempt = 0
    while True:
        resumed = partial.exists() and partial.stat().st_size > 0
        try:
            _transfer(url, partial, on_progress, limits)
        except _Transient as e:
            attempt += 1
            if attempt > retries:
                raise _Permanent(f"{e} (gave up after {retries} retries)") from None
            pause = backoff * 2 ** (attempt - 1)
            if pause >= limits.left():
                raise _Deadline from None
            time.sleep(pause)
            continue
        digest = sha256_file(partial)
        problem = None
        if sha256 is not None and digest != sha256:
            problem = f"checksum mismatch (expected sha256 {sha256}, got {digest})"
        elif accept is not None:
            try:
                accept(partial)
            except VQClipError as e:
                problem = f"what it sent is not the file ({first_line(e, 300)})"
        if problem is None:
            return digest
        partial.unlink()
        if resumed and fresh_retry:  # the old partial may have come from another source: start over once
            fresh_retry = False
            continue
        raise _Permanent(problem)


def _open(url: str, have: int, limits: _Limits):
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    if limits.left() <= 0:
        raise _Deadline
    try:
        return urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=max(0.1, min(limits.timeout, limits.left()))
        )
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial is already whole
            return None
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code}") from None
        raise _Permanent(f"HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        if isinstance(getattr(e, "reason", None), socket.gaierror):  # no such host: retrying will not help
            raise _Permanent(f"cannot resolve host ({e.reason})") from None
        raise _Transient(_reason(e)) from None


def _content_length(resp) -> Optional[int]:
    values = resp.headers.get_all("Content-Length") or []
    if not values:
        return None
    if len(set(v.strip() for v in values)) != 1 or not values[0].strip().isdigit():
        raise _Permanent(f"the server sent a malformed Content-Length ({', '.join(values)[:40]!r})")
    return int(values[0])


def _start_of(resp, have: int, length: Optional[int]) -> tuple[int, Optional[int]]:
    """Where this response's body starts in the file, and the file's total size when the server says it."""
    if resp.status != 206:
        return 0, length  # a whole file (a server that ignores Range starts from the first byte)
    m = _RANGE.fullmatch((resp.headers.get("Content-Range") or "").strip())
    start = int(m.group(1)) if m else None
    if not have or start != have or (length is not None and length != int(m.group(2)) - start + 1):
        # resuming elsewhere than where the partial ends would splice two pieces of different bytes
        raise _Transient(
            f"the server resumed at {resp.headers.get('Content-Range')!r:.60}, not at byte {have}; starting over"
        )
    total = None if m.group(3) == "*" else int(m.group(3))
    return have, total if total is not None else None if length is None else have + length


def _transfer(url: str, partial: Path, on_progress: Optional[ProgressFn], limits: _Limits) -> None:
    """Append to partial from where it stops; raise _Transient when the stream ends short."""
    have = partial.stat().st_size if partial.exists() else 0
    resp = _open(url, have, limits)
    if resp is None:
        return
    with resp:
        if "text/html" in resp.headers.get("Content-Type", ""):
            # throttling pages, login walls and Google Drive's virus-scan notice all come back as HTML with 200
            raise _Permanent("the server sent a web page instead of the file")
        length = _content_length(resp)
        try:
            have, total = _start_of(resp, have, length)
        except _Transient:
            partial.unlink(missing_ok=True)
            raise
        if limits.max_bytes is not None and total is not None and total > limits.max_bytes:
            partial.unlink(missing_ok=True)  # a partial of a file that big is not of this file either
            raise _Permanent(f"the server offers {total} bytes, more than the {limits.max_bytes} this file can be")
        try:
            _stream(resp, partial, have, total, url, on_progress, limits)
        except _Permanent:
            partial.unlink(missing_ok=True)  # what this source sent is not the file
            raise


def _stream(
    resp, partial: Path, have: int, total: Optional[int], url: str, on_progress: Optional[ProgressFn], limits: _Limits
) -> None:
    done = have
    window_start, window_done = time.monotonic(), done
    with open(partial, "ab" if have else "wb") as f:
        try:
            while True:
                block = resp.read1(CHUNK)  # what has arrived, so the clocks below are checked as bytes come
                if not block:
                    break
                if done == 0 and block.lstrip()[:16].lower().startswith(_HTML):
                    raise _Permanent("the server sent a web page instead of the file")
                f.write(block)
                done += len(block)
                if limits.max_bytes is not None and done > limits.max_bytes:
                    raise _Permanent(f"the server sent more than the {limits.max_bytes} bytes this file can be")
                if on_progress:
                    on_progress(Progress(partial.name[: -len(".partial")], done, total, url))
                now = time.monotonic()
                if limits.left() <= 0:
                    raise _Deadline
                if now - window_start >= limits.window:
                    if done - window_done < limits.min_rate * limits.window:
                        raise _Transient(
                            f"the server sent only {done - window_done} bytes in {now - window_start:.0f} s"
                        )
                    window_start, window_done = now, done
        except (OSError, http.client.HTTPException) as e:
            if limits.left() <= 0:
                raise _Deadline from None
            raise _Transient(f"connection dropped at {done} bytes ({_reason(e)})") from None
        finally:
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done < total:
        raise _Transient(f"connection dropped at {done} of {total} bytes")
    if done == 0:
        raise _Permanent("the server sent an empty file")


def _commit(partial: Path, dest: Path) -> None:
    """Rename the verified partial into place and make the rename itself durable."""
    os.replace(partial, dest)
    try:
        fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the data itself was fsynced already
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(reason or e) or type(e).__name__


def _short(url: str) -> str:
    return url if len(url) <= 90 else url[:87] + "..."
