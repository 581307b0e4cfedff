"""A live display for notebooks: one image updated in place at the run's frame cadence, and a tqdm.auto bar.

Opt-in from the Python API; IPython is imported only when a display is made, so the CLI never needs it:

    from vqclip.notebook import NotebookDisplay
    result = vqclip.run(cfg, observers=[NotebookDisplay()])             # frames every output.save_every steps
    for step in NotebookDisplay().watch(vqclip.generate(cfg), every=10):  # the loop alone, nothing written
        ...
"""

from __future__ import annotations

from typing import Iterable, Iterator, Optional, Sequence

from .errors import UsageError
from .images import to_pil
from .observe import Observer
from .optimize import Step

__all__ = ["NotebookDisplay"]

MIN_SIDE = 256  # a smaller image (the toy world's 32x32) is scaled up, without blurring, to be seen


class NotebookDisplay(Observer):
    """Shows a run in the notebook cell that started it; the images of a batched step side by side."""

    def __init__(self, desc: str = "vqclip"):
        try:
            from IPython.display import DisplayHandle
        except ImportError:
            raise UsageError("the notebook display needs IPython; pip install ipython (Jupyter has it)") from None
        self._handle = DisplayHandle()
        self._shown = False
        self.desc = desc
        self.bar = None

    # as an observer of vqclip.run (through vqclip.writer.write_steps)

    def begin(self, writers: Sequence) -> None:
        w = writers[0]
        self._open(w.cfg.animation.frames if w.layout.final_is_frame else w.cfg.steps)

    def step(self, step: Step) -> None:
        if self.bar is not None and not step.final:
            self.bar.update(1)

    def frame(self, writer, step: Step) -> None:
        if writer.index == 0:  # one picture of the whole batch per step
            self.show(step)

    def finish(self, writer, result) -> None:
        if writer.index == 0 and writer.last is not None:
            self.show(writer.last)

    def end(self, status: str) -> None:
        if self.bar is not None:
            if status != "complete":
                self.bar.set_postfix_str(status)
            self.bar.close()
            self.bar = None

    # around the loop alone (vqclip.generate)

    def watch(self, steps: Iterable[Step], every: int = 10, total: Optional[int] = None) -> Iterator[Step]:
        """Yield the Steps unchanged, showing the image every `every` steps and at the end."""
        self._open(total)
        status = "interrupted"
        try:
            for step in steps:
                self.step(step)
                if step.final or step.i % every == 0:
                    self.show(step)
                yield step
            status = "complete"
        finally:
            self.end(status)

    def show(self, step: Step) -> None:
        """Replace the displayed image with this Step's (its images side by side) and its loss."""
        from PIL import Image

        images = [to_pil(image) for image in step.image]
        w, h = sum(im.width for im in images), max(im.height for im in images)
        picture = Image.new("RGB", (w, h))
        x = 0
        for im in images:
            picture.paste(im, (x, 0))
            x += im.width
        if h < MIN_SIDE:
            scale = -(-MIN_SIDE // h)
            picture = picture.resize((w * scale, h * scale), Image.NEAREST)
        if self._shown:
            self._handle.update(picture)
        else:
            self._handle.display(picture)
            self._shown = True
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}")

    def _open(self, total: Optional[int]) -> None:
        from tqdm.auto import tqdm

        self.end("complete")
        self.bar = tqdm(total=total, desc=self.desc, unit="step")
