"""Multipliers over a run, by name: the learning rate's schedule and the init image's pull both use them.

Every schedule maps the run's progress (step / steps, in [0, 1)) to a factor of the base value.
"""

from __future__ import annotations

import math
from typing import Callable

SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda t: 1.0,
    "linear": lambda t: 1.0 - t,  # to 0 at the last step
    "cosine": lambda t: 0.5 * (1 + math.cos(math.pi * t)),
    # pixray's learning_rate_drops=[75]: the rate is divided by 10 for the last quarter of the run
    "drop75": lambda t: 1.0 if t < 0.75 else 0.1,
    # a tenth of the run warms up linearly (from 10%), then cosine to 0: what the toy models are trained with
    "warmup-cosine": lambda t: 0.1 + 9 * t if t < 0.1 else 0.5 * (1 + math.cos(math.pi * (t - 0.1) / 0.9)),
}


def factor(name: str, step: int, steps: int) -> float:
    return SCHEDULES[name](step / max(1, steps))
