"""Importing open_clip without timm until a model needs it.

open_clip imports timm (and, through it, much of huggingface_hub) when it is first imported, for the vision towers
of a few architectures (ConvNeXt, some ViTs) that timm builds. The models most people use (OpenAI's ViTs and
ResNets, every local-dir toy model) never touch it, and the import cost ~0.45 s of a ~16 s start on a 2-core CPU.
So open_clip is imported with timm held back, and timm is brought in (and open_clip's adapter module re-run so it
sees it) just before a model whose config names a timm tower is built. If timm was imported already, or an
import of open_clip is under way elsewhere, nothing is held back.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

__all__ = ["import_open_clip", "needs_timm", "ensure_timm"]

_ADAPTER = "open_clip.timm_model"  # the one open_clip module that imports timm (and sets it None without it)


def import_open_clip():
    """The open_clip module, imported (the first time) with timm held back."""
    if "open_clip" in sys.modules:
        return sys.modules["open_clip"]
    hold = "timm" not in sys.modules
    if hold:
        sys.modules["timm"] = None  # `import timm` raises ImportError, which open_clip's adapter expects
    try:
        import open_clip
    finally:
        if hold and sys.modules.get("timm", 0) is None:
            del sys.modules["timm"]
    return open_clip


def _model_cfg(open_clip, build: str) -> dict | None:
    if build.startswith("local-dir:"):
        try:
            return json.loads((Path(build.split(":", 1)[1]).expanduser() / "open_clip_config.json").read_text())[
                "model_cfg"
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # open_clip's own reading reports what is wrong with the folder
    return open_clip.get_model_config(build)


def needs_timm(open_clip, build: str) -> bool:
    """Whether building `build` (an open_clip name or schema) may need timm: a timm vision tower, or a config
    vqclip cannot read before open_clip does."""
    if build.startswith("hf-hub:"):
        return True  # its config is fetched by open_clip, after this
    cfg = _model_cfg(open_clip, build)
    if not isinstance(cfg, dict):
        return False
    vision = cfg.get("vision_cfg")
    return isinstance(vision, dict) and bool(vision.get("timm_model_name"))


def ensure_timm(open_clip, build: str) -> None:
    """Make timm available to open_clip before it builds `build`, if that model needs it and it is installed."""
    adapter = sys.modules.get(_ADAPTER)
    if adapter is None or getattr(adapter, "timm", None) is not None or not needs_timm(open_clip, build):
        return
    try:
        import timm  # noqa: F401
    except ImportError:
        return  # open_clip says it needs timm installed, in its own words
    # re-run the adapter module in place: TimmModel, already bound elsewhere in open_clip, reads its globals there
    importlib.reload(adapter)
