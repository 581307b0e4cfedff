"""One writer for a run's files: frames, the final PNG, the progress video and their provenance.

A `RunWriter` owns one image's folder. It is shown every Step of the loop (`add`), keeps what its `Layout` says
(a frame every N steps, the video's frames), and ends with `finish` (complete or interrupted: the current image is
saved either way) or `abort` (an error: the unfinished video is dropped and a folder left empty is removed).
`write_steps` drives B writers over one loop; its interrupt and abort rules are the only ones in vqclip:
Ctrl-C (or SIGTERM turned into it) saves every image as interrupted, then raises `Interrupted`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

from .config import Config
from .optimize import Step
from .outputs import VideoWriter, save_png, unique_dir
from .provenance import metadata

__all__ = ["Interrupted", "Layout", "RunResult", "RunWriter", "write_steps"]


@dataclass
class RunResult:
    image: Optional[Path]
    folder: Path
    status: str  # complete | interrupted
    step: int
    loss: Optional[float]
    seconds: float
    videos: list[Path] = field(default_factory=list)


class Interrupted(Exception):
    """Raised after an interrupted run has saved what it made; carries every image's result."""

    def __init__(self, results: Sequence[RunResult]):
        super().__init__("interrupted")
        self.results = list(results)

    @property
    def result(self) -> RunResult:
        return self.results[0]


@dataclass(frozen=True)
class Layout:
    """What a run keeps: frame PNGs every `frame_every` steps, video frames every `video_every` (0: none)."""

    frame_every: int = 0
    video_every: int = 0
    frame_name: str = "step_{:05d}.png"
    video_name: str = "progress.mp4"
    gif: bool = False
    fps: int = 10
    final_is_frame: bool = False  # an animation's last frame is a frame too (a still's final Step is not)
    extra: tuple[tuple[str, str], ...] = ()  # metadata every PNG of the run carries besides its provenance

    @classmethod
    def still(cls, cfg: Config) -> "Layout":
        """generate and batch: a frame (and a video frame, with --video) every output.save_every steps."""
        every = cfg.output.save_every
        return cls(every, every if cfg.output.video else 0, gif=cfg.output.gif, fps=cfg.output.fps)

    @classmethod
    def animation(cls, cfg: Config, save_frames: bool) -> "Layout":
        """animate: every frame goes to animation.mp4, and with save_frames to frames/frame_NNNNN.png; the PNGs
        say they are frames of an animation (generate --from refuses them) and how it moves."""
        extra = (("animation", json.dumps(dataclasses.asdict(cfg.animation))),)
        return cls(1 if save_frames else 0, 1, "frame_{:05d}.png", "animation.mp4", cfg.output.gif, cfg.output.fps,
                   True, extra)


class RunWriter:
    """The files of one image's run in a new folder `parent/name` (or name-2 ... if taken: never overwritten)."""

    def __init__(self, cfg: Config, plan, parent: Path, name: str, layout: Layout, index: int = 0):
        self.cfg, self.plan, self.layout, self.index = cfg, plan, layout, index
        self.folder = unique_dir(Path(parent), name)
        self.video = (VideoWriter(self.folder / layout.video_name, layout.fps, layout.gif)
                      if layout.video_every else None)
        self.last: Optional[Step] = None
        self.start = time.perf_counter()

    def _meta(self, step: Step, status: str) -> dict:
        loss = float(step.loss[self.index])
        return {**metadata(self.cfg, self.plan, step.i, status, loss, step.extras), **dict(self.layout.extra)}

    def add(self, step: Step) -> None:
        """See one Step of the loop; keep it as a frame and in the video when the layout says so."""
        self.last = step
        if step.final and not self.layout.final_is_frame:
            return  # a still's final image is written by finish
        image = step.image[self.index]
        if self.layout.frame_every and step.i % self.layout.frame_every == 0:
            frames = self.folder / "frames"
            frames.mkdir(exist_ok=True)
            save_png(image, frames / self.layout.frame_name.format(step.i), self._meta(step, "frame"))
        if self.video is not None and step.i % self.layout.video_every == 0:
            self.video.add(image)

    def finish(self, status: str = "complete") -> RunResult:
        """Save the last image as final.png (complete or interrupted), finish the video; what was made."""
        last, image, loss = self.last, None, None
        if last is not None:
            loss = float(last.loss[self.index])
            image = save_png(last.image[self.index], self.folder / "final.png", self._meta(last, status))
            if self.video is not None and status == "complete" and not self.layout.final_is_frame:
                self.video.add(last.image[self.index])
        videos = self.video.close() if self.video is not None else []
        return RunResult(image, self.folder, status, last.i if last else 0, loss, time.perf_counter() - self.start,
                         videos)

    def abort(self) -> None:
        """After an error: drop the unfinished video; a folder that holds nothing is removed."""
        if self.video is not None:
            self.video.abort()
        for sub in (self.folder / "frames", self.folder):
            try:
                sub.rmdir()  # only succeeds when empty
            except OSError:
                pass


def write_steps(steps: Iterable[Step], writers: Sequence[RunWriter], on_step: Optional[Callable[[Step], None]] = None,
                on_finish: Optional[Callable[[RunWriter, RunResult], None]] = None) -> list[RunResult]:
    """Run the loop into the writers (writer b keeps image b); returns their results in order.

    Ctrl-C saves every image as interrupted and raises Interrupted with the results; any other error aborts them.
    """
    def finish(status: str) -> list[RunResult]:
        results = []
        for w in writers:
            results.append(w.finish(status))
            if on_finish is not None:
                on_finish(w, results[-1])
        return results

    try:
        for step in steps:
            if on_step is not None:
                on_step(step)
            for w in writers:
                w.add(step)
    except KeyboardInterrupt:
        raise Interrupted(finish("interrupted")) from None
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return finish("complete")
