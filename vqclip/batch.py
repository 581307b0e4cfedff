"""Batch runs: a job file -> one output folder per prompt, a manifest, resume, batching and ranks.

- Every finished prompt appends one line to the manifest (written, flushed and fsynced), after its PNG was
  renamed into place: a SIGKILL loses at most the images in flight, never a finished one.
- Resume: a job whose id has a `done` record and whose image exists is skipped.
- `batch_size` images with the same settings (all but prompt, seed and name) are optimised together by
  `pipeline.generate_batch`; each image's loss is summed, so it matches a single run of it.
- Ranks (torchrun): jobs are split round-robin by torch.distributed rank; rank r appends to
  `manifest.rank{r}.jsonl` and rank 0 merges the shards into `manifest.jsonl` when all are done.
  Multi-node: run on every node, with `--out` on a shared filesystem,
  `torchrun --nnodes 2 --node_rank K --nproc_per_node 8 --master_addr HOST0 --master_port 29500 \\
       -m vqclip batch prompts.txt --out /shared/run`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import torch

from . import __version__
from .config import Config, resolve, to_yaml, with_seed
from .errors import ConfigError, UsageError
from .jobs import Job
from .memory import SUGGEST_SHARE, Workload, available_bytes
from .optimize import Step
from .outputs import VideoWriter, append_jsonl, read_jsonl, save_png, unique_dir, write_jsonl
from .pipeline import Models, Plan, check, generate_batch, load_models
from .session import metadata, run_name
from .shard import Shard
from .story import is_story

MANIFEST = "manifest.jsonl"
SHEET = "contact_sheet.png"
MAX_DEFAULT_BATCH = 16  # more images per step gains little once the GPU is busy


@dataclass
class Planned:
    """A job with its resolved config and checked plan."""

    job: Job
    cfg: Config
    plan: Plan


@dataclass
class BatchResult:
    records: list[dict] = field(default_factory=list)  # this rank's manifest records of this run
    skipped: int = 0  # jobs already done in an earlier run
    interrupted: bool = False
    manifest: Optional[Path] = None
    sheet: Optional[Path] = None


class BatchInterrupted(Exception):
    """Ctrl-C during a group: its images were saved as interrupted; carries the records."""

    def __init__(self, records: list[dict]):
        super().__init__("interrupted")
        self.records = records


def largest_job(planned: list[Planned]) -> Planned:
    """The job whose step needs the most memory (most pixels, then most cutouts): it bounds the batch size."""
    return max(planned, key=lambda p: (p.plan.width * p.plan.height, p.cfg.cutouts.cutn, len(p.plan.clip_specs)))


def default_batch_size(device: torch.device, planned: list[Planned]) -> int:
    """1 off CUDA (batching gains nothing on a CPU); on CUDA, as many images of the largest job as the memory
    estimate fits in SUGGEST_SHARE of free memory (at least 1: check_memory then says if even that cannot fit)."""
    if device.type != "cuda" or not planned:
        return 1
    big = largest_job(planned)
    one = Workload.of(big.plan, big.cfg, device, batch=1).bytes()
    per_image = Workload.of(big.plan, big.cfg, device, batch=2).bytes() - one
    budget = available_bytes(device) * SUGGEST_SHARE - (one - per_image)
    return int(max(1, min(MAX_DEFAULT_BATCH, len(planned), budget // max(per_image, 1))))


def plan_jobs(jobs: list[Job], base: Config, base_seed: Optional[int] = None) -> list[Planned]:
    """Resolve and check every job before any model loads, so a typo on line 90 fails in a second.

    A job without its own seed gets base_seed + its index when base_seed is given, else a drawn one.
    """
    base_yaml = to_yaml(base)
    planned = []
    for job in jobs:
        options = dict(job.options)
        if job.prompt:
            options["prompt"] = job.prompt
        try:
            # a bare prompt skips OmegaConf's merge, which costs ~50 ms a job
            cfg = resolve((), base_yaml, options) if set(options) - {"prompt"} else copy.deepcopy(base)
            cfg.prompt = job.prompt or cfg.prompt
            if "seed" not in job.options:
                cfg.seed = None if base_seed is None else base_seed + job.index
            cfg = with_seed(cfg)
            plan = check(cfg)
        except UsageError as e:
            raise ConfigError(f"{job.source}: {e}") from None
        cfg.width, cfg.height = plan.width, plan.height  # the size actually used is what gets recorded
        planned.append(Planned(job, cfg, plan))
    return planned


def group_key(cfg: Config) -> str:
    """Images batch together when everything but prompt, seed and name matches (a story's prompt counts)."""
    c = copy.deepcopy(cfg)
    c.seed, c.output.name = None, None
    if not is_story(cfg):
        c.prompt = ""
    return to_yaml(c)


def make_groups(planned: list[Planned], batch_size: int) -> list[list[Planned]]:
    by_key: dict[str, list[Planned]] = {}
    for p in planned:
        by_key.setdefault(group_key(p.cfg), []).append(p)
    return [g[k:k + batch_size] for g in by_key.values() for k in range(0, len(g), batch_size)]


def manifest_path(out: Path, shard: Shard) -> Path:
    return out / (MANIFEST if shard.world == 1 else f"manifest.rank{shard.rank}.jsonl")


def read_manifest(out: Path) -> list[dict]:
    """All records: the merged manifest, then any rank shards not merged yet (a killed multi-rank run)."""
    records = read_jsonl(out / MANIFEST)
    for shard in sorted(out.glob("manifest.rank*.jsonl")):
        records += read_jsonl(shard)
    return records


def finished_ids(out: Path) -> set[str]:
    return {r["id"] for r in read_manifest(out) if r.get("status") == "done" and r.get("image")
            and (out / r["image"]).is_file()}


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


class ModelCache:
    """Keeps the models of the last plan: groups that share model files load them once."""

    def __init__(self, device: torch.device, models: Optional[Models] = None, plan: Optional[Plan] = None):
        self.device, self.models = device, models
        self.key = self._key(plan) if plan is not None and models is not None else None

    @staticmethod
    def _key(plan: Plan) -> tuple:
        return plan.vqgan_config, plan.vqgan_ckpt, tuple(plan.clip_specs)

    def get(self, p: Planned) -> Models:
        if self._key(p.plan) != self.key:
            self.models = None  # free the previous models before loading the next
            self.models = load_models(p.plan, self.device, p.cfg.model.checkpoints_dir)
            self.key = self._key(p.plan)
        return self.models


def run_batch(planned: list[Planned], out: Path, models: ModelCache, batch_size: int, shard: Shard = Shard(),
              on_step: Optional[Callable[[Step], None]] = None, on_done: Optional[Callable[[dict], None]] = None,
              sheet: bool = True) -> BatchResult:
    """Run this rank's unfinished jobs in groups of batch_size; rank 0 merges manifests and draws the sheet."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = finished_ids(out)
    shard.barrier()  # every rank has read the manifest before any rank appends to it
    todo = [p for p in planned if p.job.id not in done]
    mine = todo[shard.rank::shard.world]
    result = BatchResult(skipped=len(planned) - len(todo), manifest=manifest_path(out, shard))
    groups = sorted(make_groups(mine, batch_size), key=lambda g: str(ModelCache._key(g[0].plan)))
    try:
        for group in groups:
            for record in _run_group(group, models.get(group[0]), models.device, out, result.manifest,
                                     shard.rank, on_step):
                result.records.append(record)
                if on_done is not None:
                    on_done(record)
    except BatchInterrupted as e:
        result.records += e.records
        result.interrupted = True
        return result  # no barrier: the other ranks are being interrupted too
    shard.barrier()  # all ranks are done
    if shard.rank == 0:
        if shard.world > 1:
            result.manifest = merge_manifests(out)
        if sheet:
            result.sheet = contact_sheet(out, read_manifest(out))
    return result


def _run_group(group: list[Planned], models: Models, device: torch.device, out: Path, manifest: Path, rank: int,
               on_step: Optional[Callable[[Step], None]]) -> list[dict]:
    """Optimise a group's images together; save and record each one; Ctrl-C saves them as interrupted."""
    cfg0, plan0 = group[0].cfg, group[0].plan
    folders = [unique_dir(out, p.cfg.output.name or f"{p.job.index + 1:04d}-{run_name(p.cfg)}") for p in group]
    videos = [VideoWriter(f / "progress.mp4", p.cfg.output.fps, p.cfg.output.gif) if p.cfg.output.video else None
              for p, f in zip(group, folders)]
    start, last = time.perf_counter(), None
    steps = generate_batch(cfg0, plan0, models, device, [p.plan.prompts for p in group], [p.cfg.seed for p in group])
    try:
        for step in steps:
            last = step
            if on_step is not None:
                on_step(step)
            every = cfg0.output.save_every
            if not step.final and every and step.i % every == 0:
                for b, p in enumerate(group):
                    _save_frame(p, folders[b], step, b, videos[b])
        return [_finish(p, folders[b], last, b, videos[b], "done", start, manifest, rank, len(group))
                for b, p in enumerate(group)]
    except KeyboardInterrupt:
        records = [_finish(p, folders[b], last, b, videos[b], "interrupted", start, manifest, rank, len(group))
                   for b, p in enumerate(group)]
        raise BatchInterrupted(records) from None
    except BaseException:
        for video in videos:
            if video is not None:
                video.abort()
        raise


def _save_frame(p: Planned, folder: Path, step: Step, b: int, video: Optional[VideoWriter]) -> None:
    frames = folder / "frames"
    frames.mkdir(exist_ok=True)
    save_png(step.image[b], frames / f"step_{step.i:05d}.png",
             metadata(p.cfg, p.plan, step.i, "frame", float(step.loss[b])))
    if video is not None:
        video.add(step.image[b])


def _finish(p: Planned, folder: Path, last: Optional[Step], b: int, video: Optional[VideoWriter], status: str,
            start: float, manifest: Path, rank: int, batch: int) -> dict:
    """Save image b (final PNG, then the video), then append its manifest line: the order resume relies on."""
    image, loss = None, None
    if last is not None:
        loss = float(last.loss[b])
        png_status = "complete" if status == "done" else "interrupted"
        image = save_png(last.image[b], folder / "final.png", metadata(p.cfg, p.plan, last.i, png_status, loss))
        if video is not None:
            video.add(last.image[b])
    videos = video.close() if video is not None else []
    record = {"id": p.job.id, "index": p.job.index, "source": p.job.source, "prompt": p.cfg.prompt,
              "seed": p.cfg.seed, "status": status, "image": _rel(image, manifest.parent),
              "folder": _rel(folder, manifest.parent), "videos": [_rel(v, manifest.parent) for v in videos],
              "step": last.i if last is not None else 0, "steps": p.cfg.steps, "loss": loss,
              "seconds": round(time.perf_counter() - start, 3), "batch": batch, "rank": rank,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    append_jsonl(manifest, record)
    return record


def _rel(path: Optional[Path], root: Path) -> Optional[str]:
    """Paths in the manifest are relative to its folder, so an output folder can be moved whole."""
    return None if path is None else Path(os.path.relpath(path, root)).as_posix()


def contact_sheet(out: Path, records: list[dict], tile: int = 256) -> Optional[Path]:
    """A grid PNG of the batch's finished images in job order; its metadata lists each tile's prompt and seed."""
    from PIL import Image

    latest = {r["id"]: r for r in records if r.get("status") == "done" and r.get("image")
              and (out / r["image"]).is_file()}
    done = sorted(latest.values(), key=lambda r: (r["index"], r["id"]))
    if not done:
        return None
    thumbs = []
    for r in done:
        with Image.open(out / r["image"]) as im:
            im = im.convert("RGB")
            im.thumbnail((tile, tile))
            thumbs.append(im)
    w, h = max(t.width for t in thumbs), max(t.height for t in thumbs)
    cols = math.ceil(math.sqrt(len(thumbs)))
    grid = Image.new("RGB", (cols * w, math.ceil(len(thumbs) / cols) * h), "white")
    for k, t in enumerate(thumbs):
        grid.paste(t, ((k % cols) * w + (w - t.width) // 2, (k // cols) * h + (h - t.height) // 2))
    tiles = [{"tile": k, "prompt": r["prompt"], "seed": r["seed"], "image": r["image"]} for k, r in enumerate(done)]
    meta = {"prompts": json.dumps(tiles, ensure_ascii=False), "columns": cols, "vqclip_version": __version__,
            "Software": f"vqclip {__version__}"}
    return save_png(grid, out / SHEET, meta, overwrite=True)
