"""Semantic acceptance: text steers the image. Generated through the real CLI with the bundled toy models and
judged by pixel statistics (vqclip.toy's colour judge), never by the CLIP that guided the run."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vqclip import judge
from vqclip.cli import app
from vqclip.store import bundled_dir

TOY = bundled_dir()
pytestmark = pytest.mark.skipif(not (TOY / "vqgan_toy.ckpt").is_file(), reason="toy checkpoints not present")

PROMPTS = [
    "a red circle",
    "a green square",
    "a blue triangle",
    "a yellow circle",
    "a red triangle",
    "a green circle",
    "a blue square",
    "a yellow square",
]
SEEDS = [0]
runner = CliRunner()


def _generate(prompt, seed, out, *model_args):
    result = runner.invoke(
        app,
        [
            "generate",
            prompt,
            "--preset",
            "toy",
            "--seed",
            str(seed),
            "--out",
            str(out),
            "--save-every",
            "0",
            "--device",
            "cpu",
            *model_args,
        ],
    )
    assert result.exit_code == 0, result.output
    return np.asarray(Image.open(result.stdout.strip().splitlines()[-1]).convert("RGB"))


def _colour_hits(out, *model_args):
    hits = [judge.colour_of(_generate(p, s, out, *model_args)) == p.split()[1] for p in PROMPTS for s in SEEDS]
    return sum(hits), len(hits)


def _red_fraction(img):
    rgb = img.astype(float)
    return float(np.mean((rgb[..., 0] > 150) & (rgb[..., 1] < 110) & (rgb[..., 2] < 110)))


@pytest.mark.slow  # ~70 s; tests/test_eval.py checks the bundled toy models' colour by default (vqclip eval)
def test_prompted_colour_wins_with_the_trained_toy_models(tmp_path):
    hits, n = _colour_hits(tmp_path)
    assert hits / n >= 0.8, f"colour right in {hits}/{n}"


@pytest.mark.slow  # ~56 s; a negative weight's sign is tested fast in test_prompts.py (PromptLoss)
def test_negative_prompt_removes_red(tmp_path):
    plain = np.mean([_red_fraction(_generate("a circle", s, tmp_path / "plain")) for s in (0, 1)])
    negative = np.mean([_red_fraction(_generate("a circle:1|red:-1", s, tmp_path / "neg")) for s in (0, 1)])
    positive = np.mean([_red_fraction(_generate("a circle:1|red:1", s, tmp_path / "pos")) for s in (0, 1)])
    assert negative < plain < positive
    assert positive - negative > 0.05


@pytest.mark.slow  # ~70 s; tests/test_eval.py runs eval's untrained control (tiny models) by default
def test_judge_fails_with_untrained_models(tmp_path):
    """The same loop and judge with random weights of the same architectures: colour is right only by chance."""
    import open_clip
    from safetensors.torch import save_file

    from vqclip.vqgan import build_vqgan, read_vqgan_yaml

    shutil.copy(TOY / "vqgan_toy.yaml", tmp_path / "random.yaml")
    torch.manual_seed(0)
    vqgan = build_vqgan(read_vqgan_yaml(tmp_path / "random.yaml"))
    torch.save({"state_dict": vqgan.state_dict()}, tmp_path / "random.ckpt")
    clip_dir = tmp_path / "clip"
    clip_dir.mkdir()
    shutil.copy(TOY / "clip" / "open_clip_config.json", clip_dir)
    cfg = json.loads((clip_dir / "open_clip_config.json").read_text())
    model = open_clip.model.CLIP(**cfg["model_cfg"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(clip_dir / "open_clip_model.safetensors"))
    hits, n = _colour_hits(
        tmp_path / "out", "--vqgan", str(tmp_path / "random.yaml"), "--clip", f"local-dir:{clip_dir}"
    )
    assert hits / n <= 0.5, f"untrained models got the colour in {hits}/{n}: the judge cannot tell"
