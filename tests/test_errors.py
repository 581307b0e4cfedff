"""Unknown names, from every registry, get one short line: the closest valid names and where to see them all."""

from __future__ import annotations

import open_clip
import pytest
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.config import Config, _keys, list_presets
from vqclip.errors import UnknownNameError, did_you_mean
from vqclip.store.registry import VQGAN_MODELS

runner = CliRunner()


def _error(args, tiny_args=()):
    result = runner.invoke(app, [*args, *tiny_args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--clip", "ViT-B/32"], "unknown CLIP model 'ViT-B/32'; did you mean ViT-B-32? See `vqclip models list`"),
        (["--clip", "vit-b-32-quickgelu:openai"], "did you mean ViT-B-32-quickgelu?"),
        (["--clip", "ViT-B-32:opena"], "unknown pretrained tag for ViT-B-32 'opena'; did you mean openai?"),
        (["--vqgan", "vqgan_imagenet_f16_1638"], "did you mean vqgan_imagenet_f16_16384"),
        (["--preset", "toyy"], "unknown preset 'toyy'; did you mean toy? Or choose one of: "),
        (["--set", "lr=0.05"], "unknown config key 'lr' in --set; did you mean optim.lr? See the top-level keys: "),
        (
            ["--set", "optim.lrr=0.05"],
            "did you mean optim.lr, optim.ema or optim.name? See the keys of optim: optim.name,",
        ),
        (["--set", "cutouts.cut_n=8"], "did you mean cutouts.cutn"),
        (["--optimizer", "adamm"], "optimizer 'adamm'; did you mean adam, radam or nadam? Or choose one of: adagrad"),
    ],
    ids=lambda v: v[1] if isinstance(v, list) else None,
)
def test_generate_suggests_the_closest_names(args, expected, tiny_args, no_model_loads):
    line = _error(["generate", "a red circle", *tiny_args, *args])
    assert expected in line
    assert len(line) < 400  # never the ~150 names open_clip knows (the 24 top-level config keys are ~310 characters)


def test_every_entry_point_suggests(tmp_path, tiny_args, no_model_loads):
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert "did you mean ViT-B-32?" in _error(["score", str(image), "--prompt", "x", "--clip", "ViT-B/32"])
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("a red circle   ## stepz=3\n")
    line = _error(["batch", str(jobs), *tiny_args])
    assert "unknown config key 'stepz'" in line and "did you mean steps?" in line


def _registries():
    keys = _keys(__import__("omegaconf").OmegaConf.structured(Config))
    return {
        "CLIP model": open_clip.list_models(),
        "VQGAN model": list(VQGAN_MODELS),
        "preset": list_presets(),
        "config key": [k for k in keys if not any(o.startswith(k + ".") for o in keys)],
    }


@pytest.mark.parametrize("kind", ["CLIP model", "VQGAN model", "preset", "config key"])
def test_a_name_typed_in_another_case_or_separator_is_found_first(kind):
    """The whole class: every valid name, in capitals or with _ and - swapped, is the first suggestion."""
    valid = _registries()[kind]
    for name in valid:
        for typed in (name.upper(), name.replace("-", "_"), name.replace("_", "-")):
            if typed != name:
                assert did_you_mean(typed, valid)[0].lower().replace("_", "-") == name.lower().replace("_", "-")


@pytest.mark.parametrize("kind", ["CLIP model", "VQGAN model", "preset", "config key"])
def test_the_message_is_one_short_line_for_every_registry(kind):
    valid = _registries()[kind]
    for typed in ("zzzz", valid[0] + "x", valid[-1][:-1]):
        message = str(UnknownNameError(kind, typed, valid, see="the list" if kind == "config key" else None))
        assert "\n" not in message and len(message) < 400, message
        assert message.startswith(f"unknown {kind} {typed!r}")
        if len(valid) <= UnknownNameError.LIST_AT_MOST:
            assert all(v in message for v in valid)
