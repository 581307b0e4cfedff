"""The memory estimate's measurements kept on disk, so that a start with cached models does not measure again.

Measuring runs the models on the `meta` device, whose kernels are Python: for the f16_16384 decoder and
ViT-B/32 that measured 1.4 + 2.3 CPU seconds (a loaded machine), more than loading both models' weights. What is
measured depends only on the architecture, the size and the fast path's switches, so it is kept by those (and
torch's and vqclip's versions) in `<checkpoints>/cache/memory-estimates.json`. The file is only a cache: an
entry that is not a list of non-negative integers of the expected length is measured again, and a file that
cannot be read or written changes nothing but the time. No checkpoints folder is made for it: without one (a run
on model files given by path, say) nothing is kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch

from .errors import OutputError
from .locks import locked, temp_name
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
    return (
        isinstance(value, list)
        and len(value) == n
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    )


def cached(kind: str, key: list, n: int, measure: Callable[[], list[int]]) -> list[int]:
    """measure()'s n integers for (kind, key), from the cache file when it holds them, else measured and kept."""
    name = json.dumps([kind, key, torch.__version__, __version__], sort_keys=True)
    path = cache_file()
    entries = _read(path)
    if _valid(entries.get(name), n):
        return entries[name]
    value = [int(v) for v in measure()]
    if not path.parent.parent.is_dir():
        return value
    try:
        path.parent.mkdir(exist_ok=True)
        with locked(path, timeout=10):  # another process may have added entries since the read: keep them
            entries = _read(path)
            entries = {k: v for k, v in list(entries.items())[-(_MAX_ENTRIES - 1) :]}
            entries[name] = value
            tmp = temp_name(path)
            try:
                tmp.write_text(json.dumps(entries))
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, OutputError):  # a read-only checkpoints dir, or a lock held too long: measure next time too
        pass
    return value
