"""Which files in a folder are images to rank: by suffix, recursively, leaving out what vqclip writes that is not
an image of its own (temporary files, progress videos, contact sheets, a run's frames) and anything that is not a
regular file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from PIL import Image

from .errors import ImageError
from .files import not_regular
from .manifest import MANIFEST
from .sheet import SHEET
from .store import checkpoints_dir

__all__ = ["IMAGE_SUFFIXES", "list_images"]

log = logging.getLogger("vqclip")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def list_images(
    folder: str | Path,
    recursive: bool = True,
    frames: bool = False,
    checkpoints: Optional[str] = None,
    note: bool = True,
) -> list[Path]:
    """The image files (by suffix) in a folder and, when recursive, its subfolders, sorted by path. Skipped: hidden
    files and folders (vqclip's temporary files), animated GIFs (progress videos), batch contact sheets, the
    checkpoints folder (models, caches), unless `frames` a run's frames/ (a run counts once, by final.png), and
    anything that is not a regular file (a FIFO, a link to a device: never opened; named when `note`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"folder {folder} does not exist" if not folder.exists() else f"{folder} is not a folder")
    skip = checkpoints_dir(checkpoints).resolve()
    images = []
    for root, dirs, files in os.walk(folder):  # symlinked folders are not followed: no loops
        here = Path(root)
        dirs[:] = [
            d
            for d in dirs
            if recursive
            and not d.startswith(".")
            and (here / d).resolve() != skip
            and (frames or d != "frames" or not (here / "final.png").is_file())
        ]
        images += [
            here / f
            for f in files
            if Path(f).suffix.lower() in IMAGE_SUFFIXES
            and not f.startswith(".")
            and not (f == SHEET and (here / MANIFEST).is_file())
            and _regular(here / f, folder, note)  # before anything opens it
            and not (f.lower().endswith(".gif") and _is_animation(here / f))
        ]
    if not images:
        where = " or its subfolders" if recursive else ""
        raise ImageError(f"folder {folder}{where} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(images, key=lambda p: p.relative_to(folder).parts)


def _regular(path: Path, folder: Path, note: bool) -> bool:
    """Whether path is a regular file; a FIFO or a link to a device is skipped with its reason, never opened."""
    reason = not_regular(path)
    if reason is not None and note:
        log.warning(f"skipping {path.relative_to(folder)}: it {reason}")
    return reason is None


def _is_animation(path: Path) -> bool:
    """A GIF of several frames (vqclip's progress.gif, animation.gif): a video, not an image to rank."""
    try:
        with Image.open(path) as im:
            return path.suffix.lower() == ".gif" and bool(getattr(im, "is_animated", False))
    except OSError:
        return False  # unreadable: rank reports it as skipped
