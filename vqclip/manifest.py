"""A batch's manifest as resume reads it: every row checked, every finished image checked before it counts as done.

The manifest is a file on disk, so resume trusts nothing in it blindly: a row must be a JSON object with the
fields batch writes, of their types, and its image path must stay inside the batch's folder. A `done` row
counts only when its PNG is whole (chunk CRCs and the end marker, checked without decoding the pixels: ~0.2 ms
for a 256x256 image), so a truncated or zeroed final.png is made again, with a note.

One batch at a time writes to a folder: `claimed` holds an flock on `.manifest.jsonl.lock`, taken by rank 0 for
all the ranks of its torchrun group, and a second batch on the folder is refused in one line while it is held.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path, PurePosixPath
from typing import Iterator, Optional

from .errors import UsageError, first_line
from .files import not_regular
from .locks import try_lock
from .outputs import read_jsonl, write_jsonl
from .shard import Shard

__all__ = [
    "MANIFEST",
    "check_record",
    "claimed",
    "finished_ids",
    "image_problem",
    "latest_done",
    "manifest_path",
    "merge_manifests",
    "read_manifest",
]

log = logging.getLogger("vqclip")

MANIFEST = "manifest.jsonl"

# field -> the types a row written by vqclip.batch holds there; resume needs id and status, the rest may be absent
_REQUIRED = ("id", "status")
_FIELDS = {
    "id": (str,),
    "status": (str,),
    "index": (int,),
    "prompt": (str,),
    "image": (str, type(None)),
    "seed": (int, type(None)),
    "loss": (int, float, type(None)),
}


def check_record(record, where: str) -> dict:
    """A manifest row as batch wrote it, or a one-line UsageError saying which row and what to do."""
    fix = "fix or delete that line and run again"
    if not isinstance(record, dict):
        raise UsageError(f"{where} is not a manifest record (a JSON object); {fix}")
    for key, types in _FIELDS.items():
        value = record.get(key)
        if key not in record and key not in _REQUIRED:
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise UsageError(f"{where}: {key} should be {names}, got {value!r:.40}; {fix}")
    image = record.get("image")
    if image is not None:
        parts = PurePosixPath(image).parts
        if not parts or image.startswith("/") or ".." in parts or os.path.isabs(image):
            raise UsageError(f"{where}: image {image!r:.60} is not a path inside the batch's folder; {fix}")
    return record


def image_problem(path: Path) -> Optional[str]:
    """Why the image at path cannot count as done (missing, not a file, damaged), or None if it is whole."""
    from PIL import Image

    reason = not_regular(path)
    if reason is not None:
        return reason
    try:
        with Image.open(path) as im:
            im.verify()  # PNG: every chunk's CRC and the IEND marker, without decoding the pixels
    except Exception as e:  # noqa: BLE001 - Pillow reports damage in many exception types
        return f"is damaged ({first_line(e, 80)})"
    return None


def latest_done(out: Path, records: list[dict], note: bool = True) -> dict[str, dict]:
    """Each job id's last `done` row whose image is whole; with note, a damaged image is named once as redone."""
    latest: dict[str, dict] = {}
    for r in records:
        if r.get("status") == "done" and r.get("image"):
            latest[r["id"]] = r
    good = {}
    for job, r in latest.items():
        problem = image_problem(out / r["image"])
        if problem is None:
            good[job] = r
        elif note and problem != "does not exist":
            log.warning(f"{out / r['image']} {problem}; its prompt is made again")
    return good


@contextlib.contextmanager
def claimed(out: Path, shard: Shard) -> Iterator[None]:
    """Hold the batch folder for this run (every rank calls it); another batch on it makes every rank refuse."""
    lock = try_lock(out / MANIFEST) if shard.rank == 0 else None
    if not shard.all_true(shard.rank != 0 or lock is not None):
        raise UsageError(
            f"another vqclip batch is writing to {out}; let it finish (then rerun to resume), or choose another --out"
        )
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def manifest_path(out: Path, shard: Shard) -> Path:
    return out / (MANIFEST if shard.world == 1 else f"manifest.rank{shard.rank}.jsonl")


def read_manifest(out: Path) -> list[dict]:
    """All records: the merged manifest, then any rank shards not merged yet (a killed multi-rank run); every row
    is checked (see vqclip.manifest)."""
    records = read_jsonl(out / MANIFEST, check_record)
    for shard in sorted(out.glob("manifest.rank*.jsonl")):
        records += read_jsonl(shard, check_record)
    return records


def finished_ids(out: Path, note: bool = False) -> set[str]:
    """Ids of the jobs whose last done image is whole; with note, each damaged one is named as made again."""
    return set(latest_done(out, read_manifest(out), note))


def merge_manifests(out: Path) -> Path:
    """Fold the rank shards into manifest.jsonl (atomically), then drop them; rerunning it is harmless."""
    shards = sorted(out.glob("manifest.rank*.jsonl"))
    records, seen = [], set()
    for r in read_manifest(out):
        line = json.dumps(r, sort_keys=True)
        if line not in seen:
            seen.add(line)
            records.append(r)
    write_jsonl(out / MANIFEST, records)
    for shard in shards:
        shard.unlink(missing_ok=True)
    return out / MANIFEST
