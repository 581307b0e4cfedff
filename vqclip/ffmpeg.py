"""One mp4 encoder process: raw RGB frames in through a pipe, its messages captured, its exit status checked.

imageio-ffmpeg's writer lets ffmpeg print to the terminal (a full disk showed six raw ffmpeg lines before
vqclip's own) and never checks ffmpeg's exit status (a video cut short by a full disk was renamed into place as if
whole). Here ffmpeg runs quietly with its stderr in a temp file, and a failure becomes one OutputError naming
ffmpeg's last line. The binary is imageio-ffmpeg's bundled one.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import OutputError

__all__ = ["Encoder"]

MACRO_BLOCK = 8  # frames are scaled up to a multiple of 8 so odd sizes encode; libx264 yuv420p plays everywhere
CRF = 10  # libx264 quality (0 best, 51 worst): what imageio's quality=8 meant


class Encoder:
    """ffmpeg writing an H.264 mp4 at `path` from frames of one size; `close()` raises OutputError on failure."""

    def __init__(self, path: Path, fps: float, shown: Optional[Path] = None):
        self.path, self.fps = Path(path), fps
        self.shown = Path(shown or path)  # the name messages use (path may be a temp name)
        self._proc: Optional[subprocess.Popen] = None
        self._log = tempfile.TemporaryFile()
        self._size: Optional[tuple[int, int]] = None

    def _start(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        out_w, out_h = (-(-s // MACRO_BLOCK) * MACRO_BLOCK for s in (width, height))
        cmd = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-y",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "rawvideo",
            "-vcodec",
            "rawvideo",
            "-s",
            f"{width}x{height}",
            "-pix_fmt",
            "rgb24",
            "-r",
            str(Fraction(self.fps).limit_denominator()),
            "-i",
            "-",
            "-an",
            "-vcodec",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            str(CRF),
        ]
        if (out_w, out_h) != (width, height):
            cmd += ["-vf", f"scale={out_w}:{out_h}"]
        cmd += ["-f", "mp4", str(self.path)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as e:
            raise OutputError(f"cannot start ffmpeg for {self.shown} ({e.strerror or e})") from None
        self._size = (width, height)

    def add(self, frame: np.ndarray) -> None:
        """One uint8 [H, W, 3] frame."""
        height, width = frame.shape[:2]
        if self._proc is None:
            self._start(width, height)
        elif self._size != (width, height):
            raise OutputError(f"a frame of {width}x{height} in a video of {self._size[0]}x{self._size[1]}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        except OSError:  # ffmpeg stopped (a full disk, say): close() says why
            self.close()

    def close(self) -> None:
        """Wait for ffmpeg to finish the file; a failure (exit status, or no frames) raises one OutputError."""
        if self._proc is None:
            self._log.close()
            return
        proc, self._proc = self._proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        code = proc.wait()
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        self._log.close()
        if code != 0:
            why = re.sub(r"^\[[^]]*\]\s*", "", lines[-1]) if lines else f"exit status {code}"  # no [out#0 @ 0x..]
            raise OutputError(
                f"cannot write the video {self.shown} (ffmpeg: {why[:160]}); free some space or choose another --out"
            )

    def abort(self) -> None:
        """Stop ffmpeg without waiting for a whole file (the caller removes it)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        self._log.close()
