"""`vqclip eval`: the real generate loop over captions x seeds, judged by pixels, with untrained models beside."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vqclip import judge
from vqclip.cli import app
from vqclip.evaluate import EvalOptions, run_eval
from vqclip.store import bundled_dir

runner = CliRunner()
TOY = bundled_dir()


def test_eval_cli_writes_figures_that_add_up(tiny_models, tmp_path):
    """Tiny random models: the figures must be the per-image verdicts summed, for both runs, in the JSON."""
    out = tmp_path / "figures.json"
    sheet = tmp_path / "sheet.png"
    result = runner.invoke(
        app,
        [
            "eval",
            "--captions",
            "a red circle,a blue square",
            "--seeds",
            "2",
            "--vqgan",
            tiny_models["vqgan"],
            "--clip",
            tiny_models["clip"],
            "--size",
            "32",
            "32",
            "--steps",
            "2",
            "--set",
            "cutouts.cutn=2",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--json",
            str(out),
            "--sheet",
            str(sheet),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "trained" in result.stdout and "untrained" in result.stdout and "chance" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["captions"] == ["a red circle", "a blue square"] and figures["seeds"] == [0, 1]
    for run in ("trained", "untrained"):
        per_image = figures[run]["per_image"]
        assert [(i["caption"], i["seed"]) for i in per_image] == [
            ("a red circle", 0),
            ("a red circle", 1),
            ("a blue square", 0),
            ("a blue square", 1),
        ]
        right = np.mean([i["colour"] == i["caption"].split()[1] for i in per_image])
        assert figures[run]["colour_accuracy"] == right
        fits = np.mean([i["fit"] == i["caption"].split()[2] for i in per_image])
        assert figures[run]["shape_fit"] == fits >= figures[run]["shape_accuracy"]  # a named shape fits itself
        assert figures[run]["seconds_per_image"] > 0 and figures[run]["cpu_seconds_per_image"] > 0
    assert Image.open(sheet).size == (2 * 34, 2 * 34)  # two seeds across, two captions down, 2 px gaps


def test_eval_judges_the_image_generate_makes(tiny_models):
    """The verdict is the judge's on the loop's own final image: re-judging the kept image gives the same."""
    options = EvalOptions(
        presets=(),
        options={
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "width": 32,
            "height": 32,
            "steps": 2,
            "cutouts.cutn": 2,
        },
        captions=("a green triangle",),
        seeds=(5,),
        control=False,
    )
    figures, runs = run_eval(options, device=torch.device("cpu"))
    (item,) = runs["trained"]
    verdict = judge.judge(item.image)
    assert (item.colour, item.shape, item.fit) == (verdict.colour, verdict.shape, verdict.fit)
    assert "untrained" not in figures


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--captions", " , "], "at least one caption"),
        (["--seeds", "0"], "--seeds"),
        (["--set", "optim.name=lbfgs"], "unknown optimizer"),
    ],
)
def test_bad_eval_input_is_one_line(args, fragment):
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 2 and fragment in result.output, result.output


@pytest.mark.skipif(not (TOY / "vqgan_toy.ckpt").is_file(), reason="toy checkpoints not present")
def test_eval_on_the_bundled_toy_models_reads_the_prompted_colour():
    """The CI subset of TRAINING.md's evaluation: three captions, one seed, the toy preset as users run it."""
    captions = ("a red circle", "a green square", "a blue triangle")
    figures, _ = run_eval(EvalOptions(captions=captions, seeds=(0,), control=False), device=torch.device("cpu"))
    assert figures["trained"]["colour_accuracy"] == 1.0, figures["trained"]["per_image"]


@pytest.mark.slow
@pytest.mark.skipif(not (TOY / "vqgan_toy.ckpt").is_file(), reason="toy checkpoints not present")
def test_full_toy_eval_reads_the_colour_and_untrained_models_do_not():
    """BENCHMARKS.md's toy evaluation, 12 captions x 5 seeds, trained and untrained (~20 CPU minutes)."""
    figures, _ = run_eval(EvalOptions(seeds=range(5)), device=torch.device("cpu"))
    assert figures["trained"]["colour_accuracy"] >= 0.95, figures["trained"]["colour_accuracy"]
    assert figures["untrained"]["colour_accuracy"] <= 0.5, figures["untrained"]["colour_accuracy"]
