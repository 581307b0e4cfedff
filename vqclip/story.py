"""Story mode: a prompt schedule, so one run morphs from prompt to prompt.

A schedule is laid over a span: the optimisation steps of `generate` and `batch`, or the frames of `animate`.
Two forms, merged: every prompt of either starts at its own step (or frame), and the schedule is all of them in
order; a keyframe on the very step where another story part starts is refused, never dropped silently:
- a prompt `"a seed^a sapling^a great oak"` switching every `story_every` steps or frames (0: split evenly);
- `keyframes`, step or frame -> prompts from there on: `{0: a seed, 150: a sapling}` in a preset or job, or
  `--keyframe 150="a sapling"` on the command line.
So `"a^b" --keyframe 7=c` over 10 steps runs a (0-4), b (5-6), c (7-9).
Each segment is an ordinary prompt string, so `text:weight:stop|...` works inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterable

from .config import Config
from .errors import ConfigError, PromptError

SEP = "^"


@dataclass(frozen=True)
class Span:
    """What a schedule is laid over, with the words its messages use."""

    unit: str  # "step" or "frame"
    whole: str  # what has `length` of them: "run", "animation"
    option: str  # the option that sets the length
    length: Callable[[Config], int]


SPANS = {
    "step": Span("step", "run", "--steps", lambda cfg: cfg.steps),
    "frame": Span("frame", "animation", "--frames", lambda cfg: cfg.animation.frames),
}


def is_story(cfg: Config) -> bool:
    return SEP in cfg.prompt or bool(cfg.keyframes)


def segments(cfg: Config, unit: str = "step") -> list[tuple[int, str]]:
    """[(start, prompt)] sorted by start (a step, or a frame for unit="frame"), the first at 0; a plain prompt is
    one segment."""
    span = SPANS[unit]
    length = span.length(cfg)
    parts = [p.strip() for p in cfg.prompt.split(SEP)] if cfg.prompt.strip() else []
    if len(parts) > 1 and not all(parts):
        raise PromptError(f"story prompt {cfg.prompt!r} has an empty part; write 'a seed^a sapling^a great oak'")
    every = cfg.story_every or max(1, length // max(1, len(parts)))
    schedule = {k * every: text for k, text in enumerate(parts)}
    for key, value in cfg.keyframes.items():
        start, text = int(key), "" if value is None else str(value).strip()
        if start < 0 or not text:
            raise ConfigError(f"keyframe {start}: {text!r} needs a {unit} >= 0 and a prompt")
        if start >= length:
            raise ConfigError(
                f"keyframe {start} ({text!r}) is past the last {unit}: the {span.whole} has {length} "
                f"{unit}s (0-{length - 1}); move it below {length} or raise {span.option}"
            )
        if start in schedule and schedule[start] != text:  # the same prompt twice loses nothing
            raise ConfigError(_collision(cfg, start, text, schedule[start], span))
        schedule[start] = text
    if schedule and 0 not in schedule:
        raise ConfigError(f"keyframes start at {unit} {min(schedule)}; add a keyframe at {unit} 0 or give a prompt")
    late = [s for s in schedule if s >= length]
    if late:
        raise ConfigError(
            f"story prompt {schedule[min(late)]!r} starts at {unit} {min(late)} but the {span.whole} "
            f"has {length} {unit}s; lower --story-every or raise {span.option}"
        )
    return sorted(schedule.items())


def _collision(cfg: Config, start: int, text: str, part: str, span: Span) -> str:
    unit = span.unit
    if SEP not in cfg.prompt:
        return (
            f"keyframe {start} ({text!r}) and the prompt {part!r} both start at {unit} {start}; drop one of them, "
            f"or move the keyframe past {unit} 0"
        )
    every = "--story-every" if span.unit == "step" else "--story-every (frames)"
    return (
        f"keyframe {start} ({text!r}) starts where the story {cfg.prompt!r} switches to {part!r} ({unit} {start}); "
        f"move the keyframe, or set {every} so they do not meet"
    )


def prompt_at(schedule: list[tuple[int, str]], step: int) -> str:
    """The prompt of the segment active at `step` (or frame)."""
    active = [text for start, text in schedule if start <= step]
    return active[-1] if active else ""


def parse_keyframes(items: Iterable[str]) -> dict[int, str]:
    """`--keyframe N=PROMPT` values -> {N: PROMPT}; N is a step (generate, batch) or a frame (animate)."""
    keyframes: dict[int, str] = {}
    for item in items:
        start, eq, text = item.partition("=")
        if not (eq and re.fullmatch(r"\s*[0-9]+\s*", start) and text.strip()):
            raise ConfigError(
                f"--keyframe takes N=PROMPT, a step (frame in animate) number >= 0 and the prompt from "
                f"there on, e.g. --keyframe 150='a sapling'; got {item!r}"
            )
        if int(start) in keyframes:
            raise ConfigError(f"--keyframe {int(start)} is given twice; keep one prompt per step (frame)")
        keyframes[int(start)] = text.strip()
    return keyframes
