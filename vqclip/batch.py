"""Batch runs: a job file -> one output folder per prompt, a manifest, resume, batching and ranks.

- Every finished prompt appends one line to the manifest (written, flushed and fsynced), after its PNG was
  renamed into place: a SIGKILL loses at most the images in flight, never a finished one.
- Resume: a job whose id has a `done` record and whose image is whole is skipped (vqclip.manifest checks every
  row and image; a damaged image is made again, with a note). A job an earlier run left in
  flight (Ctrl-C, or kill -9) continues in its own folder, from its saved state when it has one that matches
  (vqclip.state; with `output.save_state` one is saved at every frame), else from step 0; images resumed at the
  same step are batched together, so each one makes the pixels of the run that was never stopped.
- One batch at a time per folder: a second `vqclip batch` on the same `--out` is refused while one runs.
- `batch_size` images with the same settings (all but prompt, seed and name) are optimised together by
  `pipeline.generate_batch`; each image's loss is summed, so it matches a single run of it.
- Ranks (torchrun): jobs are split round-robin by torch.distributed rank; rank r appends to
  `manifest.rank{r}.jsonl` and rank 0 merges the shards into `manifest.jsonl` when all are done.
  Multi-node: run on every node, with `--out` on a shared filesystem,
  `torchrun --nnodes 2 --node_rank K --nproc_per_node 8 --master_addr HOST0 --master_port 29500 \\
       -m vqclip batch prompts.txt --out /shared/run`.
- The gallery (vqclip.gallery, index.html) is rewritten as images finish; observers (--preview) watch each group.
"""
# size: one loop carries resume, jobs in flight, ranks, the gallery and observers; the manifest's helpers
# (manifest_path ... _record) are the part to move out once the manifest work in flight has landed

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .config import Config, resolve, to_yaml
from .errors import ConfigError, UsageError
from .fast_config import apply_plain
from .gallery import Gallery
from .inflight import InFlight, in_flight
from .jobs import Job
from .manifest import (
    claimed,
    finished_ids,
    manifest_path,
    merge_manifests,
    read_manifest,
)
from .memory import SUGGEST_SHARE, Workload, available_bytes
from .observe import Observer
from .optimize import Step
from .outputs import append_jsonl, check_writable
from .plan import Plan
from .provenance import run_name
from .resume import check_models
from .runner import ModelCache, VQGANFinder, plan_run, prepare_run
from .shard import Shard
from .sheet import SHEET, contact_sheet  # noqa: F401  (SHEET: the sheet's name, for callers)
from .story import is_story
from .validate import check_seed
from .writer import Interrupted, Layout, RunResult, RunWriter, write_steps

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


def plan_jobs(
    jobs: list[Job], base: Config, base_seed: Optional[int] = None, finder: Optional[VQGANFinder] = None
) -> list[Planned]:
    """Resolve and check every job before any model loads, so a typo on line 90 fails in a second.

    A job without its own seed gets base_seed + its index when base_seed is given, else a drawn one. Each distinct
    VQGAN is found (and downloaded, when missing and allowed) once, by `finder`.
    """
    finder = finder or VQGANFinder()
    base_yaml = to_yaml(base)
    merged: dict[str, Config] = {}  # OmegaConf merges by options: jobs that differ only in seed merge once
    memo: dict = {}  # each model yaml, CLIP and image is checked once (see plan.check)
    planned = []
    for job in jobs:
        options = {k: v for k, v in job.options.items() if k != "seed"}
        try:
            # plain values skip OmegaConf's merge, which costs ~17 ms a job (100,000 lines: half an hour)
            cfg = apply_plain(base, options)
            if cfg is None:
                key = json.dumps(options, sort_keys=True, default=str)
                if key not in merged:
                    merged[key] = resolve((), base_yaml, options)
                cfg = copy.deepcopy(merged[key])
            cfg.prompt = job.prompt or cfg.prompt
            if "seed" in job.options:
                cfg.seed = check_seed(job.options["seed"])
            else:
                cfg.seed = (
                    None
                    if base_seed is None
                    else check_seed(base_seed + job.index, f"--seed {base_seed} + job index {job.index}")
                )
            plan = plan_run(cfg, finder=finder, memo=memo)
        except UsageError as e:
            raise ConfigError(f"{job.source}: {e}") from None
        planned.append(Planned(job, cfg, plan))
    return planned


