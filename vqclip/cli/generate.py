"""`vqclip generate PROMPT`: one image, with frames, a final PNG and an optional progress video."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from typing_extensions import Annotated

from ..config import Config, resolve
from ..errors import UsageError
from ..memory import check_memory, oom_advice
from ..outputs import check_writable, read_png_metadata
from ..pipeline import check, load_models, pick_device
from ..hub import ensure_vqgan
from ..session import Interrupted, run
from .common import CheckpointsDir, Debug, Offline, Presets, Sets, app, command, parse_list, set_offline, \
    sigterm_as_interrupt
from .models import DownloadBar
from .progress import StepBar


def config_from_options(prompt: Optional[str], presets, from_png: Optional[Path], sets, options: dict) -> Config:
    """defaults <- presets <- the PNG's recorded config <- explicit options <- --set."""
    base = None
    if from_png is not None:
        try:
            base = read_png_metadata(from_png).get("config")
        except OSError as e:
            raise UsageError(f"cannot read {from_png} ({e}); --from takes a PNG written by vqclip") from None
        if not base:
            raise UsageError(f"{from_png} carries no vqclip config; --from takes a PNG written by vqclip")
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
    prompt: Annotated[Optional[str], typer.Argument(help='Prompts "text[:weight[:stop]]", several joined by |.')] = None,
    vqgan: Annotated[Optional[str], typer.Option(help="VQGAN registry name, or a taming yaml.")] = None,
    vqgan_ckpt: Annotated[Optional[str], typer.Option(help="Checkpoint for a yaml given by --vqgan.")] = None,
    clip: Annotated[Optional[List[str]], typer.Option(help="open_clip NAME[:TAG|:/path] or local-dir:DIR; repeatable.")] = None,
    size: Annotated[Optional[Tuple[int, int]], typer.Option(help="Image width and height.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimisation steps.")] = None,
    story_every: Annotated[Optional[int], typer.Option(help='Story mode: "a^b^c" switches prompt every N steps.')] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (drawn and recorded when not given).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam, adamw or sgd.")] = None,
    cutn: Annotated[Optional[int], typer.Option(help="Cutouts per step.")] = None,
    cut_pow: Annotated[Optional[float], typer.Option(help="Cutout size power.")] = None,
    augments: Annotated[Optional[str], typer.Option(help="Comma-separated augmentations, e.g. flip,affine,noise.")] = None,
    init_image: Annotated[Optional[str], typer.Option(help="Start from this image.")] = None,
    init_weight: Annotated[Optional[float], typer.Option(help="Pull towards the init image's latent.")] = None,
    image_prompt: Annotated[Optional[List[str]], typer.Option(help="Image prompt path[:weight]; repeatable.")] = None,
    out: Annotated[Optional[str], typer.Option(help="Output folder.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run folder name.")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Save a frame every N steps (0: none).")] = None,
    video: Annotated[Optional[bool], typer.Option("--video/--no-video", help="Write a progress mp4.")] = None,
    gif: Annotated[Optional[bool], typer.Option("--gif/--no-gif", help="Also write a progress gif.")] = None,
    fps: Annotated[Optional[int], typer.Option(help="Video frame rate.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or mps.")] = None,
    preset: Presets = None,
    set_: Sets = None,
    from_: Annotated[Optional[Path], typer.Option("--from", help="Re-run from a PNG made by vqclip.")] = None,
    checkpoints_dir: CheckpointsDir = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Generate an image for PROMPT; the final PNG's path is the last line printed."""
    set_offline(offline)
    options = {
        "model.vqgan": vqgan, "model.vqgan_ckpt": vqgan_ckpt, "model.clip": clip or None,
        "width": size[0] if size else None, "height": size[1] if size else None, "steps": steps, "seed": seed,
        "story_every": story_every,
        "optim.lr": lr, "optim.name": optimizer, "cutouts.cutn": cutn, "cutouts.cut_pow": cut_pow,
        "cutouts.augments": parse_list(augments), "init_image": init_image, "init_weight": init_weight,
        "image_prompts": image_prompt or None, "output.dir": out, "output.name": name,
        "output.save_every": save_every, "output.video": video, "output.gif": gif, "output.fps": fps,
        "device": device, "model.checkpoints_dir": str(checkpoints_dir) if checkpoints_dir else None,
    }
    if prompt is None and from_ is None and not image_prompt:
        raise UsageError('give a prompt, e.g. vqclip generate "a red circle" --preset toy')
    cfg = config_from_options(prompt, preset, from_, set_, options)
    with DownloadBar() as download_bar:  # a missing registry VQGAN is fetched on first use, unless offline
        ensure_vqgan(cfg.model.vqgan, cfg.model.vqgan_ckpt, cfg.model.checkpoints_dir, on_progress=download_bar)
    plan = check(cfg)  # everything that can be wrong without a model is caught here
    dev = pick_device(cfg.device)
    check_writable(cfg.output.dir)
    check_memory(plan.vqgan_spec, plan.width, plan.height, dev)
    models = load_models(plan, dev, cfg.model.checkpoints_dir)
    with oom_advice(plan.vqgan_spec, plan.width, plan.height, dev), StepBar(cfg.steps) as bar, \
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
