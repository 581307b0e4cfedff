"""`vqclip eval`: generate captions x seeds, judge each image by its pixels, print accuracy and time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import options as o
from .common import Debug, Presets, Sets, app, command, need


@app.command(name="eval")
@command
def eval_(
    captions: Annotated[
        Optional[str], typer.Option(help="Comma-separated captions (default: the toy world's 12).")
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 0..N-1 for every caption.")] = 5,
    control: Annotated[bool, typer.Option("--control/--no-control", help="Also run untrained models.")] = True,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
    sheet: Annotated[Optional[Path], typer.Option(help="Write the trained models' images as one PNG grid.")] = None,
    vqgan: o.Vqgan = None,
    vqgan_ckpt: o.VqganCkpt = None,
    clip: o.Clip = None,
    size: o.Size = None,
    steps: o.Steps = None,
    device: o.Device = None,
    threads: Annotated[
        Optional[int], typer.Option(min=1, help="CPU threads for torch (default: torch's; 1 is fastest on a busy CPU).")
    ] = None,
    preset: Presets = None,
    set_: Sets = None,
    debug: Debug = False,
):
    """Judge generated images by pixel statistics (never CLIP): colour and shape accuracy, time per image."""
    # the library (torch, numpy) loads when the command runs, so `vqclip --help` stays light
    from PIL import Image
    from tqdm.auto import tqdm

    from .. import toy
    from ..device import pick_device
    from ..evaluate import EvalOptions, contact_sheet, run_eval, table
    from ..outputs import write_durably

    texts = [c.strip() for c in captions.split(",") if c.strip()] if captions is not None else list(toy.CAPTIONS)
    need(bool(texts), "give at least one caption, e.g. --captions 'a red circle,a blue square'")
    settings = {k: v for k, v in o.config_options(locals()).items() if k != "device"}
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    options = EvalOptions(
        presets=preset or ["toy"],
        options=settings,
        overrides=set_ or (),
        captions=texts,
        seeds=list(range(seeds)),
        control=control,
    )
    with tqdm(
        desc="eval", unit="image", file=sys.stderr, dynamic_ncols=True, total=len(texts) * seeds * (2 if control else 1)
    ) as bar:
        figures, runs = run_eval(options, pick_device(device or "auto"), lambda run, item: bar.update(1))
    typer.echo(table(figures))
    if sheet is not None:
        grid = contact_sheet(runs["trained"], columns=seeds)
        write_durably(sheet, lambda f: Image.fromarray(grid).save(f, format="PNG"))
        typer.echo(f"images written to {sheet}", err=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(json_path, lambda f: f.write(json.dumps(figures, indent=2) + "\n"), "w", encoding="utf-8")
        typer.echo(f"figures written to {json_path}", err=True)
