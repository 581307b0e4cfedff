"""`--preview`: a small local web page that shows a run as it forms.

The page (page.html) shows each image in flight, updated at the run's frame cadence, its prompt, step and loss
curve, the time left and, for a batch, the finished images. It is pushed server-sent events; nothing polls the
disk. The run's observer (live.py) does its work off the loop's thread; the server (server.py) reads files from the
run's own folder only; both end with the run.

    with open_preview("generate", "a red circle") as preview:
        print(preview.url)
        run_image(run, observers=[preview.observer])
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .live import LivePreview
from .server import PreviewServer
from .state import LiveState

__all__ = ["Preview", "open_preview"]


class Preview:
    """A LiveState, the observer that feeds it and the server that shows it; a context manager that ends all three
    with the run (its status: how the loop ended, else interrupted on Ctrl-C, error on any other exception)."""

    def __init__(self, state: LiveState, host: str, port: int):
        self.state = state
        self.server = PreviewServer(state, host, port)  # bind first: a taken port fails before anything starts
        self.observer = LivePreview(state)
        self.server.start()

    @property
    def url(self) -> str:
        return self.server.url

    def close(self, status: Optional[str] = None) -> None:
        try:
            self.observer.close(status)
        finally:
            self.server.close()

    def __enter__(self) -> "Preview":
        return self

    def __exit__(self, kind, value, tb) -> bool:
        from ..writer import Interrupted

        if kind is None or self.observer.status != "complete":  # the loop's own word on how it ended
            status = None
        else:
            status = "interrupted" if issubclass(kind, (KeyboardInterrupt, Interrupted)) else "error"
        self.close(status)
        return False


def open_preview(kind: str, title: str, host: str = "127.0.0.1", port: int = 0, root: Optional[Path] = None) -> Preview:
    """Serve a preview of a run on host:port (0: a free port); `root` is the folder its files may come from (by
    default the first image's folder, once it exists)."""
    return Preview(LiveState(kind, title, root), host, port)
