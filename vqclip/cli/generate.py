"""`vqclip generate PROMPT`: one image, with frames, a final PNG and an optional progress video."""

from __future__ import annotations

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
    set_offline,
    sigterm_as_interrupt,
)
from .progress import DownloadBar, StepBar


@app.command()
@command
def generate(
    prompt: o.Prompt = None,
    vqgan: o.Vqgan = None,
    vqgan_ckpt: o.VqganCkpt = None,
    clip: o.Clip = None,
    size: o.Size = None,
    steps: o.Steps = None,
    story_every: o.StoryEvery = None,
    keyframe: o.Keyframe = None,
    seed: o.Seed = None,
    lr: o.Lr = None,
    optimizer: o.Optimizer = None,
    cutn: o.Cutn = None,
    cut_pow: o.CutPow = None,
    augments: o.Augments = None,
    init_image: o.InitImage = None,
    init_weight: o.InitWeight = None,
    image_prompt: o.ImagePrompt = None,
    out: o.Out = None,
    name: o.Name = None,
    save_every: o.SaveEvery = None,
    video: o.Video = None,
    gif: o.Gif = None,
    fps: o.Fps = None,
    device: o.Device = None,
    preset: Presets = None,
    set_: Sets = None,
    from_: o.From = None,
    checkpoints_dir: CheckpointsDir = None,
    mirror: Mirror = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Generate an image for PROMPT; the final PNG's path is the last line printed."""
    set_offline(offline)
    options = o.config_options(locals())
    if prompt is None and from_ is None and not image_prompt and not keyframe:
        raise UsageError('give a prompt, e.g. vqclip generate "a red circle" --preset toy')
    # the library (and torch) is imported when the command runs, so `vqclip --help` stays fast
    from ..provenance import config_for
    from ..runner import VQGANFinder, prepare_run, run_image
    from ..writer import Interrupted
    cfg = config_for(prompt, preset, from_, set_, options)
    with DownloadBar() as download_bar:  # a missing registry VQGAN is fetched on first use, unless offline
        run = prepare_run(cfg, finder=VQGANFinder(mirror=mirror, on_progress=download_bar))
    with StepBar(cfg.steps) as bar, sigterm_as_interrupt():
        try:
            result = run_image(run, on_step=bar.update)
        except Interrupted as e:
            r = e.result
            typer.echo(f"interrupted at step {r.step}; saved what was made in {r.folder}", err=True)
            if r.image is not None:
                typer.echo(str(r.image))
            raise typer.Exit(130) from None
    for path in result.videos:
        typer.echo(f"video: {path}", err=True)
    typer.echo(f"done in {result.seconds:.1f}s, loss {result.loss:.4f}; folder {result.folder}", err=True)
    typer.echo(str(result.image))
