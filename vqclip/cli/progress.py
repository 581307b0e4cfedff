"""A tqdm bar fed by the loop's steps (step, loss, it/s)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


class StepBar:
    """Shows the loss every few steps only: reading it forces a host/device sync."""

    def __init__(self, total: int, every: int = 5, desc: str = "generate"):
        self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        self.every = every

    def update(self, step) -> None:
        if step.final:
            self.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}")
            return
        self.bar.update(1)
        if step.i % self.every == 0:
            self.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}", refresh=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        return False
