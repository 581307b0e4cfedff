"""One small hierarchy of typed errors; the CLI turns each into a one-line message and an exit code."""

from __future__ import annotations

import difflib
from typing import Optional


class VQClipError(Exception):
    """Base class: a failure vqclip can explain in one line. Runtime failures exit with 1."""

    exit_code = 1


class UsageError(VQClipError):
    """Bad input from the user (options, prompts, files): exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """An unknown key, a bad value or an unknown preset."""


class PromptError(UsageError):
    """A prompt that cannot be parsed or is empty."""


class UnknownNameError(ConfigError):
    """A name that is not in a registry: the message suggests the closest valid names and lists them all when they
    are few, else says where to see them (`see`; by default from SEE_ALL for the kind). `where` names the source
    of the name (a preset, --set).

    This is the one place a "did you mean" is made: every registry raises it (CLIP, VQGAN, presets, config keys).
    """

    LIST_AT_MOST = 12  # more names than this make a line nobody reads: suggest, and point to the full list

    def __init__(self, kind: str, name: str, valid, see: Optional[str] = None, where: str = ""):
        valid = sorted(set(valid))
        close = did_you_mean(name, valid)
        message = f"unknown {kind} {name!r}" + (f" in {where}" if where else "")
        if close:
            message += f"; did you mean {_either(close)}?"
        see = see or SEE_ALL.get(kind)
        if len(valid) <= self.LIST_AT_MOST:
            message += f"{' Or' if close else ';'} choose one of: {', '.join(valid)}"
        elif see:
            message += f"{' See' if close else '; see'} {see}"
        elif not close:  # many names and nowhere to send the reader: a few of them
            message += f"; choose one of: {', '.join(valid[:6])} ... ({len(valid)} in all)"
        super().__init__(message)
        self.kind, self.name, self.valid, self.suggestions = kind, name, valid, close


# where every valid name of a kind is shown, for kinds with too many names to list in one line
SEE_ALL = {"CLIP model": "`vqclip models list` for the usual ones (any open_clip NAME:TAG works)"}


def did_you_mean(name: str, valid, n: int = 3) -> list[str]:
    """The valid names closest to `name` (case and `_`/`-`/`/` ignored), closest first; [] when none is close."""

    def norm(s: str) -> str:
        return s.lower().replace("_", "-").replace("/", "-")

    by_norm: dict[str, str] = {}
    for v in valid:
        by_norm.setdefault(norm(v), v)
    target = norm(name)
    if target in by_norm:
        return [by_norm[target]]
    # a dotted name also matches on its last part: `--set lr=...` suggests optim.lr
    tails = {k.rsplit(".", 1)[-1]: v for k, v in by_norm.items() if "." in k and k.rsplit(".", 1)[-1] == target}
    close = [by_norm[k] for k in difflib.get_close_matches(target, list(by_norm), n=n, cutoff=0.6)]
    return list(dict.fromkeys([*tails.values(), *close]))[:n]


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class ModelFilesMissing(UsageError):
    """Model files that are not on disk; the message says which and how to get them."""


class CheckpointError(VQClipError):
    """A checkpoint that is corrupt, unsafe, or does not fit its config."""


class ImageError(UsageError):
    """An init or prompt image that is missing, unreadable or unsupported."""


class DeviceError(UsageError):
    """A device that was asked for but is not available."""


class OutOfMemory(VQClipError):
    """A run that ran out of device memory; the message suggests a size that fits."""


class OutputError(VQClipError):
    """An output that could not be written (permissions, disk full)."""


class DownloadError(VQClipError):
    """A model file that could not be fetched from any of its sources, or whose checksum did not match."""


def first_line(e: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (library messages can span many lines), for one-line errors."""
    lines = str(e).strip().splitlines()
    return lines[0][:limit] if lines else type(e).__name__
