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
    need,
    set_offline,
    sigterm_as_interrupt,
)
from .progress import DownloadBar, StepBar
from .watch import watching


@app.command(cls=o.SizeCommand)
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
    save_state: o.SaveState = None,
    video: o.Video = None,
    gif: o.Gif = None,
    fps: o.Fps = None,
    device: o.Device = None,
    preview: o.Preview = False,
    preview_port: o.PreviewPort = 0,
    preview_host: o.PreviewHost = o.PREVIEW_HOST,
    preset: Presets = None,
    set_: Sets = None,
    from_: o.From = None,
    resume: o.Resume = None,
    checkpoints_dir: CheckpointsDir = None,
    mirror: Mirror = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Generate an image for PROMPT; the final PNG's path is the last line printed."""
    set_offline(offline)
    options = o.config_options(locals())
    if resume is not None:
        need(
            prompt is None and from_ is None and not preset,
            "--resume continues a run with its own prompt and settings; drop the prompt, --from and --preset",
        )
    elif prompt is None and from_ is None and not image_prompt and not keyframe:
        raise UsageError('give a prompt, e.g. vqclip generate "a red circle" --preset toy')
    # the library (and torch) is imported when the command runs, so `vqclip --help` stays fast
    from ..provenance import config_for
    from ..runner import VQGANFinder, prepare_resume, prepare_run, run_image
    from ..writer import Interrupted

    with DownloadBar() as download_bar:  # a missing registry VQGAN is fetched on first use, unless offline
        finder = VQGANFinder(mirror=mirror, on_progress=download_bar)
        if resume is not None:
            run = prepare_resume(resume, options, set_ or (), finder=finder, load=False)
        else:
            run = prepare_run(config_for(prompt, preset, from_, set_, options), finder=finder, load=False)
    start = run.resume.step if run.resume is not None else 0
    with watching(preview, preview_host, preview_port, "generate", run.cfg.prompt or "") as observers:
        run.load()  # once --preview holds its port (a taken one fails before the slow part), before the bar
        with StepBar(run.cfg.steps, initial=start) as bar, sigterm_as_interrupt():
            try:
                result = run_image(run, on_step=bar.update, observers=observers)
            except Interrupted as e:
                bar.close()
                r = e.result
                hint = f"; continue it with vqclip generate --resume {r.folder}" if r.state else ""
                typer.echo(f"interrupted at step {r.step}; saved what was made in {r.folder}{hint}", err=True)
                if r.image is not None:
                    typer.echo(str(r.image))
                raise typer.Exit(130) from None
    for path in result.videos:
        typer.echo(f"video: {path}", err=True)
    typer.echo(f"done in {result.seconds:.1f}s, loss {result.loss:.4f}; folder {result.folder}", err=True)
    typer.echo(str(result.image))
