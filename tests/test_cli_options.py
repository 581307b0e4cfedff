"""The shared options of generate, batch and animate: --size in both forms, and help that shows the defaults."""

from __future__ import annotations

import re

import pytest
from PIL import Image
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.cli.options import split_size
from vqclip.config import Config

runner = CliRunner()


def _without(args, option, count):
    i = args.index(option)
    return args[:i] + args[i + 1 + count :]


def _run(command, size_args, tiny_args, tmp_path):
    base = _without(tiny_args, "--size", 2)
    if command == "batch":
        jobs = tmp_path / "jobs.txt"
        jobs.write_text("a red circle\n")
        argv = ["batch", str(jobs), *base, "--steps", "1", *size_args]
    elif command == "animate":
        argv = ["animate", "a red circle", *base, "--frames", "1", "--steps", "1", *size_args]
    else:
        argv = ["generate", "a red circle", *base, "--steps", "1", "--save-every", "0", *size_args]
    return runner.invoke(app, argv)


@pytest.mark.parametrize("command", ["generate", "batch", "animate"])
@pytest.mark.parametrize(
    "form",
    [["--size", "48", "32"], ["--size", "48x32"], ["--size=48x32"], ["--size", "48X32"]],
    ids=["W H", "WxH", "=WxH", "WXH"],
)
def test_size_takes_both_forms(command, form, tiny_args, tmp_path):
    result = _run(command, form, tiny_args, tmp_path)
    assert result.exit_code == 0, result.output
    images = [p for p in (tmp_path / "out").rglob("*.png") if p.name != "contact_sheet.png"]
    assert images
    for p in images:
        with Image.open(p) as im:
            assert im.size == (48, 32)  # width first, as in the job files' 384x256


@pytest.mark.parametrize(
    "bad, shown",
    [
        (["--size", "48"], "'48'"),
        (["--size", "abc"], "'abc'"),
        (["--size", "48", "--steps", "2"], "'48'"),
        (["--size=48"], "'48'"),
        (["--size", "48x"], "'48x'"),
        (["--size"], "'nothing'"),
        (["--size", "4.5", "3"], "'4.5 3'"),
    ],
)
def test_a_bad_size_says_which_forms_it_takes(bad, shown, tiny_args, tmp_path, no_model_loads, monkeypatch, capsys):
    """Through the entry point users run (`vqclip`: click's usage errors as one line)."""
    import sys

    from vqclip.cli import main

    monkeypatch.setattr(sys, "argv", ["vqclip", "generate", "a red circle", *_without(tiny_args, "--size", 2), *bad])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "give WIDTH HEIGHT or WIDTHxHEIGHT, e.g. --size 384 256 or --size 384x256; got " + shown in err
    assert "valid integer" not in err and "generate --help`" in err


def test_split_size_leaves_everything_else_alone():
    assert split_size(["x", "--size", "3x4", "--steps", "5"]) == ["x", "--size", "3", "4", "--steps", "5"]
    assert split_size(["--", "--size", "3x4"]) == ["--", "--size", "3x4"]  # after --, not an option
    assert split_size(["--size", " 3 x 4 "]) == ["--size", "3", "4"]
    assert split_size(["--sizes", "3x4"]) == ["--sizes", "3x4"]


def _help(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", result.stdout))


@pytest.mark.parametrize("command", ["generate", "batch", "animate"])
def test_help_shows_the_config_defaults(command):
    text, c = _help(command), Config()
    expected = [f"(default {c.width} {c.height})", f"(default {c.optim.lr})", f"(default {c.cutouts.cutn})"]
    if command != "animate":  # animate's --steps is the first frame's (the help says so, with the same default)
        expected.append(f"Optimisation steps (default {c.steps})")
    else:
        expected += [f"(default {c.steps})", f"Frames of the animation (default {c.animation.frames})"]
    for fragment in expected:
        assert fragment in text, fragment


def test_help_defaults_follow_the_dataclass(monkeypatch):
    """Not retyped: the help is made from Config(), so a changed default shows up (options.py rebuilt)."""
    import importlib

    import vqclip.cli.options as options
    from vqclip import config

    monkeypatch.setattr(config.Config, "__init__", _with(config.Config.__init__, steps=123))
    try:
        rebuilt = importlib.reload(options)
        assert "(default 123)" in rebuilt.Steps.__metadata__[0].help
    finally:
        monkeypatch.undo()
        importlib.reload(options)


def _with(init, **overrides):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**overrides, **kwargs})

    return patched
