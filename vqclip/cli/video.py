"""`vqclip video FRAMES_DIR`: assemble saved frames into an mp4 (and a gif), afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Debug, app, command


@app.command()
@command
def video(
    frames_dir: Annotated[
        Path, typer.Argument(help="Folder of frames, e.g. outputs/<run>/frames (natural name order).")
    ],
    out: Annotated[
        Optional[Path], typer.Option(help="The mp4 to write (default: <FRAMES_DIR>.mp4 beside the folder).")
    ] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second (default 10).")] = None,
    seconds: Annotated[
        Optional[float], typer.Option(help="Length of the video; sets the frame rate instead of --fps.")
    ] = None,
    gif: Annotated[bool, typer.Option("--gif/--no-gif", help="Also write a gif beside the mp4.")] = False,
    debug: Debug = False,
):
    """Assemble the frames of FRAMES_DIR into an mp4; prints its path."""
    # the library is imported when the command runs, so `vqclip --help` stays fast
    from ..video import assemble, frame_paths, frame_rate

    frames = frame_paths(frames_dir)
    rate = frame_rate(len(frames), fps, seconds)
    path = out or frames_dir.resolve().with_name(f"{frames_dir.resolve().name}.mp4")
    for written in assemble(frames, path, rate, gif):
        typer.echo(str(written))
    typer.echo(f"{len(frames)} frames at {rate:g} fps ({len(frames) / rate:.1f} s)", err=True)
