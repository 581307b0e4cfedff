"""Offline mode, decided in one place: `--offline` or VQCLIP_OFFLINE=1 forbid every use of the network."""

from __future__ import annotations

import os

__all__ = ["is_offline", "set_offline"]

ENV = "VQCLIP_OFFLINE"


def is_offline() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def set_offline(offline: bool = True) -> None:
    """Turn offline mode on for this process (and the processes it starts); False leaves it as it is."""
    if offline:
        os.environ[ENV] = "1"
