"""Options shared by generate, batch and animate: each declared once, with the config key it sets.

Commands list the ones they take in their signatures (Typer needs that) using these types, and hand their
`locals()` to `config_options`, which maps every option given to its dotted config key. Defaults live in
the config dataclass, not here: an option left out is None and changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Callable, List, Optional, Tuple

import typer
from typer.core import TyperCommand

from ..choices import AUGMENT_NAMES, OPTIMIZER_NAMES
from ..config import Config
from ..story import parse_keyframes

DEFAULTS = Config()  # the defaults shown in the help live in the config dataclass, never retyped here

Prompt = Annotated[
    Optional[str],
    typer.Argument(help='Prompts "text[:weight[:stop]]", several joined by |; a colon between digits (12:30) is text.'),
]
Vqgan = Annotated[
    Optional[str], typer.Option(help=f"VQGAN registry name, or a taming yaml (default {DEFAULTS.model.vqgan}).")
]
VqganCkpt = Annotated[Optional[str], typer.Option(help="Checkpoint for a yaml given by --vqgan.")]
Clip = Annotated[
    Optional[List[str]],
    typer.Option(
        help=f"open_clip NAME[:TAG|:/path] or local-dir:DIR; repeatable (default {','.join(DEFAULTS.model.clip)})."
    ),
]
Size = Annotated[
    Optional[Tuple[int, int]],
    typer.Option(
        metavar="W H",
        help=f"Image width and height: --size 384 256 or --size 384x256 (default {DEFAULTS.width} {DEFAULTS.height}).",
    ),
]
Steps = Annotated[Optional[int], typer.Option(help=f"Optimisation steps (default {DEFAULTS.steps}).")]
StoryEvery = Annotated[
    Optional[int],
    typer.Option(help='Story mode: "a^b^c" switches prompt every N steps (default: the steps split evenly).'),
]
Keyframe = Annotated[
    Optional[List[str]],
    typer.Option(
        help='Story mode: STEP=PROMPT, the prompt from that step on, e.g. --keyframe 150="a sapling"; repeatable.'
    ),
]
Seed = Annotated[Optional[int], typer.Option(help="Random seed (default: drawn, and recorded in every PNG).")]
Lr = Annotated[Optional[float], typer.Option(help=f"Learning rate (default {DEFAULTS.optim.lr}).")]
Optimizer = Annotated[
    Optional[str], typer.Option(help=f"{', '.join(OPTIMIZER_NAMES)} (default {DEFAULTS.optim.name}).")
]
Cutn = Annotated[Optional[int], typer.Option(help=f"Cutouts per step (default {DEFAULTS.cutouts.cutn}).")]
CutPow = Annotated[
    Optional[float],
    typer.Option(help=f"Cutout size power: >1 favours small crops (default {DEFAULTS.cutouts.cut_pow})."),
]
Augments = Annotated[
    Optional[str],
    typer.Option(
        help=f"Comma-separated augmentations from {', '.join(AUGMENT_NAMES)} "
        f"(default {','.join(DEFAULTS.cutouts.augments)})."
    ),
]
InitImage = Annotated[Optional[str], typer.Option(help="Start from this image.")]
InitWeight = Annotated[
    Optional[float], typer.Option(help=f"Pull towards the starting latent (default {DEFAULTS.init_weight}).")
]
ImagePrompt = Annotated[Optional[List[str]], typer.Option(help="Image prompt path[:weight]; repeatable.")]
Out = Annotated[Optional[str], typer.Option(help=f"Output folder (default {DEFAULTS.output.dir}).")]
Name = Annotated[
    Optional[str],
    typer.Option(
        help="Run folder name, kept as typed when it is a safe file name (default: the prompt's slug and the seed)."
    ),
]
SaveEvery = Annotated[
    Optional[int], typer.Option(help=f"Save a frame every N steps, 0: none (default {DEFAULTS.output.save_every}).")
]
Video = Annotated[Optional[bool], typer.Option("--video/--no-video", help="Write a progress mp4 (default: no).")]
Gif = Annotated[Optional[bool], typer.Option("--gif/--no-gif", help="Also write a gif (default: no).")]
Fps = Annotated[Optional[int], typer.Option(help=f"Video frame rate (default {DEFAULTS.output.fps}).")]
Device = Annotated[Optional[str], typer.Option(help=f"auto, cpu, cuda or mps (default {DEFAULTS.device}).")]
From = Annotated[Optional[Path], typer.Option("--from", help="Re-run from a PNG made by vqclip (its recorded config).")]
SaveState = Annotated[
    Optional[bool],
    typer.Option(
        "--save-state/--no-save-state",
        help="Also save the run's state at every saved frame (an interrupt always does), "
        "so --resume works even after a crash or kill -9.",
    ),
]
Resume = Annotated[
    Optional[Path],
    typer.Option(
        "--resume",
        help="Continue the interrupted run saved in this folder, in it, with its own settings "
        "(only --device may change).",
    ),
]

# --preview: a local web page of the run as it forms (vqclip.preview); not config keys, since they change nothing made
Preview = Annotated[
    bool, typer.Option("--preview/--no-preview", help="Watch the images form on a local web page; its URL is printed.")
]
PreviewPort = Annotated[int, typer.Option(min=0, max=65535, help="The preview page's port (0: any free one).")]
PreviewHost = Annotated[
    str,
    typer.Option(help="Address the preview page listens on; anything but 127.0.0.1 shows the run to other machines."),
]
PREVIEW_HOST = "127.0.0.1"

# animate: a story counts frames there, not steps
StoryEveryFrames = Annotated[
    Optional[int],
    typer.Option(
        "--story-every", help='Story mode: "a^b^c" switches prompt every N frames (default: the frames split evenly).'
    ),
]
KeyframeFrames = Annotated[
    Optional[List[str]],
    typer.Option(
        "--keyframe",
        help='Story mode: FRAME=PROMPT, the prompt from that frame on, e.g. --keyframe 30="a sapling"; repeatable.',
    ),
]
_ANIMATION = DEFAULTS.animation
Frames = Annotated[Optional[int], typer.Option(min=1, help=f"Frames of the animation (default {_ANIMATION.frames}).")]
StepsPerFrame = Annotated[
    Optional[int],
    typer.Option(
        min=1, help=f"Steps for each frame after the first, which runs --steps (default {_ANIMATION.steps_per_frame})."
    ),
]
Zoom = Annotated[
    Optional[float], typer.Option(help=f"Scale per frame: >1 zooms in, <1 out (default {_ANIMATION.zoom}).")
]
Rotate = Annotated[
    Optional[float], typer.Option(help=f"Degrees per frame, counter-clockwise (default {_ANIMATION.rotate}).")
]
Pan = Annotated[
    Optional[Tuple[float, float]],
    typer.Option(
        help=f"Pixels per frame the picture moves: right, down (default {' '.join(map(str, _ANIMATION.pan))})."
    ),
]
Blend = Annotated[
    Optional[int],
    typer.Option(
        min=0,
        help=f"Story mode: frames over which each new prompt fades in, 0: a cut (default {_ANIMATION.blend}).",
    ),
]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _nonempty(value):
    return value or None


def _keyframes(items):
    return parse_keyframes(items) or None


# parameter name -> (config key, conversion)
_KEYS: dict[str, tuple[str, Optional[Callable]]] = {
    "vqgan": ("model.vqgan", None),
    "vqgan_ckpt": ("model.vqgan_ckpt", None),
    "clip": ("model.clip", _nonempty),
    "checkpoints_dir": ("model.checkpoints_dir", str),
    "steps": ("steps", None),
    "story_every": ("story_every", None),
    "seed": ("seed", None),
    "lr": ("optim.lr", None),
    "optimizer": ("optim.name", None),
    "cutn": ("cutouts.cutn", None),
    "cut_pow": ("cutouts.cut_pow", None),
    "augments": ("cutouts.augments", _csv),
    "init_image": ("init_image", None),
    "init_weight": ("init_weight", None),
    "image_prompt": ("image_prompts", _nonempty),
    "out": ("output.dir", None),
    "name": ("output.name", None),
    "save_every": ("output.save_every", None),
    "video": ("output.video", None),
    "gif": ("output.gif", None),
    "save_state": ("output.save_state", None),
    "fps": ("output.fps", None),
    "device": ("device", None),
    "keyframe": ("keyframes", _keyframes),
    "frames": ("animation.frames", None),
    "steps_per_frame": ("animation.steps_per_frame", None),
    "zoom": ("animation.zoom", None),
    "rotate": ("animation.rotate", None),
    "pan": ("animation.pan", list),
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


_WXH = re.compile(r"\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*")
_INT = re.compile(r"\s*[+-]?\d+\s*")


def split_size(args: List[str], ctx=None) -> List[str]:
    """`--size 384x256` (and `--size=384x256`, as job files write it) -> `--size 384 256`; anything but two whole
    numbers after --size is refused with the two forms it takes."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":  # what follows is not options
            return out + args[i:]
        if arg == "--size" or arg.startswith("--size="):
            given = [arg[len("--size=") :]] if arg != "--size" else args[i + 1 : i + 3]
            taken = 1 if arg != "--size" else 2
            whole = _WXH.fullmatch(given[0]) if given else None
            if whole:
                out += ["--size", *whole.groups()]
                i += taken
                continue
            if arg != "--size" or len(given) < 2 or not all(_INT.fullmatch(g) for g in given):
                shown = " ".join(g for g in given[:2] if not g.startswith("--")) or "nothing"
                raise typer.BadParameter(
                    f"give WIDTH HEIGHT or WIDTHxHEIGHT, e.g. --size 384 256 or --size 384x256; got {shown!r}",
                    ctx=ctx,
                    param_hint="'--size'",
                )
        out.append(arg)
        i += 1
    return out


class SizeCommand(TyperCommand):
    """A command whose --size takes `W H` or `WxH`."""

    def parse_args(self, ctx, args):
        return super().parse_args(ctx, split_size(list(args), ctx))
