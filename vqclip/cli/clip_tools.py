"""`vqclip score`, `vqclip rank` and `vqclip classify`: CLIP's own uses, over image files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .common import CheckpointsDir, Debug, Offline, app, command, set_offline

Clip = Annotated[Optional[str], typer.Option(help="open_clip NAME[:TAG|:/path], local-dir:DIR, or `toy` "
                                                  "(default: generate's, ViT-B-32-quickgelu:openai).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]


def _tools():
    """vqclip.clip_tools, imported when a command runs (it imports torch), so `vqclip --help` stays fast."""
    from .. import clip_tools

    return clip_tools


def _perceptor(clip, device, checkpoints_dir, offline):
    set_offline(offline)
    return _tools().open_perceptor(clip, device, str(checkpoints_dir) if checkpoints_dir else None)


@app.command()
@command
def score(
    images: Annotated[List[Path], typer.Argument(help="Image files.", show_default=False)],
    prompt: Annotated[str, typer.Option(help="The text to compare each image with.", show_default=False)],
    clip: Clip = None, device: Device = "auto", checkpoints_dir: CheckpointsDir = None, offline: Offline = False,
    debug: Debug = False,
):
    """CLIP similarity (cosine) of each image to --prompt: one `score  path` line per image, in order."""
    clip_tools = _tools()
    paths = clip_tools.check_images(images)
    clip_tools.check_text(prompt, "prompt")
    perceptor = _perceptor(clip, device, checkpoints_dir, offline)
    for path, value in zip(paths, clip_tools.score(perceptor, paths, prompt)):
        typer.echo(f"{value:.4f}  {path}")


@app.command()
@command
def rank(
    folder: Annotated[Path, typer.Argument(help="Folder of images.", show_default=False)],
    query: Annotated[str, typer.Argument(help="What to search for.", show_default=False)],
    top: Annotated[Optional[int], typer.Option(help="Show only the best K.")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse and store image embeddings.")] = True,
    clip: Clip = None, device: Device = "auto", checkpoints_dir: CheckpointsDir = None, offline: Offline = False,
    debug: Debug = False,
):
    """Text-to-image search over FOLDER: `score  path` lines, best first; embeddings are cached."""
    clip_tools = _tools()
    clip_tools.check_rank(folder, query, top)  # bad input is caught before the model loads
    perceptor = _perceptor(clip, device, checkpoints_dir, offline)
    result = clip_tools.rank(perceptor, folder, query, top, use_cache=cache,
                             checkpoints=str(checkpoints_dir) if checkpoints_dir else None)
    typer.echo(f"embedded {result.computed} image(s), {result.cached} from the cache", err=True)
    for path, value in result.ranked:
        typer.echo(f"{value:.4f}  {path}")


@app.command()
@command
def classify(
    image: Annotated[Path, typer.Argument(help="Image file.", show_default=False)],
    labels: Annotated[str, typer.Option(help='Comma-separated labels, e.g. "cat,dog,person".', show_default=False)],
    template: Annotated[Optional[List[str]], typer.Option(
        help='Caption template with {} for the label; repeatable (default: "a photo of a {}." and 4 more).')] = None,
    clip: Clip = None, device: Device = "auto", checkpoints_dir: CheckpointsDir = None, offline: Offline = False,
    debug: Debug = False,
):
    """Zero-shot classification of IMAGE: `probability  label` lines, best first."""
    clip_tools = _tools()
    path = clip_tools.check_images([image])[0]
    names = clip_tools.parse_labels(labels)
    templates = clip_tools.check_templates(template or clip_tools.DEFAULT_TEMPLATES)
    perceptor = _perceptor(clip, device, checkpoints_dir, offline)
    for p in clip_tools.classify(perceptor, path, names, templates):
        typer.echo(f"{p.probability:.4f}  {p.label}")
