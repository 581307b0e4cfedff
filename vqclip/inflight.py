"""What an earlier batch left in flight: each unfinished job's own folder, and the saved state it continues from.

A job's folder is the one its last manifest record names (an image saved as interrupted), else the name the job
is given (`NNNN-<prompt>-s<seed>`). It is reused only when it is this job's: empty (killed before its first frame),
or holding vqclip's state or PNGs for this job (same id, or same prompt and seed); any other folder is left alone
and the job gets a new one. The state is used when it matches the job (`state.check_state`); otherwise the job
starts again from step 0 in its folder, with a one-line warning that says what differed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

from .config import Config
from .outputs import read_png_metadata
from .plan import Plan
from .resume import check_state
from .state import SIDECAR, SavedState, StateError, read_state
from .writer import ResumeAt

__all__ = ["InFlight", "in_flight"]

log = logging.getLogger("vqclip")


@dataclass(frozen=True)
class InFlight:
    """An unfinished job's folder and the state it continues from (None: it starts again from step 0)."""

    folder: Path
    saved: Optional[SavedState] = None

    @property
    def step(self) -> int:
        return self.saved.step if self.saved is not None else 0

    def resume_at(self) -> ResumeAt:
        return ResumeAt.of(self.saved) if self.saved is not None else ResumeAt(self.folder)


def in_flight(
    jobs: Iterable[tuple[str, str, Config, Plan, str]], out: Path, records: list[dict], device: torch.device
) -> dict[str, InFlight]:
    """For each unfinished job (id, folder name, cfg, plan, source) whose folder an earlier run left: where and
    from which state it continues. Needs no model: runs before any loads."""
    out = Path(out)
    recorded = {r["id"]: r["folder"] for r in records if isinstance(r.get("folder"), str) and "id" in r}
    found = {}
    for job_id, name, cfg, plan, source in jobs:
        folder = _inside(out, recorded.get(job_id)) or out / name
        if not folder.is_dir() or not _is_this_jobs(folder, cfg, job_id):
            continue
        saved = None
        if (folder / SIDECAR).is_file():
            try:
                saved = read_state(folder)
                if saved.meta.get("job") != job_id:
                    raise StateError(f"the state in {folder} is another job's")
                check_state(saved, cfg, plan, "still", device)
            except StateError as e:
                log.warning(f"{source}: starting again from step 0, not from its saved state: {e}")
                saved = None
        found[job_id] = InFlight(folder, saved)
    return found


def _inside(out: Path, rel: Optional[str]) -> Optional[Path]:
    """A manifest's folder entry, if it names a folder directly inside out (an edited manifest points nowhere
    else)."""
    if not rel:
        return None
    folder = out / rel
    return folder if folder.resolve().parent == out.resolve() else None


def _is_this_jobs(folder: Path, cfg: Config, job_id: str) -> bool:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
    if not files:
        return True  # made and left empty by a run killed before its first frame
    try:
        meta = json.loads((folder / SIDECAR).read_text(encoding="utf-8"))
        if isinstance(meta, dict) and "job" in meta:
            return meta["job"] == job_id
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    for png in [folder / "final.png", *sorted((folder / "frames").glob("*.png"))]:
        try:
            meta = read_png_metadata(png)
        except OSError:
            continue
        return meta.get("prompt") == cfg.prompt and meta.get("seed") == str(cfg.seed)
    return False
