"""What every command shares: the Typer app, error handling, logging and option types."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..errors import UsageError, VQClipError
from ..offline import set_offline  # noqa: F401  (the commands' --offline)

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Text-to-image generation by VQGAN+CLIP optimisation.",
)

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]
Presets = Annotated[
    Optional[List[str]], typer.Option("--preset", help="Preset name from configs/ or a YAML file; repeatable.")
]
Sets = Annotated[
    Optional[List[str]], typer.Option("--set", help="Override any config key: --set optim.lr=0.05; repeatable.")
]
CheckpointsDir = Annotated[
    Optional[Path],
    typer.Option("--checkpoints-dir", help="Model files folder (env VQCLIP_CHECKPOINTS; default: checkpoints/)."),
]
Offline = Annotated[bool, typer.Option("--offline", help="Never use the network (env VQCLIP_OFFLINE=1).")]
Mirror = Annotated[
    Optional[str],
    typer.Option(
        "--mirror", help="Base URL tried first for model downloads, as <base>/<file name> (env VQCLIP_MIRROR)."
    ),
]


def _version(value: bool) -> None:
    if value:
        from ..version import __version__

        typer.echo(f"vqclip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print vqclip's version and exit."),
    ] = None,
) -> None:
    """Text-to-image generation by VQGAN+CLIP optimisation."""


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each message (CliRunner swaps it for every invocation)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def printable(text: str) -> str:
    """Control and format characters (an ESC or a bidi override from a file name, say) escaped as \\x1b or
    \\u202e: a message never sends them raw to the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


class _PrintableFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(" ".join(super().format(record).split("\n")))


def setup_logging() -> None:
    log = logging.getLogger("vqclip")
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(_PrintableFormatter("warning: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(logging.INFO)
    # third-party chatter (open_clip logs through the root logger, even for errors vqclip reports itself)
    logging.basicConfig(level=logging.CRITICAL)


def fail(message: str, code: int) -> typer.Exit:
    # one line, always: some library messages (yaml, OmegaConf) carry their own line breaks
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(code)


def command(fn):
    """Turn library errors into one line on stderr and an exit code (2 usage, 1 runtime, 130 interrupt)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug") or os.environ.get("VQCLIP_DEBUG", "") not in ("", "0")
        setup_logging()
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except VQClipError as e:
            if debug:
                raise
            raise fail(str(e), e.exit_code) from None
        except BrokenPipeError:  # `vqclip models list | head`: the reader left, nothing to report
            sys.stderr = open(os.devnull, "w")
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            if debug:
                raise
            raise fail("interrupted", 130) from None
        except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
            if debug:
                raise
            raise fail(_explain(e), 1) from None

    return wrapper


def _explain(e: Exception) -> str:
    import torch

    if isinstance(e, torch.OutOfMemoryError):
        return "out of GPU memory; try a smaller --size, fewer cutouts (--set cutouts.cutn=16) or --device cpu"
    return (
        f"unexpected {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} "
        f"(run again with --debug for the traceback)"
    )


class sigterm_as_interrupt:
    """SIGTERM during a run behaves like Ctrl-C: the run saves what it made and exits 130."""

    def __enter__(self):
        def handler(signum, frame):
            raise KeyboardInterrupt

        try:
            self._old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            self._old = None
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def need(condition: bool, message: str) -> None:
    if not condition:
        raise UsageError(message)
