"""Story animations: `vqclip animate "a^b"` and `--keyframe FRAME=PROMPT` switch prompts by frame, through the real
CLI. What each frame was optimised for is read from its PNG's metadata, which records what the loop was given."""

import json

import numpy as np
import pytest
import yaml
from PIL import Image
from tiny import model_args
from typer.testing import CliRunner

from vqclip import judge
from vqclip.cli import app
from vqclip.clip import Perceptor
from vqclip.outputs import read_png_metadata
from vqclip.store import bundled_dir

runner = CliRunner()


def animate(tiny_models, out, *args):
    result = runner.invoke(
        app,
        [
            "animate",
            *args,
            *model_args(tiny_models, out),
            "--steps",
            "2",
            "--steps-per-frame",
            "1",
            "--seed",
            "3",
            "--save-frames",
        ],
    )
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    return folder


def frames_of(folder):
    return sorted((folder / "frames").glob("frame_*.png"))


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_story_switches_prompt_at_its_frame(tiny_models, tmp_path):
    folder = animate(tiny_models, tmp_path / "out", "a red circle^a blue square", "--frames", "4")
    assert [read_png_metadata(f)["active_prompt"] for f in frames_of(folder)] == [
        "a red circle",
        "a red circle",
        "a blue square",
        "a blue square",
    ]
    meta = read_png_metadata(folder / "final.png")
    assert json.loads(meta["story"]) == [[0, "a red circle"], [2, "a blue square"]]
    assert meta["story_unit"] == "frame" and meta["active_prompt"] == "a blue square"


def test_keyframes_from_the_command_line(tiny_models, tmp_path):
    # no prompt argument: the keyframes are the whole story; --story-every counts frames
    folder = animate(
        tiny_models, tmp_path / "a", "--keyframe", "0=a seed", "--keyframe", "3=a great oak", "--frames", "5"
    )
    assert folder.name == "anim-a-seed-s3"
    assert [read_png_metadata(f)["active_prompt"] for f in frames_of(folder)] == ["a seed"] * 3 + ["a great oak"] * 2
    mixed = animate(tiny_models, tmp_path / "b", "a^b", "--story-every", "2", "--keyframe", "3=c", "--frames", "5")
    assert [read_png_metadata(f)["active_prompt"] for f in frames_of(mixed)] == ["a", "a", "b", "c", "c"]


def test_each_distinct_prompt_is_embedded_once(tiny_models, tmp_path, monkeypatch):
    texts = []
    real = Perceptor.encode_text

    def spy(self, batch):
        texts.extend(batch)
        return real(self, batch)

    monkeypatch.setattr(Perceptor, "encode_text", spy)
    folder = animate(tiny_models, tmp_path / "out", "a red circle^a blue square^a red circle", "--frames", "6")
    assert sorted(texts) == ["a blue square", "a red circle"]  # not once per frame, nor once per segment
    assert [read_png_metadata(f)["active_prompt"] for f in frames_of(folder)] == ["a red circle"] * 2 + [
        "a blue square"
    ] * 2 + ["a red circle"] * 2


def test_a_story_of_one_prompt_changes_nothing(tiny_models, tmp_path):
    """The schedule itself does not perturb a run: switching to the same prompt gives the plain animation."""
    plain = animate(tiny_models, tmp_path / "plain", "a red circle", "--frames", "3", "--zoom", "1.1")
    story = animate(tiny_models, tmp_path / "story", "a red circle^a red circle", "--frames", "3", "--zoom", "1.1")
    for a, b in zip(frames_of(plain), frames_of(story), strict=True):
        assert np.array_equal(pixels(a), pixels(b))


