"""`vqclip models list|download|add|import`: see, fetch and register model files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import store
from ..errors import UsageError
from .common import CheckpointsDir, Debug, Mirror, Offline, app, command, set_offline
from .progress import DownloadBar

models_app = typer.Typer(no_args_is_help=True, help="List, download and add VQGAN and CLIP models.")
app.add_typer(models_app, name="models")


def _size(n: Optional[int], approx: bool) -> str:
    if n is None:
        return "?"
    text = f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"
    return ("~" if approx else "") + text


@models_app.command("list")
@command
def list_(checkpoints_dir: CheckpointsDir = None, debug: Debug = False):
    """Every known VQGAN, your added ones and the usual CLIP choices: size, whether present, where."""
    rows = store.list_models(str(checkpoints_dir) if checkpoints_dir else None)
    width = max(len(r.name) for r in rows)
    for kind in ("vqgan", "user", "clip"):
        group = [r for r in rows if r.kind == kind]
        if not group:
            continue
        typer.echo({"vqgan": "VQGAN", "user": "VQGAN (added)", "clip": "CLIP"}[kind])
        for r in group:
            state = "present" if r.present else f"partial {_size(r.partial, False)}" if r.partial else "missing"
            typer.echo(f"  {r.name:<{width}}  {_size(r.size, not r.present):>9}  {state:<15} {r.path}")


@models_app.command()
@command
def download(
    name: Annotated[str, typer.Argument(help="VQGAN name from `models list`, or clip:NAME:TAG for open_clip weights.")],
    mirror: Mirror = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Fetch the files again even if present, and lock the new "
            "ones once they load (after a bad first download).",
        ),
    ] = False,
    checkpoints_dir: CheckpointsDir = None,
    offline: Offline = False,
    debug: Debug = False,
):
    """Download a model's files (resuming a partial download); prints the paths."""
    set_offline(offline)
    folder = str(checkpoints_dir) if checkpoints_dir else None
    if name.startswith("clip:"):
        typer.echo(str(store.download_clip(name[len("clip:") :], folder)))
        return
    with DownloadBar() as bar:
        paths = store.download_vqgan(name, folder, mirror, on_progress=bar, force=force)
    for p in paths:
        typer.echo(str(p))


@models_app.command()
@command
def verify(checkpoints_dir: CheckpointsDir = None, debug: Debug = False):
    """Re-hash every model file the lock records (runs skip files whose size and mtime are unchanged)."""
    base = store.checkpoints_dir(str(checkpoints_dir) if checkpoints_dir else None)
    problems = store.verify_all(base)
    for name, problem in problems:
        typer.echo(f"{name}: {problem}")
    if problems:
        raise UsageError(
            f"{len(problems)} recorded model file(s) in {base} do not match the lock; fetch them again "
            f"with `vqclip models download NAME --force`, or delete them"
        )
    typer.echo(f"every file recorded in {base / 'vqclip.lock.json'} matches its SHA-256", err=True)


@models_app.command()
@command
def add(
    name: Annotated[str, typer.Argument(help="The name to use with --vqgan.")],
    config: Annotated[Path, typer.Option("--config", help="The model's taming yaml.")],
    ckpt: Annotated[Path, typer.Option("--ckpt", help="The model's checkpoint (.ckpt or .safetensors).")],
    description: Annotated[str, typer.Option(help="A line for `models list`.")] = "",
    checkpoints_dir: CheckpointsDir = None,
    debug: Debug = False,
):
    """Register your own VQGAN under NAME (it is loaded once to check it, and its hashes are locked)."""
    model = store.add_vqgan(name, config, ckpt, str(checkpoints_dir) if checkpoints_dir else None, description)
    typer.echo(f"added {model.name}: {model.config} + {model.ckpt}; use --vqgan {model.name}")


@models_app.command("import")
@command
def import_(
    folder: Annotated[Path, typer.Argument(help="A folder of model files: VQGAN-CLIP/checkpoints, ~/.cache/clip ...")],
    checkpoints_dir: CheckpointsDir = None,
    debug: Debug = False,
):
    """Use another tool's model files where they are: VQGAN yaml+ckpt pairs and OpenAI CLIP archives (.pt)."""
    from ..store.importer import import_models

    found = import_models(folder, str(checkpoints_dir) if checkpoints_dir else None)
    for item in found:
        files = " + ".join(map(str, item.files))
        if item.ok:
            typer.echo(f"imported {files}{f' ({item.why})' if item.why else ''}; use {item.use}")
        else:
            typer.echo(f"skipped {files}: {item.why}", err=True)
    if not all(item.ok for item in found):
        raise typer.Exit(1)
