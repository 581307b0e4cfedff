"""Progress bars on stderr: the loop's steps (step, loss, it/s) and downloads (bytes, rate)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ..store import Progress


class StepBar:
    """Shows the loss every few steps only: reading it forces a host/device sync."""

    def __init__(self, total: int, every: int = 5, desc: str = "generate", initial: int = 0):
        self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True, initial=initial)
        self.every = every

    def update(self, step) -> None:
        if step.final:
            self.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}")
            return
        self.bar.update(1)
        if step.i % self.every == 0:
            self.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}", refresh=False)

    def close(self) -> None:
        """End the bar's line (a message printed next starts on its own line); closing twice is harmless."""
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class DownloadBar:
    """A tqdm bar per file, in bytes with the rate; a resumed download starts where its partial ends."""

    def __init__(self):
        self.bar = None
        self.name = None

    def __call__(self, p: Progress) -> None:
        if p.name != self.name:
            self.close()
            self.name = p.name
            self.bar = tqdm(
                total=p.total,
                initial=0,
                desc=p.name,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
                miniters=1,
            )
            self.bar.update(p.done)
            return
        self.bar.update(p.done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.name = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
