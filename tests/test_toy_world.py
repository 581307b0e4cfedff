"""The toy world generator, its pixel judge, and the committed toy models (checkpoints/toy).

The thresholds come from scripts/train_toy.py's measurements (checkpoints/toy/TRAINING.md) less a margin;
untrained models score at chance on every one of them.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqclip import judge, toy
from vqclip.clip import Perceptor, load_clip
from vqclip.vqgan import load_vqgan

TOY = Path(__file__).resolve().parent.parent / "checkpoints" / "toy"
EVAL_SEED = 424242  # differs from every training batch seed and from the seed TRAINING.md measured with

# measured on the committed files (see TRAINING.md), less a margin for other seeds and platforms
MIN_PSNR = 26.0
MIN_CLIP_ACCURACY = 0.95
MIN_CLIP_ATTRIBUTE_ACCURACY = 0.95


def test_captions_are_the_colour_shape_product():
    assert len(set(toy.CAPTIONS)) == len(toy.COLOURS) * len(toy.SHAPES) == 12
    assert "a red circle" in toy.CAPTIONS


def test_sample_is_deterministic_per_seed():
    a, caps_a = toy.sample(16, seed=7)
    b, caps_b = toy.sample(16, seed=7)
    c, caps_c = toy.sample(16, seed=8)
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and caps_a == caps_b
    assert not torch.equal(a, c)
    assert set(caps_a) <= set(toy.CAPTIONS)


def test_render_size_and_type():
    img = toy.render("blue", "square", np.random.default_rng(0), size=64)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8


TOY_FILES = [
    "vqgan_toy.yaml",
    "vqgan_toy.ckpt",
    "clip/open_clip_config.json",
    "clip/open_clip_model.safetensors",
    "TRAINING.md",
]


def test_toy_files_are_present_and_small():
    for name in TOY_FILES:
        assert (TOY / name).is_file(), f"{TOY / name} is missing"
    for f in TOY.rglob("*"):
        assert not f.is_file() or f.stat().st_size < 5 * 2**20, f"{f} is over 5 MiB"


@pytest.fixture(scope="module")
def toy_vqgan():
    return load_vqgan(TOY / "vqgan_toy.yaml", TOY / "vqgan_toy.ckpt")


@pytest.fixture(scope="module")
def toy_clip():
    return load_clip(f"local-dir:{TOY / 'clip'}")


@torch.no_grad()
def _reconstruct(vqgan, images):
    latent = vqgan.encode(images * 2 - 1)
    assert latent.shape[-2:] == (images.shape[-2] // 4, images.shape[-1] // 4)  # f=4
    return ((vqgan.decode(latent) + 1) / 2).clamp(0, 1)


def _psnr(recon, images) -> float:
    mse = (recon - images).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(1 / mse)).mean().item()


def test_toy_vqgan_reconstructs_toy_images(toy_vqgan):
    images, _ = toy.sample(64, EVAL_SEED)
    recon = _reconstruct(toy_vqgan, images)
    assert _psnr(recon, images) >= MIN_PSNR
    # the reconstruction keeps what the captions say
    assert all(judge.colour_of(r) == judge.colour_of(i) for r, i in zip(recon, images))


def test_toy_clip_loads_as_fp32(toy_clip):
    assert toy_clip.input_size == 32
    assert all(p.dtype == torch.float32 for p in toy_clip.model.parameters())


@torch.no_grad()
def _classify(perceptor, images, texts):
    image_emb = F.normalize(perceptor.encode_image(images), dim=-1)
    text_emb = F.normalize(perceptor.encode_text(texts), dim=-1)
    return [texts[i] for i in (image_emb @ text_emb.T).argmax(1)]


def _zero_shot_accuracy(perceptor) -> float:
    images, captions = toy.sample(240, EVAL_SEED)
    predicted = _classify(perceptor, images, list(toy.CAPTIONS))
    return float(np.mean([p == c for p, c in zip(predicted, captions)]))


def test_toy_clip_classifies_fresh_images(toy_clip):
    assert _zero_shot_accuracy(toy_clip) >= MIN_CLIP_ACCURACY


@torch.no_grad()
def test_toy_clip_knows_single_attributes(toy_clip):
    """Colour words and "a {shape}" alone, as negative and partial prompts ("a circle:1|red:-1") use them."""
    images, captions = toy.sample(240, EVAL_SEED + 1)
    colours = _classify(toy_clip, images, list(toy.COLOURS))
    shapes = _classify(toy_clip, images, [f"a {s}" for s in toy.SHAPES])
    colour_accuracy = np.mean([p == c.split()[1] for p, c in zip(colours, captions)])
    shape_accuracy = np.mean([p == f"a {c.split()[2]}" for p, c in zip(shapes, captions)])
    assert colour_accuracy >= MIN_CLIP_ATTRIBUTE_ACCURACY, colour_accuracy
    assert shape_accuracy >= MIN_CLIP_ATTRIBUTE_ACCURACY, shape_accuracy


def test_untrained_toy_models_fail_the_same_checks(toy_clip):
    """The same architectures with random weights: the thresholds above are not met by chance."""
    import open_clip

    random_vqgan = load_vqgan(TOY / "vqgan_toy.yaml", None)
    images, _ = toy.sample(64, EVAL_SEED)
    assert _psnr(_reconstruct(random_vqgan, images), images) < MIN_PSNR - 10
    torch.manual_seed(0)
    model_cfg = json.loads((TOY / "clip" / "open_clip_config.json").read_text())["model_cfg"]
    untrained = open_clip.model.CLIP(**model_cfg).eval()
    random_clip = Perceptor(
        untrained, toy_clip.tokenizer, toy_clip.mean.flatten().tolist(), toy_clip.std.flatten().tolist(), "untrained"
    )
    assert _zero_shot_accuracy(random_clip) < 0.5
