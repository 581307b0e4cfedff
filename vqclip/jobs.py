"""Job files for `vqclip batch`: one prompt per line, or YAML / JSONL for richer jobs.

Text form (any extension but .yaml/.yml/.jsonl/.json):

    # a comment: lines whose first non-blank character is # are skipped, and so are blank lines
    a lighthouse in a storm
    a red circle:1|blurry:-0.5      ## seed=3 steps=50
    an oak at dawn                  ## size=384x256 lr=0.05 cutouts.cutn=16
    a seed^a sapling^a great oak    ## story_every=100

Everything after ` ## ` is a list of key=value overrides: any config key (`optim.lr`, `cutouts.cutn`,
`output.save_every` ...) or a short alias from ALIASES. A single # inside a prompt is part of the prompt.

YAML form: a list whose items are prompts or mappings of config keys (`{prompt: ..., seed: 3, optim: {lr: 0.05},
keyframes: {0: a seed, 100: a sapling}}`). JSONL form: one such JSON object (or string) per line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import numbered_keyframes
from .errors import ConfigError, UsageError

SEP = "##"
ALIASES = {"lr": "optim.lr", "optimizer": "optim.name", "cutn": "cutouts.cutn", "cut_pow": "cutouts.cut_pow",
           "name": "output.name", "save_every": "output.save_every", "video": "output.video", "fps": "output.fps"}


@dataclass
class Job:
    """One prompt of a batch and the config keys that differ from the batch's."""

    index: int  # position in the file, from 0
    prompt: str
    options: dict  # config keys (dotted or nested) -> values
    source: str  # "prompts.txt:12", for messages
    id: str = ""  # stable across runs: a hash of prompt and options, and which repeat of them this is


def read_jobs(path: Path) -> list[Job]:
    """Parse a job file by its extension; every job gets a stable id for resume."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the job file {path} ({e}); give a UTF-8 text, YAML or JSONL file") from None
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        jobs = _yaml_jobs(text, path.name)
    elif suffix in (".jsonl", ".json"):
        jobs = _jsonl_jobs(text, path.name)
    else:
        jobs = _text_jobs(text, path.name)
    if not jobs:
        raise UsageError(f"{path} holds no prompts; write one prompt per line")
    return _with_ids(jobs)


def _text_jobs(text: str, name: str) -> list[Job]:
    jobs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, _, overrides = line.partition(f" {SEP}")
        jobs.append(Job(len(jobs), prompt.strip(), _parse_overrides(overrides.lstrip("#"), f"{name}:{n}"),
                        f"{name}:{n}"))
    return jobs


def _parse_overrides(text: str, source: str) -> dict:
    options: dict = {}
    for item in text.split():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"{source}: override {item!r} is not key=value (e.g. ## seed=3 steps=50)")
        if key == "size":
            w, x, h = value.lower().partition("x")
            if not (x and w.isdigit() and h.isdigit()):
                raise ConfigError(f"{source}: size={value} should be WIDTHxHEIGHT, e.g. size=384x256")
            options.update(width=int(w), height=int(h))
            continue
        options[ALIASES.get(key, key)] = yaml.safe_load(value)  # 3 -> int, 0.5 -> float, true -> bool
    return options


def _item(item: Any, index: int, source: str) -> Job:
    if isinstance(item, str):
        return Job(index, item.strip(), {}, source)
    if not isinstance(item, dict):
        raise ConfigError(f"{source}: a job is a prompt or a mapping of config keys, got {type(item).__name__}")
    options = {ALIASES.get(k, k): v for k, v in item.items() if k != "prompt"}
    if "size" in options:
        size = options.pop("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise ConfigError(f"{source}: size should be [width, height], got {size!r}")
        options.update(width=size[0], height=size[1])
    options = numbered_keyframes(options, source)  # JSON keys are strings; the schema wants step numbers
    return Job(index, str(item.get("prompt", "")).strip(), options, source)


def _yaml_jobs(text: str, name: str) -> list[Job]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{name} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{name} should be a YAML list of prompts or job mappings")
    return [_item(item, k, f"{name} item {k + 1}") for k, item in enumerate(data)]


def _jsonl_jobs(text: str, name: str) -> list[Job]:
    jobs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{name}:{n} is not JSON ({e.msg}); write one JSON object per line") from None
        jobs.append(_item(item, len(jobs), f"{name}:{n}"))
    return jobs


def _with_ids(jobs: list[Job]) -> list[Job]:
    """Ids survive reordering and edits elsewhere in the file; a repeated identical job gets -2, -3 ..."""
    seen: dict[str, int] = {}
    for job in jobs:
        digest = hashlib.sha1(json.dumps([job.prompt, job.options], sort_keys=True, default=str).encode())
        key = digest.hexdigest()[:12]
        seen[key] = seen.get(key, 0) + 1
        job.id = key if seen[key] == 1 else f"{key}-{seen[key]}"
    return jobs
