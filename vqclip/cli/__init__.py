"""The command-line interface: a thin Typer layer over the library. Each command lives in its own module."""

from .common import app
from . import generate  # noqa: F401  (registers the command)


def main() -> None:
    app()
