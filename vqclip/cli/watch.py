"""`--preview` for generate, batch and animate: the page's server starts before the run and ends with it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import typer

from ..observe import Observer


@contextlib.contextmanager
def watching(
    preview: bool, host: str, port: int, kind: str, title: str, root: Optional[Path] = None
) -> Iterator[list[Observer]]:
    """The run's observers: none, or with --preview the page's (its URL printed on stderr)."""
    if not preview:
        yield []
        return
    from ..preview import open_preview  # http.server and the page only when asked

    with open_preview(kind, title, host, port, root) as live:
        typer.echo(f"preview: {live.url} (it ends with the run)", err=True)
        yield [live.observer]
