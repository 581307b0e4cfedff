"""`vqclip score`, `vqclip rank` and `vqclip classify`: CLIP's own uses, over image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..errors import UsageError
from .common import CheckpointsDir, Debug, Offline, app, command, set_offline

Clip = Annotated[
    Optional[str],
    typer.Option(
        help="open_clip NAME[:TAG|:/path], local-dir:DIR, or `toy` (default: the preset's, else generate's, "
        "ViT-B-32-quickgelu:openai)."
    ),
]
Device = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda or mps (default: the preset's, else auto).")]
Preset = Annotated[
    Optional[List[str]],
    typer.Option("--preset", help="Take the CLIP, device and checkpoints folder of a preset (e.g. toy); repeatable."),
]


def _tools():
    """vqclip.clip_tools, imported when a command runs (it imports torch), so `vqclip --help` stays fast."""
    from .. import clip_tools

    return clip_tools


@dataclass
class _Setup:
    """The CLIP, device and checkpoints folder a command runs with: options first, then the presets'."""

    clip: Optional[str]
    device: str
    checkpoints: Optional[str]

    @classmethod
    def of(cls, presets, clip, device, checkpoints_dir, offline) -> "_Setup":
        set_offline(offline)
        checkpoints = str(checkpoints_dir) if checkpoints_dir else None
        if not presets:
            return cls(clip, device or "auto", checkpoints)
        from ..config import resolve

        cfg = resolve(presets)
        if clip is None and len(cfg.model.clip) != 1:
            raise UsageError(
                f"preset {', '.join(presets)} guides with {len(cfg.model.clip)} CLIPs "
                f"({', '.join(cfg.model.clip)}); this command uses one: add --clip NAME"
            )
        return cls(clip or cfg.model.clip[0], device or cfg.device, checkpoints or cfg.model.checkpoints_dir)

    def perceptor(self):
        return _tools().open_perceptor(self.clip, self.device, self.checkpoints)


@app.command()
@command
def score(
    images: Annotated[List[Path], typer.Argument(help="Image files.", show_default=False)],
    prompt: Annotated[str, typer.Option(help="The text to compare each image with.", show_default=False)],
    clip: Clip = None,
    preset: Preset = None,
    device: Device = None,
    checkpoints_dir: CheckpointsDir = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """CLIP similarity (cosine) of each image to --prompt: one `score  path` line per image, in order."""
    clip_tools = _tools()
    setup = _Setup.of(preset, clip, device, checkpoints_dir, offline)
    paths = clip_tools.check_images(images)
    clip_tools.check_text(prompt, "prompt")
    perceptor = setup.perceptor()
    for path, value in zip(paths, clip_tools.score(perceptor, paths, prompt)):
        typer.echo(f"{value:.4f}  {path}")


@app.command()
@command
def rank(
    folder: Annotated[Path, typer.Argument(help="Folder of images, searched with its subfolders.", show_default=False)],
    query: Annotated[str, typer.Argument(help="What to search for.", show_default=False)],
    top: Annotated[Optional[int], typer.Option(help="Show only the best K.")] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search subfolders too.")] = True,
    frames: Annotated[
        bool, typer.Option("--frames/--no-frames", help="Also rank runs' saved frames (frames/).")
    ] = False,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse and store image embeddings.")] = True,
    clip: Clip = None,
    preset: Preset = None,
    device: Device = None,
    checkpoints_dir: CheckpointsDir = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Text-to-image search over FOLDER: `score  path` lines, best first, paths relative to FOLDER.

    Subfolders are searched (not hidden ones, nor runs' frames/ unless --frames); videos, animated GIFs, contact
    sheets and the checkpoints folder are skipped. Embeddings are cached.
    """
    clip_tools = _tools()
    setup = _Setup.of(preset, clip, device, checkpoints_dir, offline)
    # bad input is caught before the model loads
    clip_tools.check_rank(folder, query, top, recursive, frames, setup.checkpoints)
    result = clip_tools.rank(
        setup.perceptor(),
        folder,
        query,
        top,
        use_cache=cache,
        checkpoints=setup.checkpoints,
        recursive=recursive,
        frames=frames,
    )
    typer.echo(f"embedded {result.computed} image(s), {result.cached} from the cache", err=True)
    for path, value in result.ranked:
        typer.echo(f"{value:.4f}  {path.relative_to(folder)}")


@app.command()
@command
def classify(
    image: Annotated[Path, typer.Argument(help="Image file.", show_default=False)],
    labels: Annotated[str, typer.Option(help='Comma-separated labels, e.g. "cat,dog,person".', show_default=False)],
    template: Annotated[
        Optional[List[str]],
        typer.Option(
            help='Caption template with {} for the label; repeatable (default: "a photo of a {}." and 4 more).'
        ),
    ] = None,
    clip: Clip = None,
    preset: Preset = None,
    device: Device = None,
    checkpoints_dir: CheckpointsDir = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Zero-shot classification of IMAGE: `probability  label` lines, best first."""
    clip_tools = _tools()
    setup = _Setup.of(preset, clip, device, checkpoints_dir, offline)
    path = clip_tools.check_images([image])[0]
    names = clip_tools.parse_labels(labels)
    templates = clip_tools.check_templates(template or clip_tools.DEFAULT_TEMPLATES)
    perceptor = setup.perceptor()
    for p in clip_tools.classify(perceptor, path, names, templates):
        typer.echo(f"{p.probability:.4f}  {p.label}")
