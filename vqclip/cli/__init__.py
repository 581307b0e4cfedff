"""The command-line interface: a thin Typer layer over the library. Each command lives in its own module."""

from . import (
    animate,  # noqa: F401
    batch,  # noqa: F401
    bench,  # noqa: F401
    clip_tools,  # noqa: F401
    eval,  # noqa: F401
    generate,  # noqa: F401  (registers the command)
    models,  # noqa: F401
    video,  # noqa: F401
)
from .common import app, printable


def main() -> None:
    """Entry point: click's usage errors become one line too (Typer would draw a box around them)."""
    import sys

    import typer

    # Typer may vendor click; find its exception base through a public subclass
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        code = app(standalone_mode=False)
    except click_exception as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `vqclip`: show the help
            e.show()
        else:
            ctx = getattr(e, "ctx", None)
            hint = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
            typer.echo(f"error: {printable(e.format_message().rstrip('.'))}{hint}", err=True)
        code = e.exit_code
    except typer.Abort:
        code = 130
    sys.exit(code or 0)
