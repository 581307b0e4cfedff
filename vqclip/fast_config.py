"""A batch job's config from the batch's, without OmegaConf when the job's options are plain values.

`config.resolve` merges through OmegaConf (~17 ms a job), which turned a 100,000-line job file into half an hour
of planning before the first image. Most job lines set a few scalars (`## steps=50 lr=0.05 size=384x256`):
`apply_plain` sets those straight on a copy of the batch's Config when each value already has its field's type,
then validates it as `resolve` does. Anything else (a list, a keyframe map, a string for a number, an unknown
key) returns None, and the caller takes the OmegaConf path, which gives the same result or the same error.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from typing import Any, Optional

from .config import Config
from .validate import validate

__all__ = ["apply_plain"]

_NO = object()


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, Any]:
    """Field name -> type of a config dataclass, with annotations resolved."""
    return typing.get_type_hints(cls)


def _plain(kind: Any, value: Any) -> Any:
    """value as the field type `kind` holds it, when OmegaConf would take it unchanged (int -> float aside)."""
    if typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if value is None:
            return None
        return _plain(args[0], value) if len(args) == 1 else _NO
    if kind is bool:
        return value if isinstance(value, bool) else _NO
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if kind is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    return _NO  # lists, dicts, nested configs: OmegaConf's job


def _flat(options: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in options.items():
        if isinstance(value, dict) and key != "keyframes":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_plain(base: Config, options: dict) -> Optional[Config]:
    """A validated copy of base with options (dotted or nested keys) set, or None when OmegaConf must do it."""
    cfg = copy.deepcopy(base)
    for key, value in _flat(options).items():
        if value is None:  # `resolve` drops options that are None (not given)
            continue
        *parents, leaf = key.split(".")
        node: Any = cfg
        for name in parents:
            node = getattr(node, name, None) if name in _fields(type(node)) else None
            if not dataclasses.is_dataclass(node):
                return None
        kind = _fields(type(node)).get(leaf)
        plain = _NO if kind is None else _plain(kind, value)
        if plain is _NO:
            return None
        setattr(node, leaf, plain)
    validate(cfg)
    return cfg
