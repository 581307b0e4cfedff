"""Fetch one file over HTTP: sources tried in order, retries with backoff, Range resume, verify, then rename.

The file appears under its final name only once it is complete and its SHA-256 is checked; until then it is
`<name>.partial`, which a later call resumes. Ctrl-C leaves that partial behind, never a truncated file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..errors import DownloadError, UsageError

CHUNK = 1 << 20
USER_AGENT = "vqclip (+https://github.com/vqclip)"


@dataclass
class Progress:
    """What a progress callback is told: the file, bytes so far (resumed bytes included) and the total."""

    name: str
    done: int
    total: Optional[int]
    url: str


ProgressFn = Callable[[Progress], None]


class _Transient(Exception):
    """Worth retrying the same URL: dropped connection, timeout, 5xx."""


class _Permanent(Exception):
    """Give up on this URL and try the next: 404, 403, an HTML page instead of a file, a checksum mismatch."""


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


def fetch(urls: Sequence[str], dest: Path, sha256: Optional[str] = None, on_progress: Optional[ProgressFn] = None,
          retries: int = 3, backoff: float = 1.0, timeout: float = 30.0) -> str:
    """Download dest from the first source that works; returns the verified SHA-256 of what was saved."""
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"source {url!r} of {dest.name} is not an http(s) URL")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    failures = []
    for url in urls:
        try:
            digest = _fetch_one(url, partial, sha256, on_progress, retries, backoff, timeout)
        except _Permanent as e:
            failures.append(f"{_short(url)}: {e}")
            continue
        _commit(partial, dest)
        return digest
    raise DownloadError(f"could not download {dest.name}: {'; '.join(failures)}; "
                        f"try again later, or pass --mirror URL, or put the file at {dest} yourself")


def _fetch_one(url, partial, sha256, on_progress, retries, backoff, timeout) -> str:
    """Retry one URL until the partial is complete, then check it; a resumed file that fails gets one fresh try."""
    fresh_retry = True
    attempt = 0
    while True:
        resumed = partial.exists() and partial.stat().st_size > 0
        try:
            _transfer(url, partial, on_progress, timeout)
        except _Transient as e:
            attempt += 1
            if attempt > retries:
                raise _Permanent(f"{e} (gave up after {retries} retries)") from None
            time.sleep(backoff * 2 ** (attempt - 1))
            continue
        digest = sha256_file(partial)
        if sha256 is None or digest == sha256:
            return digest
        partial.unlink()
        if resumed and fresh_retry:  # the old partial may have come from another source: start over once
            fresh_retry = False
            continue
        raise _Permanent(f"checksum mismatch (expected sha256 {sha256}, got {digest})")


def _transfer(url: str, partial: Path, on_progress: Optional[ProgressFn], timeout: float) -> None:
    """Append to partial from where it stops; raise _Transient when the stream ends short."""
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial is already whole
            return
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(f"HTTP {e.code}") from None
        raise _Permanent(f"HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if isinstance(getattr(e, "reason", None), socket.gaierror):  # no such host: retrying will not help
            raise _Permanent(f"cannot resolve host ({e.reason})") from None
        raise _Transient(_reason(e)) from None
    with resp:
        if "text/html" in resp.headers.get("Content-Type", ""):
            # throttling pages, login walls and Google Drive's virus-scan notice all come back as HTML with 200
            raise _Permanent("the server sent a web page instead of the file")
        if have and resp.status != 206:
            have = 0  # the server ignored the Range header: start again from the first byte
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        with open(partial, "ab" if have else "wb") as f:
            try:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    if on_progress:
                        on_progress(Progress(partial.name[: -len(".partial")], done, total, url))
            except (OSError, http.client.HTTPException) as e:
                raise _Transient(f"connection dropped at {done} bytes ({_reason(e)})") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
        if total is not None and done < total:
            raise _Transient(f"connection dropped at {done} of {total} bytes")


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
