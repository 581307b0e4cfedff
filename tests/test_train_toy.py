"""scripts/train_toy.py's adversarial views and scripts/clip_probe.py, on the bundled toy CLIP."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vqclip import toy
from vqclip.clip import load_clip

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_toy():
    return _script("train_toy")


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_adversarial_views_stay_images_within_the_ball_and_raise_the_loss(train_toy, steps, eps):
    perceptor = load_clip(f"local-dir:{ROOT / 'checkpoints' / 'toy' / 'clip'}")
    model = perceptor.model
    x, captions = toy.sample(12, 5, 32)
    tokens = perceptor.tokenizer(list(train_toy.CAPTION_TEXTS + train_toy.COLOUR_TEXTS + train_toy.SHAPE_TEXTS))
    with torch.no_grad():
        text_emb = F.normalize(model.encode_text(tokens), dim=-1)
    groups = train_toy.text_groups(captions)
    scale = model.logit_scale.exp()
    normalise = lambda t: (t - perceptor.mean) / perceptor.std  # noqa: E731

    def loss(images):
        with torch.no_grad():
            return float(
                train_toy.grouped_loss(
                    F.normalize(model.encode_image(normalise(images)), dim=-1), text_emb, groups, scale
                )
            )

    adv = train_toy.adversarial(model, x, text_emb, groups, scale, eps, normalise, steps)
    assert adv.shape == x.shape and not adv.requires_grad
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).flatten(1).norm(dim=1).max() <= eps * (1 + 1e-4)
    assert loss(adv) > loss(x)


def test_clip_probe_judges_every_caption(tmp_path):
    sheet = tmp_path / "probe.png"
    done = subprocess.run(
        [
            sys.executable,
            "scripts/clip_probe.py",
            "checkpoints/toy/clip",
            "--steps",
            "2",
            "--cutn",
            "2",
            "--sheet",
            str(sheet),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split()[:3] for line in lines[:-1]] == [c.split() for c in toy.CAPTIONS]
    assert lines[-1].startswith("checkpoints/toy/clip: colour ") and "shape " in lines[-1]
    from PIL import Image

    assert Image.open(sheet).size == (32 * len(toy.CAPTIONS), 32)
