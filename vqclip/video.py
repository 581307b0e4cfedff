"""`vqclip video`: saved frames (a run's frames/ folder, or any folder of images) -> one mp4, afterwards."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import ImageError, OutputError, UsageError
from .files import not_regular, open_regular
from .outputs import VideoWriter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MIN_FPS, MAX_FPS = 0.01, 1000.0  # a frame per 100 s to 1000 frames a second: what players and gifs can show


def _natural(path: Path) -> list:
    """frame_2 before frame_10: digits compare as numbers."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_paths(folder: Path) -> list[Path]:
    """The images of a folder in natural name order (step_00002.png, frame_10.png ...); each must be a regular
    file (a FIFO or a link to a device among them is refused at once, never opened)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give a folder of frames, e.g. outputs/<run>/frames")
    paths = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")), key=_natural
    )
    if not paths:
        raise UsageError(f"{folder} holds no PNG, JPEG or WebP frames")
    for p in paths:
        reason = not_regular(p)
        if reason is not None:
            raise ImageError(f"frame {p} {reason}; remove it from the folder")
    return paths


def frame_rate(frames: int, fps: Optional[float] = None, seconds: Optional[float] = None) -> float:
    """The video's frames per second: fps (default 10), or frames / seconds; finite, within MIN_FPS-MAX_FPS."""
    if fps is not None and seconds is not None:
        raise UsageError("give --fps or --seconds, not both")
    if seconds is not None:
        if not (math.isfinite(seconds) and seconds > 0):
            raise UsageError(f"--seconds must be a positive number, got {seconds:g}")
        rate, what = frames / seconds, f"{frames} frames in {seconds:g} s is {frames / seconds:g} fps"
    else:
        rate = 10.0 if fps is None else fps
        if not (math.isfinite(rate) and rate > 0):
            raise UsageError(f"--fps must be a positive number, got {rate:g}")
        what = f"--fps {rate:g}"
    if not MIN_FPS <= rate <= MAX_FPS:
        raise UsageError(f"{what}; the frame rate must be between {MIN_FPS:g} and {MAX_FPS:g} fps")
    return rate


def assemble(frames: list[Path], path: Path, fps: float = 10, gif: bool = False) -> list[Path]:
    """Stream the frames, in order, into an mp4 at `path` (and a gif beside it); all must share one size."""
    from PIL import Image

    path = Path(path)
    for out in (path, path.with_suffix(".gif")) if gif else (path,):
        if out.exists() or out.is_symlink():
            raise OutputError(f"{out} already exists; vqclip does not overwrite outputs, choose another --out")
    fps = frame_rate(len(frames), fps)
    writer = VideoWriter(path, fps, gif)
    size: Optional[tuple[int, int]] = None
    try:
        for frame in frames:
            try:
                with open_regular(frame, "frame", "remove it from the folder", ImageError) as f, Image.open(f) as im:
                    rgb = im.convert("RGB")
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                raise ImageError(f"cannot read frame {frame} ({e}); remove it from the folder") from None
            size = size or rgb.size
            if rgb.size != size:
                raise ImageError(
                    f"frame {frame.name} is {rgb.width}x{rgb.height} but the first is "
                    f"{size[0]}x{size[1]}; all frames must share one size"
                )
            writer.add(np.asarray(rgb))
    except BaseException:
        writer.abort()
        raise
    return writer.close()
