"""`vqclip animate PROMPT`: a zoom / pan / rotate animation streamed to an mp4."""

from __future__ import annotations

from typing import Optional, Tuple

import typer
from typing_extensions import Annotated

from ..animate import Motion, run_animation
from ..errors import UsageError
from ..outputs import check_writable
from ..pipeline import check, load_models, pick_device
from ..session import Interrupted
from . import options as o
from .common import CheckpointsDir, Debug, Offline, Presets, Sets, app, command, set_offline, sigterm_as_interrupt
from .generate import config_from_options
from .progress import StepBar


@app.command()
@command
def animate(
    prompt: o.Prompt = None,
    frames: Annotated[int, typer.Option(min=1, help="Frames of the animation.")] = 60,
    steps_per_frame: Annotated[int, typer.Option(min=1, help="Steps for each frame after the first (the first runs --steps).")] = 10,
    zoom: Annotated[float, typer.Option(help="Scale per frame: >1 zooms in, <1 out.")] = 1.02,
    rotate: Annotated[float, typer.Option(help="Degrees per frame, counter-clockwise.")] = 0.0,
    pan: Annotated[Tuple[float, float], typer.Option(help="Pixels per frame the picture moves: right, down.")] = (0.0, 0.0),
    save_frames: Annotated[bool, typer.Option("--save-frames/--no-save-frames", help="Also save every frame as a PNG.")] = False,
    vqgan: o.Vqgan = None,
    vqgan_ckpt: o.VqganCkpt = None,
    clip: o.Clip = None,
    size: o.Size = None,
    steps: Annotated[Optional[int], typer.Option(help="Steps of the first frame.")] = None,
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
    preset: Presets = None,
    set_: Sets = None,
    checkpoints_dir: CheckpointsDir = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Animate PROMPT: each frame re-encodes the previous one zoomed, rotated and panned; prints the mp4's path."""
    set_offline(offline)
    if prompt is None:
        raise UsageError('give a prompt, e.g. vqclip animate "a fractal city" --frames 60 --zoom 1.02')
    options = o.config_options(locals())
    cfg = config_from_options(prompt, preset, None, set_, options)
    check_writable(cfg.output.dir)
    motion = Motion(zoom, rotate, pan)
    plan = check(cfg)
    dev = pick_device(cfg.device)
    models = load_models(plan, dev, cfg.model.checkpoints_dir)
    with StepBar(frames, every=1, desc="animate") as bar, sigterm_as_interrupt():
        try:
            result = run_animation(cfg, plan, models, dev, frames, steps_per_frame, motion, save_frames,
                                   on_frame=lambda step: _frame_done(bar, step))
        except Interrupted as e:
            typer.echo(f"interrupted at frame {e.result.step}; saved what was made in {e.result.folder}", err=True)
            for path in e.result.videos:
                typer.echo(str(path))
            raise typer.Exit(130) from None
    typer.echo(f"done in {result.seconds:.1f}s; folder {result.folder}", err=True)
    for path in result.videos:
        typer.echo(str(path))


def _frame_done(bar: StepBar, step) -> None:
    bar.bar.update(1)
    bar.bar.set_postfix(loss=f"{float(step.loss.mean()):.4f}")
