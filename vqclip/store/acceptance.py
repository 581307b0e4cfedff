"""What a downloaded VQGAN file must pass before it gets its final name: a size bound, a deadline, and, for a
file without a published hash, loading as what it claims to be (trust on first use trusts only a file that works).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import UsageError

__all__ = ["SIZE_MARGIN", "UNKNOWN_SIZE", "deadline", "loads_as", "max_bytes"]

# a download may be this much larger than the registry's approximate size; a yaml is at most MAX_YAML_BYTES
SIZE_MARGIN = 1.5
UNKNOWN_SIZE = 4e9  # bytes allowed when the registry states no size: twice the largest published VQGAN


def max_bytes(entry, kind: str) -> Optional[int]:
    """The most bytes a file of this registry entry may have: an endless body stops there."""
    from ..vqgan import MAX_YAML_BYTES

    if kind == "yaml":
        return MAX_YAML_BYTES
    return int(entry.size_mb * 1e6 * SIZE_MARGIN) + 2**20 if entry.size_mb else int(UNKNOWN_SIZE)


def deadline(entry, kind: str) -> float:
    """Seconds one file may take: $VQCLIP_DOWNLOAD_DEADLINE, else 10 minutes plus the size at 100 kB/s."""
    if os.environ.get("VQCLIP_DOWNLOAD_DEADLINE"):
        try:
            seconds = float(os.environ["VQCLIP_DOWNLOAD_DEADLINE"])
            if not 0 < seconds < float("inf"):
                raise ValueError
            return seconds
        except ValueError:
            raise UsageError(
                f"VQCLIP_DOWNLOAD_DEADLINE={os.environ['VQCLIP_DOWNLOAD_DEADLINE']!r} is not a number of seconds"
            ) from None
    size = (entry.size_mb or 1000) * 1e6 if kind == "ckpt" else 0
    return 600 + size / 100e3


def loads_as(kind: str, config: Path, name: str, loaded: dict):
    """The check a file without a known hash passes before it gets its name and its lock entry."""
    from ..vqgan import load_vqgan, read_vqgan_yaml

    if kind == "yaml":
        return lambda partial: read_vqgan_yaml(partial)
    return lambda partial: loaded.update(model=load_vqgan(config, partial, name=name))
