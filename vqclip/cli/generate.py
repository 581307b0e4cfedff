"""`vqclip generate PROMPT`: one image, with frames, a final PNG and an optional progress video."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..config import Config, resolve
from ..errors import UsageError
from ..memory import Workload, check_memory, oom_advice
from ..outputs import check_writable, read_png_metadata
from ..pipeline import check, load_models, pick_device
from ..hub import ensure_vqgan
from ..session import Interrupted, run
from . import options as o
from .common import CheckpointsDir, Debug, Offline, Presets, Sets, app, command, set_offline, \
    sigterm_as_interrupt
from .models import DownloadBar
from .progress import StepBar


def config_from_options(prompt: Optional[str], presets, from_png: Optional[Path], sets, options: dict,
                        command: str = "generate") -> Config:
    """defaults <- presets <- the PNG's recorded config <- explicit options <- --set."""
    base = None
    if from_png is not None:
        try:
            meta = read_png_metadata(from_png)
        except OSError as e:
            raise UsageError(f"cannot read {from_png} ({e}); --from takes a PNG written by vqclip") from None
        base = meta.get("config")
        if not base:
            raise UsageError(f"{from_png} carries no vqclip config; --from takes a PNG written by vqclip")
        # a frame depends on the frames before it (and a story there counts frames, not steps)
        if "animation" in meta and command != "animate":
            raise UsageError(f"{from_png} is a frame of an animation; re-run it with vqclip animate --from "
                             f"{from_png}, or start a still from it with --init-image")
        # a re-run is a new run: its own folder name, not the recorded one
        options.setdefault("output.name", None)
    if prompt is not None:
        options["prompt"] = prompt
    cfg = resolve(presets or (), base, options, sets or ())
    if from_png is not None and options.get("output.name") is None:
        cfg.output.name = None
    return cfg


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
    offline: Offline = False,
    debug: Debug = False,
):
    """Generate an image for PROMPT; the final PNG's path is the last line printed."""
    set_offline(offline)
    options = o.config_options(locals())
    if prompt is None and from_ is None and not image_prompt and not keyframe:
        raise UsageError('give a prompt, e.g. vqclip generate "a red circle" --preset toy')
    cfg = config_from_options(prompt, preset, from_, set_, options)
    with DownloadBar() as download_bar:  # a missing registry VQGAN is fetched on first use, unless offline
        ensure_vqgan(cfg.model.vqgan, cfg.model.vqgan_ckpt, cfg.model.checkpoints_dir, on_progress=download_bar)
    plan = check(cfg)  # everything that can be wrong without a model is caught here
    dev = pick_device(cfg.device)
    check_writable(cfg.output.dir)
    work = Workload.of(plan, cfg, dev)
    check_memory(work)
    models = load_models(plan, dev, cfg.model.checkpoints_dir)
    with oom_advice(work), StepBar(cfg.steps) as bar, \
            sigterm_as_interrupt():
        try:
            result = run(cfg, models, dev, on_step=bar.update, plan=plan)
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
