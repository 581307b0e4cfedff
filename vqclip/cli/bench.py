"""`vqclip bench`: time the generate loop on random-weight models of the real architectures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..choices import COMPILE_MODES
from .common import Debug, app, command


@app.command()
@command
def bench(
    config: Annotated[
        Optional[str], typer.Option(help="S, S8, M, M2, L, CPU or toy (default: S on CUDA, CPU otherwise).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help="Timed steps (after warm-up).")] = None,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Also write the figures to this JSON file.")
    ] = None,
    reference: Annotated[bool, typer.Option("--reference", help="Time the fp32 eager reference path.")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the decoder and CLIP.")] = False,
    compile_mode: Annotated[
        Optional[str],
        typer.Option(
            help=f"torch.compile mode: {', '.join(COMPILE_MODES)} (reduce-overhead: CUDA graphs); implies --compile."
        ),
    ] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Tiny models: checks that everything runs, in seconds.")
    ] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    markdown_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--markdown",
            help=("Run nothing: print BENCHMARKS.md tables (targets met or not) from this folder's JSON files."),
        ),
    ] = None,
    debug: Debug = False,
):
    """Benchmark speed (s/step, images/hour, memory, TFLOP/s) with a quality guard beside each figure."""
    # the library (and torch) is imported when the command runs, so `vqclip --help` stays fast
    from tqdm.auto import tqdm

    from ..bench import BenchOptions, run_bench, table
    from ..bench.report import load_results, markdown
    from ..device import pick_device
    from ..outputs import write_durably

    if markdown_dir is not None:
        typer.echo(markdown(load_results(markdown_dir)))
        return
    dev = pick_device(device)
    options = BenchOptions(
        config=config,
        steps=steps,
        reference=reference,
        compile=compile_ or compile_mode is not None,
        compile_mode=compile_mode or "default",
        smoke=smoke,
    )
    with tqdm(desc="bench", unit="step", file=sys.stderr, dynamic_ncols=True) as bar:

        def on_step(i: int, total: int) -> None:
            bar.total = total
            bar.update(1)

        result = run_bench(options, dev, on_step)
    typer.echo(table(result))
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(json_path, lambda f: f.write(json.dumps(result, indent=2) + "\n"), "w", encoding="utf-8")
        typer.echo(f"figures written to {json_path}", err=True)