def group_key(cfg: Config) -> str:
    """Images batch together when everything but prompt, seed and name matches (a story's prompt counts)."""
    c = dataclasses.asdict(cfg)  # not to_yaml: OmegaConf takes ~30 ms a job
    c["seed"], c["output"]["name"] = None, None
    if not is_story(cfg):
        c["prompt"] = ""
    return json.dumps(c, sort_keys=True, default=str)


def make_groups(
    planned: list[Planned], batch_size: int, starts: Optional[dict[str, int]] = None
) -> list[list[Planned]]:
    """Groups of at most batch_size images that can step together: same settings, and resumed at the same step."""
    by_key: dict[tuple[str, int], list[Planned]] = {}
    for p in planned:
        by_key.setdefault((group_key(p.cfg), (starts or {}).get(p.job.id, 0)), []).append(p)
    return [g[k : k + batch_size] for g in by_key.values() for k in range(0, len(g), batch_size)]


def _model_key(p: Planned) -> str:
    return str(ModelCache.key_of(p.plan, None))


def check_batch(planned: list[Planned], out: Path, device: torch.device, batch_size: int) -> None:
    """Before any model loads: the output folder must be writable and the largest group must fit in memory
    (prepare_run's checks, without loading)."""
    check_writable(out)
    if planned:
        big = largest_job(planned)
        prepare_run(big.cfg, big.plan, device=device, batch=min(batch_size, len(planned)), outputs=False, load=False)


