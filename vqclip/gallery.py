"""A batch's gallery: `index.html` beside `manifest.jsonl`, one card per image with its thumbnail, prompt, seed, loss
and time, linking its PNG and videos. It is rewritten atomically as the batch goes and works opened from disk: plain
HTML with relative links, no script, no server.

The manifest is read from disk, so nothing in it is trusted: a path is linked only when it names a file inside the
batch's folder (vqclip.paths), numbers only when they are numbers, and all text is escaped.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import quote

from .outputs import write_durably
from .paths import inside
from .version import __version__

__all__ = ["GALLERY", "Gallery", "render_gallery", "write_gallery"]

GALLERY = "index.html"
EVERY = 2.0  # seconds between rewrites while a batch runs: a thousand-image page takes a while to build

STYLE = """
  body { font: 14px/1.4 system-ui, sans-serif; margin: 20px; background: #fafafa; color: #222; }
  h1 { font-size: 20px; margin: 0 0 4px; } .sub { color: #666; margin: 0 0 18px; }
  .cards { display: flex; flex-wrap: wrap; gap: 14px; }
  figure { margin: 0; width: 212px; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
  figure img { width: 212px; height: 212px; object-fit: contain; background: #eee; display: block; }
  figure.small img { image-rendering: pixelated; }
  figcaption { margin-top: 6px; } .prompt { font-weight: 600; word-break: break-word; }
  .meta { color: #666; font-size: 12px; } .flag { color: #b54708; }
"""


def _number(value, digits: int) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return f"{value:.{digits}f}"


def _href(out: Path, rel) -> Optional[str]:
    """A relative link to rel when it is a file inside out; None otherwise."""
    return quote(rel) if inside(out, rel) is not None else None


def latest(records: Iterable[dict]) -> list[dict]:
    """Each job's last record that has an image, in job order."""
    last: dict = {}
    for r in records:
        if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("image"):
            last[r["id"]] = r
    return sorted(last.values(), key=_order)


def _order(r: dict) -> tuple:
    index = r.get("index")
    return (index if isinstance(index, int) and not isinstance(index, bool) else math.inf), r["id"]


def _card(out: Path, r: dict) -> str:
    e = html.escape
    image = _href(out, r.get("image"))
    if image is None:
        return ""
    seed = r.get("seed") if isinstance(r.get("seed"), int) and not isinstance(r.get("seed"), bool) else "?"
    meta = [f"seed {seed}"]
    if (loss := _number(r.get("loss"), 4)) is not None:
        meta.append(f"loss {loss}")
    if (seconds := _number(r.get("seconds"), 1)) is not None:
        meta.append(f"{seconds} s")
    status = r.get("status")
    links = [f'<a href="{image}">PNG</a>']
    for video in r.get("videos") if isinstance(r.get("videos"), list) else []:
        if (href := _href(out, video)) is not None:
            links.append(f'<a href="{href}">{e(Path(video).suffix.lstrip(".") or "video")}</a>')
    prompt = r.get("prompt") if isinstance(r.get("prompt"), str) else ""
    small = " small" if _small(r) else ""
    flag = f' <span class="flag">{e(str(status))}</span>' if status not in ("done", None) else ""
    return (
        f'<figure class="card{small}"><a href="{image}"><img src="{image}" alt="{e(prompt)}" loading="lazy"></a>'
        f'<figcaption><div class="prompt">{e(prompt)}</div><div class="meta">{e(" · ".join(meta))}{flag}</div>'
        f'<div class="meta">{" · ".join(links)}</div></figcaption></figure>'
    )


def _small(r: dict) -> bool:
    """Images under the tile's size are scaled up without blurring (the toy world's are 32x32)."""
    size = r.get("size")
    return isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v < 212 for v in size)


def _sources(records: list[dict]) -> str:
    """The job files the records came from ("prompts.txt:12" -> prompts.txt)."""
    names = {Path(r["source"].rsplit(":", 1)[0]).name for r in records if isinstance(r.get("source"), str)}
    return ", ".join(sorted(names))


def render_gallery(out: Path, records: Iterable[dict], title: str = "") -> str:
    """The gallery page of the batch in `out` from its manifest records (titled by its job files by default)."""
    e = html.escape
    done = latest(records)
    title = title or _sources(done)
    cards = [c for c in (_card(Path(out), r) for r in done) if c]
    extras = [
        f'<a href="{name}">{label}</a>'
        for name, label in (("contact_sheet.png", "contact sheet"), ("manifest.jsonl", "manifest"))
        if (Path(out) / name).is_file()
    ]
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="vqclip {e(__version__)}">\n'
        f"<title>{e(title or Path(out).name)} · vqclip gallery</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{e(title or Path(out).name)}</h1>\n<p class="sub">{len(cards)} images'
        f'{" · " if extras else ""}{" · ".join(extras)}</p>\n<div class="cards">\n'
        + "\n".join(cards)
        + "\n</div>\n</body>\n</html>\n"
    )


def write_gallery(out: Path, records: Iterable[dict], title: str = "") -> Path:
    """Replace out/index.html atomically (temporary name, fsync, rename)."""
    page = render_gallery(out, records, title)
    return write_durably(Path(out) / GALLERY, lambda f: f.write(page), "w", encoding="utf-8")


class Gallery:
    """Keeps a batch's gallery current as records come: rewritten at once, then at most every EVERY seconds, and
    whenever `flush` is called. An inactive one (a torchrun rank other than 0) writes nothing."""

    def __init__(
        self,
        out: Path,
        records: Iterable[dict] = (),
        title: str = "",
        every: Optional[float] = None,
        active: bool = True,
    ):
        self.out, self.title, self.active = Path(out), title, active
        self.every = EVERY if every is None else every
        self.records = list(records)
        self.written = -math.inf
        self.dirty = True

    def add(self, record: dict) -> None:
        self.records.append(record)
        self.dirty = True
        if time.monotonic() - self.written >= self.every:
            self.flush()

    def flush(self, records: Optional[Iterable[dict]] = None) -> Optional[Path]:
        if records is not None:
            self.records, self.dirty = list(records), True
        if not self.dirty or not self.active:
            return None
        self.written, self.dirty = time.monotonic(), False
        return write_gallery(self.out, self.records, self.title)
