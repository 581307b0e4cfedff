"""The memory estimate's measurements kept on disk, so that a start with cached models does not measure again.

Measuring runs the models on the `meta` device, whose kernels are Python: for the f16_16384 decoder and
ViT-B/32 that measured 1.4 + 2.3 CPU seconds (a loaded machine), more than loading both models' weights. What is
measured depends only on the architecture, the size and the fast path's switches, so it is kept by those (and
torch's and vqclip's versions) in `<checkpoints>/cache/memory-estimates.json`. The file is only a cache: an
entry that is not a list of non-negative integers of the expected length is measured again, and a file that
cannot be read or written changes nothing but the time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from .store.registry import checkpoints_dir
from .version import __version__

__all__ = ["cached", "cache_file"]

_MAX_ENTRIES = 256  # older entries are dropped beyond this many


def cache_file() -> Path:
    return checkpoints_dir(None) / "cache" / "memory-estimates.json"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _valid(value, n: int) -> bool:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))


def cached(kind: str, key: list, n: int, measure: Callable[[], list[int]]) -> list[int]:
    """measure()'s n integers for (kind, key), from the cache file when it holds them, else measured and kept."""
    name = json.dumps([kind, key, torch.__version__, __version__], sort_keys=True)
    path = cache_file()
    entries = _read(path)
    if _valid(entries.get(name), n):
        return entries[name]
    value = [int(v) for v in measure()]
    entries = {k: v for k, v in list(entries.items())[-(_MAX_ENTRIES - 1):]}
    entries[name] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries))
        os.replace(tmp, path)
    except OSError:  # a read-only checkpoints dir: measure every time, as before
        pass
    return value
