"""`vqclip animate PROMPT`: a zoom / pan / rotate animation streamed to an mp4; a story's prompts change by frame."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
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
    need,
    set_offline,
    sigterm_as_interrupt,
)
from .progress import DownloadBar, StepBar
from .watch import watching


@app.command(cls=o.SizeCommand)
@command
def animate(
    prompt: o.Prompt = None,
    frames: o.Frames = None,
    steps_per_frame: o.StepsPerFrame = None,
    zoom: o.Zoom = None,
    rotate: o.Rotate = None,
    pan: o.Pan = None,
    story_every: o.StoryEveryFrames = None,
    keyframe: o.KeyframeFrames = None,
    blend: o.Blend = None,
    save_frames: Annotated[
        Optional[bool],
        typer.Option(
            "--save-frames/--no-save-frames", help="Also save every frame as a PNG (--resume: as the run did)."
        ),
    ] = None,
    save_state: o.SaveState = None,
    vqgan: o.Vqgan = None,
    vqgan_ckpt: o.VqganCkpt = None,
    clip: o.Clip = None,
    size: o.Size = None,
    steps: Annotated[
        Optional[int], typer.Option(help=f"Steps of the first frame (default {o.DEFAULTS.steps}).")
    ] = None,
    seed: o.Seed = None,
    lr: o.Lr = None,
    cutn: o.Cutn = None,
    init_image: o.InitImage = None,
    init_weight: o.InitWeight = None,
    out: o.Out = None,
    name: o.Name = None,
    fps: o.Fps = None,
    gif: o.Gif = None,
    device: o.Device = None,
    preview: o.Preview = False,
    preview_port: o.PreviewPort = 0,
    preview_host: o.PreviewHost = o.PREVIEW_HOST,
    preset: Presets = None,
    set_: Sets = None,
    from_: o.From = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            "--resume",
            help="Continue the interrupted animation saved in this folder from its last finished frame, "
            "in it, with its own settings (only --device may change).",
        ),
    ] = None,
    checkpoints_dir: CheckpointsDir = None,
    mirror: Mirror = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Animate PROMPT: each frame re-encodes the previous one zoomed, rotated and panned; prints the mp4's path.

    A story ("a^b^c", --keyframe FRAME=PROMPT) is scheduled over frames, not steps.
    """
    set_offline(offline)
    if resume is not None:
        need(
            prompt is None and from_ is None and not preset,
            "--resume continues an animation with its own prompt and settings; drop the prompt, --from and --preset",
        )
    elif prompt is None and from_ is None and not keyframe:
        raise UsageError('give a prompt, e.g. vqclip animate "a fractal city" --frames 60 --zoom 1.02')
    options = o.config_options(locals())
    # the library (and torch) is imported when the command runs, so `vqclip --help` stays fast
    from ..animate import run_animation
    from ..provenance import config_for
    from ..runner import VQGANFinder, prepare_resume, prepare_run
    from ..writer import Interrupted

    with DownloadBar() as download_bar:  # the story counts frames; a missing VQGAN is fetched on first use
        finder = VQGANFinder(mirror=mirror, on_progress=download_bar)
        if resume is not None:
            run = prepare_resume(resume, options, set_ or (), animation=True, finder=finder, load=False)
        else:
            cfg = config_for(prompt, preset, from_, set_, options, command="animate")
            run = prepare_run(cfg, unit="frame", finder=finder, load=False)
    start = run.resume.step if run.resume is not None else 0
    with watching(preview, preview_host, preview_port, "animate", run.cfg.prompt or "") as observers:
        run.load()  # once --preview holds its port (a taken one fails before the slow part), before the bar
        with StepBar(run.cfg.animation.frames, every=1, desc="animate", initial=start) as bar, sigterm_as_interrupt():
            try:
                result = run_animation(
                    run, save_frames, on_frame=lambda step: _frame_done(bar, step), observers=observers
                )
            except Interrupted as e:
                bar.close()
                r = e.result
                hint = f"; continue it with vqclip animate --resume {r.folder}" if r.state else ""
                typer.echo(f"interrupted at frame {r.step}; saved what was made in {r.folder}{hint}", err=True)
                for path in e.result.videos:
                    typer.echo(str(path))
                raise typer.Exit(130) from None
    typer.echo(f"done in {result.seconds:.1f}s; folder {result.folder}", err=True)
    for path in result.videos:
        typer.echo(str(path))


def _frame_done(bar: StepBar, step) -> None:
    bar.bar.update(1)
    bar.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}")
