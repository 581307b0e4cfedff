"""The observer behind `--preview`: it takes references on the loop's thread and does the work on its own.

On the loop's thread (vqclip.observe's rule: return at once) it only notes each Step's loss tensor and, at the
frame cadence, queues a reference to the image. Its encoder thread reads the losses (on a GPU, the one wait for
the device happens there), encodes the image as PNG (JPEG above 256x256: ~10x faster to encode), works out the
time left and publishes the events. A frame that a newer one of the same image overtakes in the queue is dropped.
"""

from __future__ import annotations

import base64
import io
import os
import queue
import threading
import time
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import quote

import torch

from ..images import to_pil
from ..observe import Observer
from .state import LiveState

__all__ = ["LivePreview", "data_url"]

PNG_MAX_PIXELS = 256 * 256


def data_url(image: torch.Tensor) -> str:
    """An image [3, H, W] in [0, 1] as a data: URL (the page shows it without another request)."""
    pil = to_pil(image)
    buffer = io.BytesIO()
    if pil.width * pil.height <= PNG_MAX_PIXELS:
        pil.save(buffer, format="PNG")
        kind = "png"
    else:
        pil.save(buffer, format="JPEG", quality=90)
        kind = "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buffer.getvalue()).decode()}"


class LivePreview(Observer):
    """Feeds a LiveState from a run; `close(status)` publishes what is left and ends the page's stream."""

    def __init__(self, state: LiveState):
        self.state = state
        self._tasks: queue.Queue = queue.Queue()
        self._latest: dict[tuple[int, int], int] = {}  # (group, slot) -> the newest frame's step queued for it
        self._group, self._group_start = 0, None
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, loss [B]) not handed over yet
        self._expected, self._fixed_expected, self._seen = 0, False, 0
        self._first: Optional[float] = None
        self.status = "complete"
        self._thread = threading.Thread(target=self._work, name="vqclip-preview-encoder", daemon=True)
        self._thread.start()

    # the loop's thread

    def expect(self, steps: int) -> None:
        self._expected, self._fixed_expected = steps, True

    def begin(self, writers: Sequence) -> None:
        if self.state.root is None:  # one image's run: the server reads only its folder
            self.state.root = writers[0].folder
        if not self._fixed_expected:
            w = writers[0]
            self._expected += w.cfg.animation.frames if w.layout.final_is_frame else w.cfg.steps + 1
        self._group += 1
        slots = [
            {
                "index": b,
                "prompt": w.cfg.prompt,
                "seed": w.cfg.seed,
                "name": w.folder.name,
                "steps": w.cfg.animation.frames if w.layout.final_is_frame else w.cfg.steps,
                "step": None,
                "image": None,
                "active": None,
                "status": "running",
                "loss": [],
            }
            for b, w in enumerate(writers)
        ]
        self._pending, self._group_start = [], None
        self._tasks.put(("begin", {"slots": slots}))

    def step(self, step) -> None:
        if self._group_start is None:
            self._group_start = step.i
            if not self._fixed_expected:
                self._expected -= step.i  # a resumed run starts part-way
        self._seen += 1
        if self._first is None:
            self._first = time.perf_counter()
        self._pending.append((step.i, step.loss))

    def frame(self, writer, step) -> None:
        self._hand_over_losses()
        key = self._group, writer.index
        self._latest[key] = step.i
        self._tasks.put(("frame", key, step.i, step.image[writer.index], step.extras.get("prompt"), self._progress()))

    def finish(self, writer, result) -> None:
        self._hand_over_losses()
        image = writer.last.image[writer.index] if writer.last is not None else None
        self._latest[self._group, writer.index] = 1 << 62  # no frame queued before may replace the final image
        self._tasks.put(("finished", writer.index, image, writer.cfg, result, self._progress()))

    def end(self, status: str) -> None:
        if status != "complete":
            self.status = status

    def _hand_over_losses(self) -> None:
        if self._pending:
            self._tasks.put(("loss", self._pending))
            self._pending = []

    def _progress(self) -> tuple[int, int, float]:
        return self._seen, self._expected, time.perf_counter()

    # the run's end, from the thread that runs it

    def close(self, status: Optional[str] = None) -> None:
        """Publish every queued event, then end the page's stream with the run's status (by default: complete,
        unless a group of images ended otherwise)."""
        if not self._thread.is_alive():
            return  # closed already
        self._tasks.put(None)
        self._thread.join()
        self.state.close(status or self.status)

    # the encoder's thread

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                self._do(task)
            except Exception as e:  # noqa: BLE001 - the page is a view: a failure to draw it never stops a run
                self.state.publish("warning", {"message": f"preview: {type(e).__name__}: {e}"})

    def _do(self, task: tuple) -> None:
        kind = task[0]
        if kind == "begin":
            self.state.publish("begin", task[1])
        elif kind == "loss":
            losses = torch.stack([loss.detach().float().reshape(-1) for _, loss in task[1]]).cpu().tolist()
            self.state.publish("loss", {"points": [[i, v] for (i, _), v in zip(task[1], losses)]})
        elif kind == "frame":
            _, (group, slot), i, image, active, progress = task
            if i < self._latest.get((group, slot), -1):
                return  # a newer frame of this image is queued (or its final one): draw that one
            self.state.publish(
                "frame", {"slot": slot, "step": i, "image": data_url(image), "active": active, **self._timing(progress)}
            )
        elif kind == "finished":
            _, slot, image, cfg, result, progress = task
            record = {
                "prompt": cfg.prompt,
                "seed": cfg.seed,
                "status": result.status,
                "step": result.step,
                "loss": result.loss,
                "seconds": round(result.seconds, 1),
                "name": result.folder.name,
                "image": self._url(result.image),
                "videos": [self._url(v) for v in result.videos],
            }
            event = {
                "slot": slot,
                "status": result.status,
                "step": result.step,
                "record": record,
                **self._timing(progress),
            }
            if image is not None:
                event["image"] = data_url(image)
            self.state.publish("finished", event)

    def _timing(self, progress: tuple[int, int, float]) -> dict:
        """Progress and the time left: the mean time of the steps so far times the steps still to come."""
        seen, expected, now = progress
        elapsed = now - self._first if self._first is not None else 0.0
        eta = elapsed / (seen - 1) * max(expected - seen, 0) if seen > 1 else None
        return {"progress": {"seen": seen, "expected": expected}, "eta": eta, "elapsed": elapsed}

    def _url(self, path: Optional[Path]) -> Optional[str]:
        """A run's file as the page links it (files/<path in the run's folder>)."""
        if path is None or self.state.root is None:
            return None
        rel = Path(os.path.relpath(path, self.state.root)).as_posix()
        return None if rel.startswith("..") else "files/" + quote(rel)
