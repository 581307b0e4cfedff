"""One writer for a run's files: frames, the final PNG, the progress video and their provenance.

A `RunWriter` owns one image's folder. It is shown every Step of the loop (`add`), keeps what its `Layout` says
(a frame every N steps, the video's frames), and ends with `finish` (complete or interrupted: the current image is
saved either way) or `abort` (an error: the unfinished video is dropped and a folder left empty is removed).
`write_steps` drives B writers over one loop; its interrupt and abort rules are the only ones in vqclip:
Ctrl-C (or SIGTERM turned into it) saves every image as interrupted, then raises `Interrupted`. It also tells the
run's observers (vqclip.observe: the preview page, a notebook) what it keeps, at the layout's frame cadence.

An interrupted image also gets its state (vqclip.state), and with `output.save_state` every saved frame does, so
a writer given `at=ResumeAt(...)` continues the run in its own folder: frames past the resume point are dropped
(they are made again), the video is seeded with the frames before it, and every PNG after it says `resumed`.
"""

# size: the one writer of frames, final PNG, video, state and interrupt (about 300 lines before ruff format)

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from .config import Config, OutputConfig
from .observe import Observer
from .optimize import Step
from .outputs import VideoWriter, save_png, unique_dir
from .provenance import describe_device, metadata
from .state import SavedState, StateWriter, remove_state

__all__ = ["Interrupted", "Layout", "ResumeAt", "RunResult", "RunWriter", "write_steps"]

log = logging.getLogger("vqclip")


@dataclass
class RunResult:
    image: Optional[Path]
    folder: Path
    status: str  # complete | interrupted
    step: int
    loss: Optional[float]
    seconds: float
    videos: list[Path] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)  # the steps (frames) the run was resumed from
    state: Optional[Path] = None  # the state an interrupted run saved (its sidecar): `--resume` continues from it


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
    state_every: int = 0  # also save the run's state every N steps (frames); an interrupt always saves it

    @property
    def watch_every(self) -> int:
        """Steps between the images observers are shown: the frame cadence, or, for a run that keeps no frames,
        the default save_every's."""
        return self.frame_every or self.video_every or OutputConfig.save_every

    @classmethod
    def still(cls, cfg: Config) -> "Layout":
        """generate and batch: a frame (and a video frame, with --video) every output.save_every steps, and with
        output.save_state the state beside each frame."""
        every = cfg.output.save_every
        return cls(
            every,
            every if cfg.output.video else 0,
            gif=cfg.output.gif,
            fps=cfg.output.fps,
            state_every=every if cfg.output.save_state else 0,
        )

    @classmethod
    def animation(cls, cfg: Config, save_frames: bool) -> "Layout":
        """animate: every frame goes to animation.mp4, and with save_frames to frames/frame_NNNNN.png; the PNGs
        say they are frames of an animation (generate --from refuses them) and how it moves."""
        extra = (("animation", json.dumps(dataclasses.asdict(cfg.animation))),)
        return cls(
            1 if save_frames else 0,
            1,
            "frame_{:05d}.png",
            "animation.mp4",
            cfg.output.gif,
            cfg.output.fps,
            True,
            extra,
            1 if cfg.output.save_state else 0,
        )


@dataclass(frozen=True)
class ResumeAt:
    """An earlier run's folder a writer continues in, from step (frame) `step`; `resumed` lists every resume."""

    folder: Path
    step: int = 0
    resumed: tuple[int, ...] = ()

    @classmethod
    def of(cls, saved: SavedState) -> "ResumeAt":
        return cls(saved.folder, saved.step, (*saved.resumed, saved.step))


