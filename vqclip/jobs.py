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

Job files come from outside and are read in bounded time and memory: a regular file only (a FIFO or /dev/zero is
refused, see vqclip.files), at most MAX_BYTES, a UTF-8 BOM skipped, YAML without aliases or deep nesting (see
vqclip.safe_yaml); every error names the file and the line.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import numbered_keyframes
from .errors import ConfigError, UsageError
from .files import read_regular
from .safe_yaml import load_json, load_yaml, load_yaml_lines

SEP = "##"
ALIASES = {
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "cutn": "cutouts.cutn",
    "cut_pow": "cutouts.cut_pow",
    "name": "output.name",
    "save_every": "output.save_every",
    "video": "output.video",
    "fps": "output.fps",
}
# numbers YAML 1.1 reads the same way as Python (no octal 010, no 1_000, no 1e5 without a dot)
_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[-+]?[0-9]+\.[0-9]+")
MAX_BYTES = 256 * 2**20  # ~3 million one-line prompts; a bigger file is more likely /dev/urandom than a batch


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
    fix = "give a UTF-8 text, YAML or JSONL file"
    data = read_regular(path, "the job file", fix, max_bytes=MAX_BYTES)
    try:
        text = data.decode("utf-8-sig")  # -sig: a BOM from a Windows editor is not part of the first line
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(f"cannot read the job file {path}: line {line} is not UTF-8 ({e.reason}); {fix}") from None
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
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines(): \x0c or U+2028 inside a prompt is no line end
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, _, overrides = line.partition(f" {SEP}")
        jobs.append(
            Job(len(jobs), prompt.strip(), _parse_overrides(overrides.lstrip("#"), f"{name}:{n}"), f"{name}:{n}")
        )
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
        options[ALIASES.get(key, key)] = _value(value, f"{source}: override {item!r}")
    return options


def _value(text: str, source: str) -> Any:
    """3 -> int, 0.5 -> float, true -> bool, as YAML reads them; a value YAML cannot parse is this line's error."""
    if _INT.fullmatch(text):  # the common case, without the YAML parser (~60 us a value)
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return load_yaml(text, source)


def _item(item: Any, index: int, source: str) -> Job:
    if isinstance(item, str):
        return Job(index, item.strip(), {}, source)
    if not isinstance(item, dict):
        hint = "; quote it to make it a prompt" if isinstance(item, (int, float, bool)) else ""
        what = "null" if item is None else f"a {type(item).__name__} ({str(item)[:40]})"
        raise ConfigError(f"{source}: a job is a prompt or a mapping of config keys, got {what}{hint}")
    for key in item:
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {key!r} is not a config key name; quote it or fix the mapping")
    prompt = item.get("prompt", "")
    if not isinstance(prompt, str):
        what = "empty (null)" if prompt is None else f"a {type(prompt).__name__}, not text"
        raise ConfigError(f"{source}: the prompt is {what}; give it as text, e.g. prompt: a red circle")
    options = {ALIASES.get(k, k): v for k, v in item.items() if k != "prompt"}
    if "size" in options:
        size = options.pop("size")
        if not (isinstance(size, (list, tuple)) and len(size) == 2):
            raise ConfigError(f"{source}: size should be [width, height], got {size!r}")
        options.update(width=size[0], height=size[1])
    options = numbered_keyframes(options, source)  # JSON keys are strings; the schema wants step numbers
    return Job(index, prompt.strip(), options, source)


def _yaml_jobs(text: str, name: str) -> list[Job]:
    data, lines = load_yaml_lines(text, name)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ConfigError(f"{name} should be a YAML list of prompts or job mappings")
    return [_item(item, k, f"{name}:{line}") for k, (item, line) in enumerate(zip(data, lines))]


def _jsonl_jobs(text: str, name: str) -> list[Job]:
    jobs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        item = load_json(line, f"{name}:{n}")
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
