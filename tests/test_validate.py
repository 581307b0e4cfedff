"""Every number is finite and in range before anything loads: one line, exit 2, no model read, nothing written."""

import math

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.config import Config
from vqclip.errors import ConfigError
from vqclip.validate import MAX_SEED, check_seed, validate

runner = CliRunner()

# (id, argv after `vqclip`, fragment); {T} stands for the tiny model options, {img} for a good image
NUMBERS = [
    ("prompt-weight-1e308", ["generate", "a:1e308", "{T}"], "has weight 1e+308; use a weight between -10000 and"),
    ("prompt-weight-minus-1e308", ["generate", "a:-1e308", "{T}"], "has weight -1e+308"),
    ("prompt-weight-overflow", ["generate", "a:1e400", "{T}"], "too large to be a number"),
    (
        "image-prompt-weight-1e308",
        ["generate", "x", "{T}", "--image-prompt", "{img}:1e308"],
        "image prompt '{img}:1e308' has weight 1e+308",
    ),
    ("image-prompt-weight-inf", ["generate", "x", "{T}", "--image-prompt", "{img}:1e999"], "has weight inf"),
    (
        "weight-decay-negative",
        ["generate", "x", "{T}", "--set", "optim.weight_decay=-1"],
        "optim.weight_decay must be 0 (off) or positive, got -1.0",
    ),
    (
        "weight-decay-huge",
        ["generate", "x", "{T}", "--set", "optim.weight_decay=1e300"],
        "optim.weight_decay must be at",
    ),
    ("lr-1e308", ["generate", "x", "{T}", "--lr", "1e308"], "optim.lr must be at most 10000"),
    ("init-weight-negative", ["generate", "x", "{T}", "--set", "init_weight=-0.5"], "init_weight must be 0 (off)"),
    ("init-weight-huge", ["generate", "x", "{T}", "--init-weight", "1e300"], "init_weight must be at most"),
    ("cut-pow-huge", ["generate", "x", "{T}", "--cut-pow", "1e300"], "cutouts.cut_pow must be at most 100"),
    ("fps-huge", ["generate", "x", "{T}", "--fps", "100000"], "output.fps must be at most 1000"),
    ("seed-huge", ["generate", "x", "{T}", "--set", "seed=99999999999999999999"], "seed must be between 0 and"),
    ("steps-inf", ["generate", "x", "{T}", "--set", "steps=1e400"], "bad value for steps"),
    (
        "group-given-a-number",
        ["generate", "x", "{T}", "--set", "optim=3"],
        "optim is a group of keys (optim.name, optim.lr, optim.weight_decay, optim.schedule, optim.ema); "
        "set one of them",
    ),
    ("group-given-text", ["generate", "x", "{T}", "--set", "model=x"], "model is a group of keys"),
    ("zoom-huge", ["animate", "x", "{T}", "--zoom", "1e308"], "zoom must be between 0.01 and 100"),
    ("rotate-huge", ["animate", "x", "{T}", "--rotate", "1e300"], "rotate must be within +-360 degrees"),
    ("pan-huge", ["animate", "x", "{T}", "--pan", "1e300", "0"], "pan within +-10000 pixels"),
    ("video-fps-zero", ["video", "{frames}", "--fps", "0"], "--fps must be a positive number, got 0"),
    ("video-fps-negative", ["video", "{frames}", "--fps", "-3"], "--fps must be a positive number, got -3"),
    ("video-fps-inf", ["video", "{frames}", "--fps", "inf"], "--fps must be a positive number, got inf"),
    ("video-fps-nan", ["video", "{frames}", "--fps", "nan"], "--fps must be a positive number, got nan"),
    ("video-fps-huge", ["video", "{frames}", "--fps", "1e9"], "the frame rate must be between 0.01 and 1000 fps"),
    ("video-seconds-zero", ["video", "{frames}", "--seconds", "0"], "--seconds must be a positive number"),
    ("video-seconds-inf", ["video", "{frames}", "--seconds", "inf"], "--seconds must be a positive number, got inf"),
    ("video-seconds-tiny", ["video", "{frames}", "--seconds", "1e-9"], "2 frames in 1e-09 s is 2e+09 fps"),
    ("video-seconds-huge", ["video", "{frames}", "--seconds", "1e9"], "the frame rate must be between 0.01 and 1000"),
    ("video-both", ["video", "{frames}", "--fps", "3", "--seconds", "2"], "give --fps or --seconds, not both"),
]


@pytest.mark.parametrize("case, argv, fragment", NUMBERS, ids=[c[0] for c in NUMBERS])
def test_numbers_out_of_range_are_refused_before_anything_loads(
    case, argv, fragment, tiny_args, tmp_path, no_model_loads
):
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(2):
        Image.fromarray(np.full((8, 8, 3), k * 100, np.uint8)).save(frames / f"step_{k:05d}.png")
    filled = []
    for a in argv:
        filled += (
            tiny_args[:4] + ["--device", "cpu", "--out", str(tmp_path / "out")]
            if a == "{T}"
            else [a.replace("{img}", str(img)).replace("{frames}", str(frames))]
        )
    result = runner.invoke(app, filled)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert fragment.replace("{img}", str(img)) in lines[0], lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "frames.mp4").exists()


def test_every_float_of_the_config_is_checked_finite():
    """The class, not the examples: each float field of every config section is refused as inf and as nan."""
    import dataclasses

    cfg = Config()
    sections = [
        cfg,
        *(getattr(cfg, f.name) for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))),
    ]
    floats = [(s, f.name) for s in sections for f in dataclasses.fields(s) if isinstance(getattr(s, f.name), float)]
    assert len(floats) >= 6
    for section, name in floats:
        for bad in (math.inf, -math.inf, math.nan):
            broken = Config()
            target = (
                broken
                if section is cfg
                else getattr(broken, next(f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) is section))
            )
            setattr(target, name, bad)
            with pytest.raises(ConfigError):
                validate(broken)


def test_seeds_are_whole_numbers_within_63_bits():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    for bad in (-1, MAX_SEED + 1, True, 1.5, "3"):
        with pytest.raises(ConfigError):
            check_seed(bad)
