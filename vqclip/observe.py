"""What a run tells those who watch it (the `--preview` page, a notebook display): `write_steps` calls an
`Observer`'s methods as the writers keep the loop's Steps.

Every method runs on the loop's thread, so each must return at once: keep references, hand work to another thread.
Images come only at the writer's frame cadence (`Layout.watch_every`), never every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # types only: the writer imports this module
    from .optimize import Step
    from .writer import RunResult, RunWriter

__all__ = ["Observer"]


class Observer:
    """Does nothing; subclasses override what they watch."""

    def expect(self, steps: int) -> None:
        """The run will yield this many Steps in all, over all its groups (a batch says so before its first)."""

    def begin(self, writers: Sequence[RunWriter]) -> None:
        """A group of images starts: writer b keeps image b of every Step."""

    def step(self, step: Step) -> None:
        """Every Step of the loop. Keep references only: reading a loss on a GPU waits for the step to finish."""

    def frame(self, writer: RunWriter, step: Step) -> None:
        """The writer's image at its frame cadence: step.image[writer.index]."""

    def finish(self, writer: RunWriter, result: RunResult) -> None:
        """The writer's files are written (complete or interrupted); its last Step is writer.last."""

    def end(self, status: str) -> None:
        """The group's loop ended: complete, interrupted or error."""
