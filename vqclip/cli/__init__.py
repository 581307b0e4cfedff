"""The command-line interface: a thin Typer layer over the library. Each command lives in its own module."""

from .common import app
from . import generate  # noqa: F401  (registers the command)
from . import models  # noqa: F401
from . import batch  # noqa: F401
from . import video  # noqa: F401
from . import animate  # noqa: F401
from . import clip_tools  # noqa: F401
from . import bench  # noqa: F401


def main() -> None:
    app()
