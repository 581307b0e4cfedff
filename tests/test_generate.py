"""generate end to end on tiny models, through the same CLI and loaders users hit."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from vqclip import __version__
from vqclip.cli import app
from vqclip.config import resolve
from vqclip.outputs import read_png_metadata
from vqclip.runner import generate

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, ["generate", *args])
    return result, (result.stdout.strip().splitlines() or [""])[-1]


def test_generate_writes_png_with_provenance(tiny_args, tmp_path):
    result, last = invoke("a lighthouse: in a storm|blurry:-0.5", *tiny_args, "--seed", "7", "--save-every", "2")
    assert result.exit_code == 0, result.output
    final = tmp_path / "out" / "a-lighthouse-in-a-storm-blurry-0-5-s7" / "final.png"
    assert last == str(final) and final.is_file()
    meta = read_png_metadata(final)
    assert meta["prompt"] == "a lighthouse: in a storm|blurry:-0.5"
    assert meta["seed"] == "7" and meta["vqclip_version"] == __version__ and meta["status"] == "complete"
    recorded = yaml.safe_load(meta["config"])
    assert recorded["steps"] == 4 and recorded["cutouts"]["cutn"] == 4 and recorded["seed"] == 7
    frames = sorted(p.name for p in (final.parent / "frames").iterdir())
    assert frames == ["step_00000.png", "step_00002.png"]
    assert read_png_metadata(final.parent / "frames" / frames[1])["step"] == "2"


def test_same_seed_same_pixels_and_from_png_reproduces(tiny_args, tmp_path):
    _, first = invoke("a red circle", *tiny_args, "--seed", "3")
    _, second = invoke("a red circle", *tiny_args, "--seed", "3")
    _, other = invoke("a red circle", *tiny_args, "--seed", "4")
    _, rerun = invoke("--from", first, "--out", str(tmp_path / "again"))
    pixels = [np.asarray(Image.open(p)) for p in (first, second, other, rerun)]
    assert first != second  # a second run never overwrites the first
    assert np.array_equal(pixels[0], pixels[1])
    assert not np.array_equal(pixels[0], pixels[2])
    assert np.array_equal(pixels[0], pixels[3])
    assert read_png_metadata(rerun)["prompt"] == "a red circle"


def test_video_has_one_frame_per_saved_step(tiny_args, tmp_path):
    import imageio.v3 as iio

    result, last = invoke("a red circle", *tiny_args, "--steps", "6", "--save-every", "2", "--video", "--gif")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "out" / last.split("/")[-2]
    # frames at steps 0, 2, 4 and the final image
    frames = (
        sum(1 for _ in iio.imiter(folder / "progress.mp4", plugin="pyav"))
        if _has_pyav()
        else _count_ffmpeg_frames(folder / "progress.mp4")
    )
    assert frames == 4
    gif = Image.open(folder / "progress.gif")
    durations = []
    for k in range(gif.n_frames):  # Pillow merges identical frames into one longer frame
        gif.seek(k)
        durations.append(gif.info["duration"])
    assert sum(durations) == 4 * 100  # 4 frames at the default 10 fps


def _has_pyav():
    try:
        import av  # noqa: F401

        return True
    except ImportError:
        return False


def _count_ffmpeg_frames(path):
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="ffmpeg")
    try:
        return sum(1 for _ in reader)  # iterate; never list() an mp4 reader
    finally:
        reader.close()


def test_loss_falls_over_20_steps(tiny_models):
    cfg = resolve(
        options={
            "prompt": "a red circle",
            "seed": 0,
            "steps": 20,
            "width": 32,
            "height": 32,
            "device": "cpu",
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "cutouts.cutn": 8,
            "optim.lr": 0.2,
        }
    )
    losses = [float(step.loss[0]) for step in generate(cfg) if not step.final]
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_generator_yields_steps_and_writes_nothing(tiny_models, tmp_path):
    cfg = resolve(
        options={
            "prompt": "x",
            "seed": 1,
            "steps": 3,
            "width": 32,
            "height": 32,
            "device": "cpu",
            "model.vqgan": tiny_models["vqgan"],
            "model.clip": [tiny_models["clip"]],
            "cutouts.cutn": 2,
            "output.dir": str(tmp_path / "never"),
        }
    )
    steps = list(generate(cfg))
    assert [s.i for s in steps] == [0, 1, 2, 3] and steps[-1].final
    assert steps[0].image.shape == (1, 3, 32, 32) and 0 <= steps[0].image.min() <= steps[0].image.max() <= 1
    assert isinstance(steps[0].loss, torch.Tensor)
    assert not (tmp_path / "never").exists()


def test_init_image_and_image_prompt(tiny_args, tmp_path):
    img = tmp_path / "init.png"
    Image.fromarray(np.full((20, 30, 3), (200, 30, 30), np.uint8)).save(img)
    result, last = invoke(
        "a red circle", *tiny_args, "--init-image", str(img), "--init-weight", "0.5", "--image-prompt", f"{img}:0.5"
    )
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(read_png_metadata(last)["config"])["image_prompts"] == [f"{img}:0.5"]


def test_size_is_rounded_to_the_vqgan_factor_with_a_notice(tiny_args):
    result, last = invoke("x", *tiny_args, "--size", "33", "31")
    assert result.exit_code == 0, result.output
    assert "using 32x30" in result.stderr
    assert Image.open(last).size == (32, 30)


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["", "--steps", "2"], 2, "prompt is empty"),
        (["x", "--set", "nope=1"], 2, "unknown config key 'nope'"),
        (["x", "--steps", "0"], 2, "steps must be positive"),
        (["x", "--optimizer", "lbfgs"], 2, "unknown optimizer 'lbfgs'"),
        (["x", "--device", "cuda"], 2, "no CUDA GPU"),
        (["x", "--init-image", "missing.png"], 2, "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_no_traceback(tiny_args, args, code, fragment):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = runner.invoke(app, ["generate", *tiny_args, *args])
    assert result.exit_code == code, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_straight_through_gradient_reaches_z_through_decoder_and_clip(tiny_models):
    from vqclip.clip import load_clip
    from vqclip.optimize import Guide, LoopSettings, score, synth
    from vqclip.prompts import parse_prompts
    from vqclip.runner import embed_prompts
    from vqclip.vqgan import load_vqgan

    vqgan = load_vqgan(tiny_models["vqgan"], tiny_models["ckpt"])
    clip = load_clip(tiny_models["clip"])
    z = torch.randn(1, 32, 16, 16, requires_grad=True)
    guide = Guide(clip, [embed_prompts(clip, parse_prompts("a red circle"))])
    loss = score(synth(vqgan, z), [guide], LoopSettings(steps=1, cutn=2), [torch.Generator().manual_seed(0)])
    loss.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_usage_errors_from_the_real_entry_point_are_one_line():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "vqclip", "generate", "x", "--steps", "abc"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for '--steps'")


def test_a_run_that_fails_before_saving_leaves_no_empty_folder(tiny_args, tmp_path, monkeypatch):
    from vqclip import optimize

    def broken_score(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(optimize, "score", broken_score)
    result = runner.invoke(app, ["generate", "x", *tiny_args, "--save-every", "0"])
    assert result.exit_code == 1 and "boom" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []
