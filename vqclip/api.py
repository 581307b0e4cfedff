"""The Python API as a notebook uses it: an optional progress bar, PIL images, and models kept between calls.

    import vqclip
    cfg = vqclip.resolve(["toy"], options={"prompt": "a blue square", "seed": 1})
    image = vqclip.image(cfg, progress=True)     # a PIL image; the bar is a widget in Jupyter, text elsewhere
    gen = vqclip.Generator()                     # loads the models once, for every call whose model files match
    images = [gen.image(vqclip.resolve(["toy"], options={"prompt": p})) for p in ("a red circle", "a blue square")]

`generate` yields the loop's Steps and writes nothing; `run` also writes frames, final.png and the video like
`vqclip generate`. Both go through `runner.prepare_run`, the one way a run is assembled.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch

from . import runner
from .config import Config
from .images import to_pil
from .observe import Observer
from .optimize import Step
from .runner import ModelCache, Models
from .writer import RunResult

__all__ = ["Generator", "ProgressBar", "generate", "image", "run", "with_progress"]

Cache = Optional[Models | ModelCache]
LOSS_EVERY = 5  # steps between loss readings on the bar: each reading waits for the device


class ProgressBar:
    """A tqdm.auto bar over a run's steps (a widget in Jupyter, text on stderr elsewhere), with the loss."""

    def __init__(self, total: int, desc: str = "generate"):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="step")

    def __call__(self, step: Step) -> None:
        if not step.final:
            self.bar.update(1)
        if step.final or step.i % LOSS_EVERY == 0:
            self.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}", refresh=step.final)

    def close(self) -> None:
        self.bar.close()


def with_progress(steps: Iterable[Step], total: int, desc: str = "generate") -> Iterator[Step]:
    """Yield the steps while a ProgressBar counts them."""
    bar = ProgressBar(total, desc)
    try:
        for step in steps:
            bar(step)
            yield step
    finally:
        bar.close()


def generate(
    cfg: Config, models: Cache = None, device: Optional[torch.device] = None, progress: bool = False
) -> Iterator[Step]:
    """Yield the Steps of one image for cfg; nothing is written (models load when not given)."""
    steps = runner.generate(cfg, models, device)
    yield from with_progress(steps, cfg.steps) if progress else steps


def image(cfg: Config, models: Cache = None, device: Optional[torch.device] = None, progress: bool = False):
    """The final image for cfg as a PIL image; nothing is written. Its seed is the one in cfg (drawn if None)."""
    *_, last = generate(cfg, models, device, progress)
    return to_pil(last.image[0])


def run(
    cfg: Config,
    models: Cache = None,
    device: Optional[torch.device] = None,
    on_step: Optional[Callable[[Step], None]] = None,
    progress: bool = False,
    observers: Sequence[Observer] = (),
) -> RunResult:
    """Generate one image for cfg and write its outputs like `vqclip generate`; returns where they went.
    `observers` (vqclip.observe.Observer: the preview page, vqclip.NotebookDisplay, your own) watch it."""
    prepared = runner.prepare_run(cfg, device=device, models=models)
    if not progress:
        return runner.run_image(prepared, on_step, observers)
    bar = ProgressBar(cfg.steps)

    def show(step: Step) -> None:
        bar(step)
        if on_step is not None:
            on_step(step)

    try:
        return runner.run_image(prepared, show, observers)
    finally:
        bar.close()


class Generator:
    """Models kept loaded between calls: the first call loads them, later calls with the same model files (and
    device) reuse them; a call with other files frees them and loads its own. The natural way to make many images.

        gen = vqclip.Generator(device="cuda")
        for prompt in prompts:
            gen.image(vqclip.resolve(options={"prompt": prompt}), progress=True).save(f"{prompt}.png")
    """

    def __init__(self, device: Optional[str | torch.device] = None):
        self.device = torch.device(device) if device is not None else None
        self.models = ModelCache()

    def generate(self, cfg: Config, progress: bool = False) -> Iterator[Step]:
        """The Steps of one image for cfg (see vqclip.generate)."""
        return generate(cfg, self.models, self.device, progress)

    def image(self, cfg: Config, progress: bool = False):
        """The final image for cfg as a PIL image (see vqclip.image)."""
        return image(cfg, self.models, self.device, progress)

    def run(
        self,
        cfg: Config,
        on_step: Optional[Callable[[Step], None]] = None,
        progress: bool = False,
        observers: Sequence[Observer] = (),
    ) -> RunResult:
        """One image for cfg with its files written (see vqclip.run)."""
        return run(cfg, self.models, self.device, on_step, progress, observers)
