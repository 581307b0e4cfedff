"""YAML and JSON from outside, parsed in bounded time and memory: no aliases, bounded nesting, plain data only.

PyYAML's `safe_load` refuses Python objects but still expands aliases (a 500-byte alias bomb becomes billions
of nodes as soon as anything walks it) and recurses once per nesting level (RecursionError). Job files, model
yamls and presets need neither, so both are refused here with the line they are on. No `${...}` is ever
resolved: the values are plain text, and `refuse_interpolation` lets a caller reject them with a clear message.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["MAX_DEPTH", "check_depth", "load_json", "load_yaml", "load_yaml_lines", "refuse_interpolation"]

MAX_DEPTH = 32  # job files nest 3 deep ({optim: {lr: ...}}); taming yamls 5


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and documents nested deeper than MAX_DEPTH while composing them."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed here; write the value out", mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document of plain data; any problem is a ConfigError naming source and line."""
    return load_yaml_lines(text, source)[0]


def load_yaml_lines(text: str, source: str) -> tuple[Any, list[int]]:
    """load_yaml, plus the line each item of a top-level list starts on (for messages that name the line)."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
        lines = [item.start_mark.line + 1 for item in node.value] if isinstance(node, yaml.SequenceNode) else []
        return data, lines
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source} line {mark.line + 1}" if mark is not None and "\n" in text.rstrip("\n") else source
        raise ConfigError(f"{where} is not valid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise ConfigError(f"{source} is not valid YAML: {str(e).strip().splitlines()[0] if str(e) else e}") from None


def load_json(text: str, source: str) -> Any:
    """Parse one JSON value; deep nesting, huge numbers and NaN/Infinity (not JSON) are ConfigErrors."""

    def no_constant(name: str):
        raise ValueError(f"{name} is not JSON; write a number")

    try:
        data = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source} is not JSON ({e.msg}); write one JSON object per line") from None
    except RecursionError:
        raise ConfigError(f"{source} is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise ConfigError(f"{source} is not usable JSON ({str(e).splitlines()[0]})") from None
    check_depth(data, source)
    return data


def check_depth(data: Any, source: str, depth: int = 1) -> None:
    """Refuse lists and mappings nested more than MAX_DEPTH levels (json.loads allows ~1000)."""
    if depth > MAX_DEPTH:
        raise ConfigError(f"{source} is nested more than {MAX_DEPTH} levels deep")
    items = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    for item in items:
        check_depth(item, source, depth + 1)


def refuse_interpolation(data: Any, source: str, path: str = "") -> None:
    """Refuse any `${...}` string: vqclip never resolves OmegaConf interpolations in files it did not write."""
    if isinstance(data, str):
        if "${" in data:
            raise ConfigError(
                f"{source}: {path or 'a value'} uses an interpolation (${{...}}), which vqclip never "
                f"resolves; write the value itself"
            )
    elif isinstance(data, dict):
        for key, value in data.items():
            refuse_interpolation(value, source, f"{path}.{key}" if path else str(key))
    elif isinstance(data, list):
        for k, value in enumerate(data):
            refuse_interpolation(value, source, f"{path}[{k}]")
