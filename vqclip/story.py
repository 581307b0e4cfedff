"""Story mode: a prompt schedule, so one run morphs from prompt to prompt.

Two forms, merged (a keyframe wins at the same step):
- a prompt `"a seed^a sapling^a great oak"` switching every `story_every` steps (0: the steps split evenly);
- `keyframes` in a YAML preset or job, step -> prompts from that step on: `{0: a seed, 150: a sapling}`.
Each segment is an ordinary prompt string, so `text:weight:stop|...` works inside it.
"""

from __future__ import annotations

from .config import Config
from .errors import ConfigError, PromptError

SEP = "^"


def is_story(cfg: Config) -> bool:
    return SEP in cfg.prompt or bool(cfg.keyframes)


def segments(cfg: Config) -> list[tuple[int, str]]:
    """[(start_step, prompt)] sorted by step, the first at step 0; a plain prompt is one segment."""
    parts = [p.strip() for p in cfg.prompt.split(SEP)] if cfg.prompt.strip() else []
    if len(parts) > 1 and not all(parts):
        raise PromptError(f"story prompt {cfg.prompt!r} has an empty part; write 'a seed^a sapling^a great oak'")
    every = cfg.story_every or max(1, cfg.steps // max(1, len(parts)))
    schedule = {k * every: text for k, text in enumerate(parts)}
    for step, text in cfg.keyframes.items():
        if int(step) < 0 or not str(text).strip():
            raise ConfigError(f"keyframe {step}: {text!r} needs a step >= 0 and a prompt")
        schedule[int(step)] = str(text).strip()
    if schedule and 0 not in schedule:
        raise ConfigError(f"keyframes start at step {min(schedule)}; add a keyframe at step 0 or give a prompt")
    late = [s for s in schedule if s >= cfg.steps]
    if late:
        raise ConfigError(f"story prompt {schedule[min(late)]!r} starts at step {min(late)} but the run has "
                          f"{cfg.steps} steps; lower story_every or raise --steps")
    return sorted(schedule.items())


def prompt_at(schedule: list[tuple[int, str]], step: int) -> str:
    """The prompt of the segment active at `step`."""
    active = [text for start, text in schedule if start <= step]
    return active[-1] if active else ""
