"""Options shared by generate, batch and animate: each declared once, with the config key it sets.

Commands list the ones they take in their signatures (Typer needs that) using these types, and hand their
`locals()` to `config_options`, which maps every option given to its dotted config key. Defaults live in
the config dataclass, not here: an option left out is None and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Callable, List, Optional, Tuple

import typer

from ..config import AnimationConfig
from ..story import parse_keyframes

Prompt = Annotated[Optional[str], typer.Argument(help='Prompts "text[:weight[:stop]]", several joined by |.')]
Vqgan = Annotated[Optional[str], typer.Option(help="VQGAN registry name, or a taming yaml.")]
VqganCkpt = Annotated[Optional[str], typer.Option(help="Checkpoint for a yaml given by --vqgan.")]
Clip = Annotated[Optional[List[str]], typer.Option(help="open_clip NAME[:TAG|:/path] or local-dir:DIR; repeatable.")]
Size = Annotated[Optional[Tuple[int, int]], typer.Option(help="Image width and height.")]
Steps = Annotated[Optional[int], typer.Option(help="Optimisation steps.")]
StoryEvery = Annotated[Optional[int], typer.Option(help='Story mode: "a^b^c" switches prompt every N steps.')]
Keyframe = Annotated[Optional[List[str]], typer.Option(
    help='Story mode: STEP=PROMPT, the prompt from that step on, e.g. --keyframe 150="a sapling"; repeatable.')]
Seed = Annotated[Optional[int], typer.Option(help="Random seed (drawn and recorded when not given).")]
Lr = Annotated[Optional[float], typer.Option(help="Learning rate.")]
Optimizer = Annotated[Optional[str], typer.Option(help="adam, adamw or sgd.")]
Cutn = Annotated[Optional[int], typer.Option(help="Cutouts per step.")]
CutPow = Annotated[Optional[float], typer.Option(help="Cutout size power.")]
Augments = Annotated[Optional[str], typer.Option(help="Comma-separated augmentations, e.g. flip,affine,noise.")]
InitImage = Annotated[Optional[str], typer.Option(help="Start from this image.")]
InitWeight = Annotated[Optional[float], typer.Option(help="Pull towards the starting latent.")]
ImagePrompt = Annotated[Optional[List[str]], typer.Option(help="Image prompt path[:weight]; repeatable.")]
Out = Annotated[Optional[str], typer.Option(help="Output folder.")]
Name = Annotated[Optional[str], typer.Option(help="Run folder name.")]
SaveEvery = Annotated[Optional[int], typer.Option(help="Save a frame every N steps (0: none).")]
Video = Annotated[Optional[bool], typer.Option("--video/--no-video", help="Write a progress mp4.")]
Gif = Annotated[Optional[bool], typer.Option("--gif/--no-gif", help="Also write a gif.")]
Fps = Annotated[Optional[int], typer.Option(help="Video frame rate.")]
Device = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or mps.")]
From = Annotated[Optional[Path], typer.Option("--from", help="Re-run from a PNG made by vqclip (its recorded config).")]
SaveState = Annotated[Optional[bool], typer.Option(
    "--save-state/--no-save-state", help="Also save the run's state at every saved frame (an interrupt always does), "
                                         "so --resume works even after a crash or kill -9.")]
Resume = Annotated[Optional[Path], typer.Option(
    "--resume", help="Continue the interrupted run saved in this folder, in it, with its own settings "
                     "(only --device may change).")]

# --preview: a local web page of the run as it forms (vqclip.preview); not config keys, since they change nothing made
Preview = Annotated[bool, typer.Option("--preview/--no-preview",
                                       help="Watch the images form on a local web page; its URL is printed.")]
PreviewPort = Annotated[int, typer.Option(min=0, max=65535, help="The preview page's port (0: any free one).")]
PreviewHost = Annotated[str, typer.Option(
    help="Address the preview page listens on; anything but 127.0.0.1 shows the run to other machines.")]
PREVIEW_HOST = "127.0.0.1"

# animate: a story counts frames there, not steps
StoryEveryFrames = Annotated[Optional[int], typer.Option(
    "--story-every", help='Story mode: "a^b^c" switches prompt every N frames (default: the frames split evenly).')]
KeyframeFrames = Annotated[Optional[List[str]], typer.Option(
    "--keyframe", help='Story mode: FRAME=PROMPT, the prompt from that frame on, e.g. --keyframe 30="a sapling"; '
                       'repeatable.')]
_ANIMATION = AnimationConfig()  # its defaults, shown in the help (they live in the dataclass)
Frames = Annotated[Optional[int], typer.Option(min=1, help=f"Frames of the animation (default {_ANIMATION.frames}).")]
StepsPerFrame = Annotated[Optional[int], typer.Option(
    min=1, help=f"Steps for each frame after the first, which runs --steps (default {_ANIMATION.steps_per_frame}).")]
Zoom = Annotated[Optional[float], typer.Option(help=f"Scale per frame: >1 zooms in, <1 out (default {_ANIMATION.zoom}).")]
Rotate = Annotated[Optional[float], typer.Option(help="Degrees per frame, counter-clockwise.")]
Pan = Annotated[Optional[Tuple[float, float]], typer.Option(help="Pixels per frame the picture moves: right, down.")]
Blend = Annotated[Optional[int], typer.Option(
    min=0, help="Story mode: frames over which each new prompt fades in (0: a cut).")]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _nonempty(value):
    return value or None


def _keyframes(items):
    return parse_keyframes(items) or None


# parameter name -> (config key, conversion)
_KEYS: dict[str, tuple[str, Optional[Callable]]] = {
    "vqgan": ("model.vqgan", None), "vqgan_ckpt": ("model.vqgan_ckpt", None), "clip": ("model.clip", _nonempty),
    "checkpoints_dir": ("model.checkpoints_dir", str), "steps": ("steps", None), "story_every": ("story_every", None),
    "seed": ("seed", None), "lr": ("optim.lr", None), "optimizer": ("optim.name", None),
    "cutn": ("cutouts.cutn", None), "cut_pow": ("cutouts.cut_pow", None), "augments": ("cutouts.augments", _csv),
    "init_image": ("init_image", None), "init_weight": ("init_weight", None),
    "image_prompt": ("image_prompts", _nonempty), "out": ("output.dir", None), "name": ("output.name", None),
    "save_every": ("output.save_every", None), "video": ("output.video", None), "gif": ("output.gif", None),
    "save_state": ("output.save_state", None),
    "fps": ("output.fps", None), "device": ("device", None), "keyframe": ("keyframes", _keyframes),
    "frames": ("animation.frames", None), "steps_per_frame": ("animation.steps_per_frame", None),
    "zoom": ("animation.zoom", None), "rotate": ("animation.rotate", None), "pan": ("animation.pan", list),
    "blend": ("animation.blend", None),
}


def config_options(params: dict) -> dict:
    """A command's parameters -> {dotted config key: value} for the options that were given."""
    options: dict = {}
    for name, value in params.items():
        if value is None:
            continue
        if name == "size":
            options["width"], options["height"] = value
        elif name in _KEYS:
            key, convert = _KEYS[name]
            options[key] = convert(value) if convert else value
    return {k: v for k, v in options.items() if v is not None}