def test_blend_crossfades_the_prompt_weights(tiny_models, tmp_path):
    folder = animate(tiny_models, tmp_path / "out", "a^b^c", "--frames", "9", "--blend", "2")
    metas = [read_png_metadata(f) for f in frames_of(folder)]
    assert [m["active_prompt"] for m in metas] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    blends = [json.loads(m["blend"]) if "blend" in m else None for m in metas]
    third = 1 / 3
    assert blends[3:6] == [
        [["a", pytest.approx(2 * third)], ["b", pytest.approx(third)]],
        [["a", pytest.approx(third)], ["b", pytest.approx(2 * third)]],
        None,
    ]
    assert blends[:3] == [None] * 3 and blends[6:8] == [
        [["b", pytest.approx(2 * third)], ["c", pytest.approx(third)]],
        [["b", pytest.approx(third)], ["c", pytest.approx(2 * third)]],
    ]


def recorded(path):
    """A PNG's provenance, less where it was written."""
    meta = read_png_metadata(path)
    config = yaml.safe_load(meta.pop("config"))
    del config["output"]["dir"]
    keep = ("story", "story_unit", "active_prompt", "blend", "animation", "seed", "step")
    return config, {k: meta.get(k) for k in keep}


def test_from_any_frame_reproduces_the_animation(tiny_models, tmp_path):
    first = animate(
        tiny_models,
        tmp_path / "a",
        "a red circle^a blue square",
        "--frames",
        "4",
        "--zoom",
        "1.1",
        "--rotate",
        "5",
        "--blend",
        "1",
    )
    frame = frames_of(first)[2]
    result = runner.invoke(app, ["animate", "--from", str(frame), "--out", str(tmp_path / "b"), "--save-frames"])
    assert result.exit_code == 0, result.output
    (again,) = (tmp_path / "b").iterdir()
    for a, b in zip(frames_of(first), frames_of(again), strict=True):
        assert np.array_equal(pixels(a), pixels(b))
        assert recorded(b) == recorded(a)
    # a still from an animation's frame would not be that frame: generate says how to reproduce it
    still = runner.invoke(app, ["generate", "--from", str(frame)])
    assert still.exit_code == 2 and f"vqclip animate --from {frame}" in still.stderr


def test_generate_takes_keyframes_from_the_command_line(tiny_args, tmp_path):
    for how in (["--keyframe", "2=a sapling"], ["--set", "keyframes.2=a sapling"]):
        out = tmp_path / how[0].strip("-")
        result = runner.invoke(app, ["generate", "a seed", *tiny_args, "--out", str(out), "--save-every", "1", *how])
        assert result.exit_code == 0, result.output
        frames = sorted(out.glob("*/frames/*.png"))
        assert [read_png_metadata(f)["active_prompt"] for f in frames] == ["a seed"] * 2 + ["a sapling"] * 2
        assert read_png_metadata(frames[0])["story_unit"] == "step"


@pytest.mark.skipif(not (bundled_dir() / "vqgan_toy.ckpt").is_file(), reason="toy checkpoints not present")
def test_toy_animation_turns_from_red_to_blue(tmp_path):
    """With the trained toy models the picture follows the story: red at the start, blue at the end."""
    result = runner.invoke(
        app,
        [
            "animate",
            "a red circle^a blue square",
            "--preset",
            "toy",
            "--device",
            "cpu",
            "--frames",
            "4",
            "--steps",
            "40",
            "--steps-per-frame",
            "20",
            "--zoom",
            "1",
            "--seed",
            "0",
            "--out",
            str(tmp_path),
            "--save-frames",
        ],
    )
    assert result.exit_code == 0, result.output
    (folder,) = tmp_path.iterdir()
    frames = frames_of(folder)
    assert judge.colour_of(pixels(frames[0])) == "red"
    assert judge.colour_of(pixels(frames[-1])) == "blue"


def test_animation_runs_on_the_devices_fast_path(tiny_models, tmp_path, monkeypatch):
    """animate prepares the models for the device's fast path (on the CPU: fused attention), as generate does."""
    from vqclip import fastpath

    seen = []
    prepare = fastpath.prepare
    monkeypatch.setattr(
        fastpath, "prepare", lambda vqgan, perceptors, fast: seen.append(fast) or prepare(vqgan, perceptors, fast)
    )
    animate(tiny_models, tmp_path / "out", "a red circle", "--frames", "2")
    assert seen and all(f.fused_attention for f in seen) and seen[0] != fastpath.REFERENCE
