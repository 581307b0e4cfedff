"""Relative paths that come from outside (a URL, a manifest line) checked to name a file inside one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = ["inside"]


def inside(root: Optional[Path], rel: object) -> Optional[Path]:
    """The file root/rel, or None unless rel is a plain relative path ('a/b.png') to a file that really lies in
    root: no absolute path, '..', '.', empty or hidden part (temp files start with a dot), no drive or backslash,
    and no link that leads out of root."""
    if root is None or not isinstance(rel, str) or not rel or any(c in rel for c in "\0\\:"):
        return None
    if any(part in ("", ".", "..") or part.startswith(".") for part in rel.split("/")):
        return None
    try:
        real_root = Path(root).resolve(strict=True)
        path = (real_root / rel).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        return None
    return path if path.is_relative_to(real_root) and path.is_file() else None
