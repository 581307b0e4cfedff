"""`vqclip video`: saved frames (a run's frames/ folder, or any folder of images) -> one mp4, afterwards."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ImageError, OutputError, UsageError
from .outputs import VideoWriter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _natural(path: Path) -> list:
    """frame_2 before frame_10: digits compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_paths(folder: Path) -> list[Path]:
    """The images of a folder in natural name order (step_00002.png, frame_10.png ...)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give a folder of frames, e.g. outputs/<run>/frames")
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                   key=_natural)
    if not paths:
        raise UsageError(f"{folder} holds no PNG, JPEG or WebP frames")
    return paths


def assemble(frames: list[Path], path: Path, fps: float = 10, gif: bool = False) -> list[Path]:
    """Stream the frames, in order, into an mp4 at `path` (and a gif beside it); all must share one size."""
    from PIL import Image

    path = Path(path)
    if path.exists():
        raise OutputError(f"{path} already exists; vqclip does not overwrite outputs, choose another --out")
    if not fps > 0:
        raise UsageError(f"fps must be positive, got {fps}")
    writer = VideoWriter(path, fps, gif)
    size: Optional[tuple[int, int]] = None
    try:
        for frame in frames:
            try:
                with Image.open(frame) as im:
                    rgb = im.convert("RGB")
            except OSError as e:
                raise ImageError(f"cannot read frame {frame} ({e}); remove it from the folder") from None
            size = size or rgb.size
            if rgb.size != size:
                raise ImageError(f"frame {frame.name} is {rgb.width}x{rgb.height} but the first is "
                                 f"{size[0]}x{size[1]}; all frames must share one size")
            writer.add(np.asarray(rgb))
    except BaseException:
        writer.abort()
        raise
    return writer.close()