def run_batch(
    planned: list[Planned],
    out: Path,
    device: torch.device,
    batch_size: int,
    shard: Shard = Shard(),
    on_step: Optional[Callable[[Step], None]] = None,
    on_done: Optional[Callable[[dict], None]] = None,
    sheet: bool = True,
    models: Optional[ModelCache] = None,
    observers: Sequence[Observer] = (),
) -> BatchResult:
    """Run this rank's unfinished jobs in groups of batch_size, watched by `observers` (--preview); rank 0 keeps the
    gallery (index.html) current as images finish, merges manifests and draws the sheet."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with claimed(out, shard):  # a second batch on this folder is refused while this one runs
        return _run_batch(planned, out, device, batch_size, shard, on_step, on_done, sheet, models, observers)


def _run_batch(
    planned: list[Planned],
    out: Path,
    device: torch.device,
    batch_size: int,
    shard: Shard,
    on_step: Optional[Callable[[Step], None]],
    on_done: Optional[Callable[[dict], None]],
    sheet: bool,
    models: Optional[ModelCache],
    observers: Sequence[Observer],
) -> BatchResult:
    earlier = read_manifest(out)
    done = finished_ids(out, note=shard.rank == 0)
    shard.barrier()  # every rank has read the manifest before any rank appends to it
    todo = [p for p in planned if p.job.id not in done]
    mine = todo[shard.rank :: shard.world]
    result = BatchResult(skipped=len(planned) - len(todo), manifest=manifest_path(out, shard))
    flights = in_flight(
        [(p.job.id, job_folder(p), p.cfg, p.plan, p.job.source) for p in mine], out, read_manifest(out), device
    )
    starts = {job_id: f.step for job_id, f in flights.items()}
    groups = sorted(make_groups(mine, batch_size, starts), key=lambda g: _model_key(g[0]))
    models = models or ModelCache()
    gallery = Gallery(out, earlier, active=shard.rank == 0)
    for o in observers:
        o.expect(sum(g[0].cfg.steps + 1 - starts.get(g[0].job.id, 0) for g in groups))  # a group starts together
    try:
        for group in groups:
            for record in _run_group(
                group, models, device, out, result.manifest, shard.rank, on_step, flights, observers
            ):
                result.records.append(record)
                gallery.add(record)
                if on_done is not None:
                    on_done(record)
    except BatchInterrupted as e:
        result.records += e.records
        result.interrupted = True
        gallery.flush(read_manifest(out))
        return result  # no barrier: the other ranks are being interrupted too
    shard.barrier()  # all ranks are done
    if shard.rank == 0:
        if shard.world > 1:
            result.manifest = merge_manifests(out)
        if sheet:
            result.sheet = contact_sheet(out, read_manifest(out))
        gallery.flush(read_manifest(out))  # every rank's images, and the contact sheet's link
    return result


def job_folder(p: Planned) -> str:
    return p.cfg.output.name or f"{p.job.index + 1:04d}-{run_name(p.cfg)}"


def _run_group(
    group: list[Planned],
    models: ModelCache,
    device: torch.device,
    out: Path,
    manifest: Path,
    rank: int,
    on_step: Optional[Callable[[Step], None]],
    flights: dict[str, InFlight],
    observers: Sequence[Observer] = (),
) -> list[dict]:
    """Optimise a group's images together (continuing those in flight); save and record each one; Ctrl-C saves
    them as interrupted, with their states."""
    first = group[0]
    run = prepare_run(first.cfg, first.plan, device=device, batch=len(group), outputs=False, models=models)
    flying = [flights.get(p.job.id) for p in group]
    for f in flying:
        if f is not None and f.saved is not None:
            check_models(f.saved, run.models.fingerprints)
    writers = [
        RunWriter(
            p.cfg,
            p.plan,
            out,
            job_folder(p),
            Layout.still(p.cfg),
            index=b,
            state_meta=lambda p=p: run.state_meta(p.cfg, p.plan, job=p.job.id),
            at=f.resume_at() if f is not None else None,
        )
        for b, (p, f) in enumerate(zip(group, flying))
    ]
    jobs = {id(w): p for w, p in zip(writers, group)}
    records: list[dict] = []

    def record(writer: RunWriter, r: RunResult) -> None:  # after the PNG and video: the order resume relies on
        records.append(_record(jobs[id(writer)], r, manifest, rank, len(group)))

    starts = [f.saved.loop for f in flying if f is not None and f.saved is not None]
    steps = run.steps([p.plan.prompts for p in group], [p.cfg.seed for p in group], starts or None)
    try:
        write_steps(steps, writers, on_step, on_finish=record, observers=observers)
    except Interrupted:
        raise BatchInterrupted(records) from None
    return records


def _record(p: Planned, r: RunResult, manifest: Path, rank: int, batch: int) -> dict:
    """Append image b's manifest line (its PNG and video are in place by now)."""
    record = {
        "id": p.job.id,
        "index": p.job.index,
        "source": p.job.source,
        "prompt": p.cfg.prompt,
        "seed": p.cfg.seed,
        "status": "done" if r.status == "complete" else r.status,
        "image": _rel(r.image, manifest.parent),
        "folder": _rel(r.folder, manifest.parent),
        "videos": [_rel(v, manifest.parent) for v in r.videos],
        "step": r.step,
        "steps": p.cfg.steps,
        "size": [p.cfg.width, p.cfg.height],
        "loss": r.loss,
        "seconds": round(r.seconds, 3),
        "batch": batch,
        "rank": rank,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if r.resumed:
        record["resumed"] = r.resumed
    append_jsonl(manifest, record)
    return record


def _rel(path: Optional[Path], root: Path) -> Optional[str]:
    """Paths in the manifest are relative to its folder, so an output folder can be moved whole."""
    return None if path is None else Path(os.path.relpath(path, root)).as_posix()
