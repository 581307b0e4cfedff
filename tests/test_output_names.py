"""Output names derived from prompts or --name stay inside the output folder and never clobber another run."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.outputs import _RESERVED, safe_name

runner = CliRunner()

HOSTILE = [
    "../../etc/x",
    "/abs/path/x",
    "a\x00b",
    "x" * 5000,
    "con",
    "nul",
    "NUL",
    "COM1",
    "..",
    ".",
    "~/x",
    "a\\..\\..\\b",
    "-rf",
    "日本語",
    "x/" * 300,
    " ",
    "\n",
]


def _generate(args, tiny_args):
    result = runner.invoke(
        app, ["generate", *args, *tiny_args, "--steps", "1", "--cutn", "1", "--seed", "5", "--save-every", "0"]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip().splitlines()[-1]


def _assert_inside(final: str, out, before: set, tmp_path):
    from pathlib import Path

    path = Path(final)
    assert path.name == "final.png" and path.parent.parent == out  # out/<one folder>/final.png
    assert path.resolve().is_relative_to(out.resolve())
    name = path.parent.name
    assert name and len(name) <= 100 and name.split("-s")[0].lower() not in _RESERVED
    assert name not in (".", "..") and "/" not in name and "\\" not in name and "\x00" not in name
    assert set(tmp_path.iterdir()) - before <= {out}  # nothing written beside the output folder


# a blank prompt is refused, and "-rf" would be read as an option (the bad-input catalogue covers both)
@pytest.mark.parametrize(
    "prompt", [p for p in HOSTILE if p.strip() and not p.startswith("-")], ids=lambda p: repr(p[:20])
)
def test_prompt_derived_names_stay_inside_the_output_folder(prompt, tiny_args, tmp_path):
    before = set(tmp_path.iterdir())
    final = _generate([prompt], tiny_args)
    _assert_inside(final, tmp_path / "out", before, tmp_path)


@pytest.mark.parametrize("name", HOSTILE, ids=lambda p: repr(p[:20]))
def test_name_option_stays_inside_the_output_folder(name, tiny_args, tmp_path):
    before = set(tmp_path.iterdir())
    final = _generate(["a red circle", "--name", name], tiny_args)
    _assert_inside(final, tmp_path / "out", before, tmp_path)


@pytest.mark.parametrize(
    "first, second",
    [
        (["a/b"], ["a b"]),  # two prompts with one slug
        (["x", "--name", "run"], ["y", "--name", "run"]),  # one --name twice
        (["x", "--name", "../run"], ["y", "--name", "run"]),
        (["con"], ["con"]),
    ],
)
def test_a_second_run_never_clobbers_the_first(first, second, tiny_args, tmp_path):
    from pathlib import Path

    a = Path(_generate(first, tiny_args))
    data = a.read_bytes()
    b = Path(_generate(second, tiny_args))
    assert a != b and a.parent != b.parent
    assert a.read_bytes() == data


@pytest.mark.parametrize("name", ["animA", "Run_2024.v2", "My-Oak", "日本語", "a--b"])
def test_a_safe_name_is_kept_as_typed(name, tiny_args, tmp_path):
    final = _generate(["a red circle", "--name", name], tiny_args)
    assert final == str(tmp_path / "out" / name / "final.png")


@pytest.mark.parametrize(
    "name, folder",
    [
        ("My Run", "My-Run"),
        ("../Runs/A", "Runs-A"),
        ("con", "run-con"),
        (".hidden", "hidden"),
        ("CamelCase/x", "CamelCase-x"),
    ],
)
def test_an_unsafe_name_keeps_its_case_and_loses_only_what_is_unsafe(name, folder, tiny_args, tmp_path):
    assert _generate(["a red circle", "--name", name], tiny_args) == str(tmp_path / "out" / folder / "final.png")


SAFE = st.text(st.sampled_from("abcXYZ019_.-é日"), min_size=1, max_size=80).filter(
    lambda s: s[0] not in ".-" and not s.endswith(".") and s.split(".")[0].lower() not in _RESERVED
)


@given(name=SAFE)
def test_every_safe_name_is_kept(name):
    assert safe_name(name) == name


@given(text=st.text(max_size=300))
def test_every_name_becomes_one_plain_path_component(text):
    name = safe_name(text)
    assert name and name not in (".", "..") and not name.startswith((".", "-")) and not name.endswith(".")
    assert not set(name) & set('/\\\x00:*?"<>| \n\t') and len(name.encode()) <= 200
    assert name.split(".")[0].lower() not in _RESERVED