class RunWriter:
    """The files of one image's run in a new folder `parent/name` (or name-2 ... if taken: never overwritten), or
    in an earlier run's folder (`at`). `state_meta` describes the run for its state files (none without it)."""

    def __init__(
        self,
        cfg: Config,
        plan,
        parent: Path,
        name: str,
        layout: Layout,
        index: int = 0,
        state_meta: Optional[Callable[[], dict]] = None,
        at: Optional[ResumeAt] = None,
    ):
        self.cfg, self.plan, self.layout, self.index = cfg, plan, layout, index
        self.state_meta, self.resumed = state_meta, list(at.resumed) if at else []
        self.folder = at.folder if at else unique_dir(Path(parent), name)
        if at:
            _drop_frames_from(self.folder / "frames", layout.frame_name, at.step)
        # a resumed run replaces its own video, which `_seed_video` reads back first
        self.video = (
            VideoWriter(self.folder / layout.video_name, layout.fps, layout.gif, overwrite=at is not None)
            if layout.video_every
            else None
        )
        if at and self.video is not None:
            self._seed_video(at.step)
        self.reused = at is not None
        self.states = StateWriter(self.folder) if state_meta is not None else None
        self.last: Optional[Step] = None
        self.device: Optional[str] = None
        self.start = time.perf_counter()

    def _meta(self, step: Step, status: str) -> dict:
        loss = float(step.loss[self.index])
        if self.device is None:  # the device the loop made the image on
            self.device = describe_device(step.image.device)
        meta = {
            **metadata(self.cfg, self.plan, step.i, status, loss, step.extras, self.device),
            **dict(self.layout.extra),
        }
        if self.resumed:
            meta["resumed"] = json.dumps(self.resumed)
        return meta

    def save_state(self, step: Step, status: str) -> Optional[Path]:
        """Save this image's state from `step` (where the next step begins): a frame's in the background, an
        interrupt's now (its sidecar is returned)."""
        if self.states is None or step.state is None:
            return None
        meta = {**self.state_meta(), "status": status, "resumed": self.resumed}
        if status == "frame":
            return self.states.submit(step.state.image(self.index), meta)
        return self.states.write(step.state.image(self.index), meta)

    def _seed_video(self, start: int) -> None:
        """Feed the video the frames made before `start`: their PNGs when every video frame has one (lossless),
        else the earlier video's own frames."""
        every, layout = self.layout.video_every, self.layout
        if layout.frame_every and every % layout.frame_every == 0:
            from PIL import Image

            for n, path in _frames(self.folder / "frames", layout.frame_name):
                if n < start and n % every == 0:
                    with Image.open(path) as im:
                        self.video.add(np.asarray(im.convert("RGB")))
            return
        wanted, old = len(range(0, start, every)), self.folder / layout.video_name
        try:
            import imageio.v2 as imageio

            with imageio.get_reader(old, format="FFMPEG") as reader:
                for k, frame in enumerate(reader):
                    if k == wanted:
                        break
                    self.video.add(frame)
        except Exception as e:  # noqa: BLE001 - a video killed mid-write, or none: the resumed part is still kept
            log.warning(
                f"could not read the frames before {start} from {old} ({type(e).__name__}); "
                f"the video keeps {self.video.frames} of them (--save-frames keeps every frame)"
            )

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
        if self.layout.state_every and step.i % self.layout.state_every == 0:
            self.save_state(step, "frame")
        if self.video is not None and step.i % self.layout.video_every == 0:
            self.video.add(image)

    def watched(self, step: Step) -> bool:
        """Whether observers are shown this Step's image (see Layout.watch_every); a still's final image comes with
        finish instead."""
        return (self.layout.final_is_frame or not step.final) and step.i % self.layout.watch_every == 0

    def finish(self, status: str = "complete") -> RunResult:
        """Save the last image as final.png (complete or interrupted), finish the video; what was made."""
        last, image, loss, state = self.last, None, None, None
        if last is not None:
            loss = float(last.loss[self.index])
            image = save_png(
                last.image[self.index], self.folder / "final.png", self._meta(last, status), overwrite=self.reused
            )  # a resumed run replaces its interrupted final.png
            if self.video is not None and status == "complete" and not self.layout.final_is_frame:
                self.video.add(last.image[self.index])
            if status == "interrupted":
                state = self.save_state(last, status)
        if self.states is not None:
            self.states.close()
        if status == "complete":
            remove_state(self.folder)
        videos = self.video.close() if self.video is not None else []
        return RunResult(
            image,
            self.folder,
            status,
            last.i if last else 0,
            loss,
            time.perf_counter() - self.start,
            videos,
            self.resumed,
            state,
        )

    def abort(self) -> None:
        """After an error: drop the unfinished video; a folder that holds nothing is removed."""
        if self.video is not None:
            self.video.abort()
        if self.states is not None:
            with contextlib.suppress(Exception):  # the error being handled matters more than a state's
                self.states.close()
        for sub in (self.folder / "frames", self.folder):
            try:
                sub.rmdir()  # only succeeds when empty
            except OSError:
                pass


def _frames(folder: Path, pattern: str) -> list[tuple[int, Path]]:
    """(step, path) of the frames named like pattern ("step_{:05d}.png") in folder, by step."""
    head, _, tail = pattern.partition("{:05d}")
    name = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    found = [(int(m.group(1)), p) for p in folder.glob("*") if (m := name.fullmatch(p.name))] if folder.is_dir() else []
    return sorted(found)


def _drop_frames_from(folder: Path, pattern: str, start: int) -> None:
    """Frames of step >= start belong to the part being made again: drop them so it can write its own."""
    for n, path in _frames(folder, pattern):
        if n >= start:
            path.unlink()


def write_steps(
    steps: Iterable[Step],
    writers: Sequence[RunWriter],
    on_step: Optional[Callable[[Step], None]] = None,
    on_finish: Optional[Callable[[RunWriter, RunResult], None]] = None,
    observers: Sequence[Observer] = (),
) -> list[RunResult]:
    """Run the loop into the writers (writer b keeps image b); returns their results in order.

    Ctrl-C saves every image as interrupted and raises Interrupted with the results; any other error aborts them.
    """

    def finish(status: str) -> list[RunResult]:
        results = []
        for w in writers:
            results.append(w.finish(status))
            if on_finish is not None:
                on_finish(w, results[-1])
            for o in observers:
                o.finish(w, results[-1])
        for o in observers:
            o.end(status)
        return results

    for o in observers:
        o.begin(writers)
    try:
        for step in steps:
            if on_step is not None:
                on_step(step)
            for o in observers:
                o.step(step)
            for w in writers:
                w.add(step)
                if observers and w.watched(step):
                    for o in observers:
                        o.frame(w, step)
    except KeyboardInterrupt:
        raise Interrupted(finish("interrupted")) from None
    except BaseException:
        for w in writers:
            w.abort()
        for o in observers:
            o.end("error")
        raise
    return finish("complete")
