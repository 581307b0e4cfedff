"""`vqclip batch FILE`: every prompt of a job file, resumable, batched, sharded over torchrun ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import options as o
from .common import (
    CheckpointsDir,
    Debug,
    Mirror,
    Offline,
    Presets,
    Sets,
    app,
    command,
    set_offline,
    sigterm_as_interrupt,
)
from .progress import DownloadBar, StepBar
from .watch import watching


@app.command(cls=o.SizeCommand)
@command
def batch(
    file: Annotated[
        Path,
        typer.Argument(
            help="Prompts: one per line ('#' comments, '## seed=3 steps=50' overrides), or .yaml/.jsonl jobs."
        ),
    ],
    out: Annotated[
        str, typer.Option(help="Output folder: one subfolder per prompt, manifest.jsonl, contact_sheet.png.")
    ] = "outputs/batch",
    batch_size: Annotated[
        Optional[int], typer.Option(help="Images optimised together (default: 1 on CPU, by free memory on CUDA).")
    ] = None,
    sheet: Annotated[bool, typer.Option("--sheet/--no-sheet", help="Write a contact sheet of the results.")] = True,
    vqgan: o.Vqgan = None,
    vqgan_ckpt: o.VqganCkpt = None,
    clip: o.Clip = None,
    size: o.Size = None,
    steps: o.Steps = None,
    seed: Annotated[
        Optional[int], typer.Option(help="Job k without its own seed gets SEED+k (default: drawn).")
    ] = None,
    lr: o.Lr = None,
    cutn: o.Cutn = None,
    save_every: o.SaveEvery = None,
    save_state: o.SaveState = None,
    video: o.Video = None,
    gif: o.Gif = None,
    fps: o.Fps = None,
    story_every: o.StoryEvery = None,
    device: Annotated[
        Optional[str], typer.Option(help="auto, cpu, cuda or mps (under torchrun: each rank's GPU).")
    ] = None,
    preview: o.Preview = False,
    preview_port: o.PreviewPort = 0,
    preview_host: o.PreviewHost = o.PREVIEW_HOST,
    preset: Presets = None,
    set_: Sets = None,
    checkpoints_dir: CheckpointsDir = None,
    mirror: Mirror = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Generate an image for every prompt in FILE; rerun the same command to resume. Prints each image's path."""
    set_offline(offline)
    options = o.config_options(locals())
    # the library (and torch) is imported when the command runs, so `vqclip --help` stays fast
    from ..batch import check_batch, default_batch_size, plan_jobs, run_batch
    from ..device import pick_device
    from ..jobs import read_jobs
    from ..outputs import check_writable
    from ..provenance import config_for
    from ..runner import VQGANFinder
    from ..shard import close_shard, init_shard, rank_device

    check_writable(out)
    base = config_for(None, preset, None, set_, options)
    base.seed = None  # seeds are per job (SEED+k), see plan_jobs
    jobs = read_jobs(file)
    with DownloadBar() as download_bar:  # every line is checked, and a missing VQGAN fetched, before a model loads
        planned = plan_jobs(jobs, base, seed, VQGANFinder(mirror=mirror, on_progress=download_bar))
    shard = init_shard()
    try:
        dev = rank_device(pick_device(base.device), shard)
        size_b = batch_size or default_batch_size(dev, planned)
        check_batch(planned, Path(out), dev, size_b)
        with (
            watching(
                preview,
                preview_host,
                preview_port + shard.rank if preview_port else 0,
                "batch",
                f"{file.name} ({len(planned)} prompts)",
                Path(out),
            ) as observers,
            StepBar(base.steps, desc=f"batch r{shard.rank}" if shard.world > 1 else "batch") as bar,
            sigterm_as_interrupt(),
        ):
            result = run_batch(
                planned,
                Path(out),
                dev,
                size_b,
                shard,
                on_step=_reset(bar),
                on_done=_report(Path(out)),
                sheet=sheet,
                observers=observers,
            )
    finally:
        close_shard(shard)
    done = sum(r["status"] == "done" for r in result.records)
    typer.echo(f"{done} done, {result.skipped} already done before; manifest {result.manifest}", err=True)
    if result.sheet is not None:
        typer.echo(f"contact sheet: {result.sheet}", err=True)
    if result.interrupted:
        typer.echo("interrupted; run the same command again to resume", err=True)
        raise typer.Exit(130)


def _reset(bar: StepBar):
    """One bar, restarted for every group of images."""

    def update(step) -> None:
        if step.i == 0 and not step.final:
            bar.bar.reset()
        bar.update(step)

    return update


def _report(out: Path):
    """Print each finished image's path as it is made (stdout, one per line)."""

    def report(record: dict) -> None:
        if record["image"]:
            path = out / record["image"]
            typer.echo(path if record["status"] == "done" else f"{path} ({record['status']})")

    return report
