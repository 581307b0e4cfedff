"""The Python API through `import vqclip`: an optional progress bar, PIL images, models kept between calls."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import vqclip
from vqclip import loading, runner


def _cfg(tiny_models, prompt="a red circle", seed=3, **extra):
    options = {
        "prompt": prompt,
        "seed": seed,
        "steps": 3,
        "width": 32,
        "height": 32,
        "device": "cpu",
        "model.vqgan": tiny_models["vqgan"],
        "model.clip": [tiny_models["clip"]],
        "cutouts.cutn": 2,
        **extra,
    }
    return vqclip.resolve(options=options)


@pytest.fixture
def loads(monkeypatch):
    """Counts model loads (the real loader still runs)."""
    calls = []
    real = runner.load_models

    def counting(*args, **kwargs):
        calls.append(args[0].clip_specs)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "load_models", counting)  # a run's own load
    monkeypatch.setattr(loading, "load_models", counting)  # a ModelCache's
    return calls


def test_image_is_a_pil_image_of_the_final_step(tiny_models):
    picture = vqclip.image(_cfg(tiny_models))
    assert isinstance(picture, Image.Image) and picture.size == (32, 32) and picture.mode == "RGB"
    *_, last = vqclip.generate(_cfg(tiny_models))
    assert np.array_equal(np.asarray(picture), np.asarray(vqclip.to_pil(last.image[0])))


def test_progress_is_off_by_default_and_counts_the_steps_when_asked(tiny_models, capsys):
    list(vqclip.generate(_cfg(tiny_models)))
    assert capsys.readouterr().err == ""
    steps = list(vqclip.generate(_cfg(tiny_models), progress=True))
    err = capsys.readouterr().err
    assert len(steps) == 4 and "generate: 100%" in err and "3/3" in err and "loss=" in err
    vqclip.image(_cfg(tiny_models), progress=True)
    assert "3/3" in capsys.readouterr().err


def test_run_with_progress_writes_the_files_and_shows_the_bar(tiny_models, tmp_path, capsys):
    seen = []
    result = vqclip.run(_cfg(tiny_models, **{"output.dir": str(tmp_path / "out")}), on_step=seen.append, progress=True)
    assert result.image.is_file() and len(seen) == 4 and "3/3" in capsys.readouterr().err


def test_a_generator_loads_the_models_once_for_calls_that_share_them(tiny_models, tmp_path, loads):
    gen = vqclip.Generator(device="cpu")
    first = gen.image(_cfg(tiny_models, "a red circle"))
    second = gen.image(_cfg(tiny_models, "a blue square", seed=4))
    list(gen.generate(_cfg(tiny_models, "a green tree")))
    gen.run(_cfg(tiny_models, **{"output.dir": str(tmp_path / "out")}))
    assert len(loads) == 1
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    # the same pixels as a call that loads its own models: reuse changes nothing but the time
    assert np.array_equal(np.asarray(first), np.asarray(vqclip.image(_cfg(tiny_models, "a red circle"))))
    assert len(loads) == 2  # the plain function loads every time


def test_a_generator_reloads_for_other_model_files(tiny_models, tmp_path, loads):
    from tiny import write_clip

    other = f"local-dir:{write_clip(tmp_path / 'other_clip', seed=9)}"
    gen = vqclip.Generator()
    gen.image(_cfg(tiny_models))
    gen.image(_cfg(tiny_models, **{"model.clip": [other]}))
    gen.image(_cfg(tiny_models, **{"model.clip": [other]}))
    assert loads == [[tiny_models["clip"]], [other]]


def test_the_api_names_are_public():
    for name in ("generate", "run", "image", "Generator", "ModelCache", "to_pil", "resolve"):
        assert name in vqclip.__all__ and getattr(vqclip, name) is not None
