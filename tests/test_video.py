"""Videos: per-prompt progress mp4s in a batch, `vqclip video` from saved frames, and `vqclip animate`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import model_args
from typer.testing import CliRunner

from vqclip.animate import Motion, warp
from vqclip.cli import app
from vqclip.errors import ConfigError
from vqclip.outputs import read_jsonl, read_png_metadata

runner = CliRunner()


def mp4_frames(path):
    """Decode an mp4 frame by frame (iterate the reader; never list() it)."""
    import imageio.v2 as imageio

    reader = imageio.get_reader(path, format="ffmpeg")
    try:
        return [frame.mean(axis=(0, 1)) for frame in reader], reader.get_meta_data()["fps"]
    finally:
        reader.close()


def test_batch_video_per_prompt_has_expected_frames(tiny_models, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\na blue square  ## steps=4\n")
    result = runner.invoke(
        app,
        [
            "batch",
            str(prompts),
            *model_args(tiny_models, tmp_path / "out"),
            "--steps",
            "6",
            "--save-every",
            "2",
            "--video",
            "--fps",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    records = read_jsonl(tmp_path / "out" / "manifest.jsonl")
    # frames at steps 0, 2, 4 (+ final) for 6 steps; 0, 2 (+ final) for 4 steps
    for record, expected in zip(records, (4, 3)):
        (video,) = record["videos"]
        frames, fps = mp4_frames(tmp_path / "out" / video)
        assert len(frames) == expected and fps == 5


def test_video_command_assembles_frames_in_natural_order(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    levels = [0, 60, 120, 180, 240]
    for k, level in enumerate(levels):  # frame_2 must come before frame_10
        Image.fromarray(np.full((24, 40, 3), level, np.uint8)).save(frames / f"frame_{[1, 2, 3, 10, 11][k]}.png")
    result = runner.invoke(app, ["video", str(frames), "--seconds", "2", "--gif"])
    assert result.exit_code == 0, result.output
    mp4 = tmp_path / "frames.mp4"
    assert result.stdout.split() == [str(mp4), str(tmp_path / "frames.gif")]
    decoded, fps = mp4_frames(mp4)
    assert fps == 2.5 and len(decoded) == 5
    assert np.allclose([f.mean() for f in decoded], levels, atol=6)

    again = runner.invoke(app, ["video", str(frames)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / "frame_12.png")
    odd = runner.invoke(app, ["video", str(frames), "--out", str(tmp_path / "b.mp4")])
    assert odd.exit_code == 2 and "frame_12.png is 8x8" in odd.stderr and not (tmp_path / "b.mp4").exists()
    assert runner.invoke(app, ["video", str(tmp_path / "none")]).exit_code == 2


def test_warp_moves_zooms_and_rotates():
    image = torch.zeros(1, 3, 9, 15)
    image[0, :, 4, 7] = 1  # a dot at the centre
    assert torch.allclose(warp(image, Motion()), image, atol=1e-6)
    moved = warp(image, Motion(pan=(3, -2)))
    assert (moved[0, 0] > 0.5).nonzero().tolist() == [[2, 10]]  # 3 px right, 2 px up
    edge = torch.zeros(1, 3, 9, 9)
    edge[0, :, 4, 8] = 1  # a dot at the right middle
    assert (warp(edge, Motion(rotate=90))[0, 0] > 0.5).nonzero().tolist() == [[0, 4]]  # counter-clockwise: top
    ramp = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16)
    zoomed = warp(ramp, Motion(zoom=2.0))
    assert zoomed[0, 0, 8, 0] > ramp[0, 0, 8, 0] and zoomed[0, 0, 8, -1] < ramp[0, 0, 8, -1]  # edges come in
    with pytest.raises(ConfigError, match="zoom must be positive"):
        Motion(zoom=0)


def test_animate_streams_an_mp4_with_one_frame_per_frame(tiny_models, tmp_path):
    result = runner.invoke(
        app,
        [
            "animate",
            "a red circle",
            *model_args(tiny_models, tmp_path / "out"),
            "--frames",
            "4",
            "--steps",
            "2",
            "--steps-per-frame",
            "1",
            "--zoom",
            "1.1",
            "--rotate",
            "3",
            "--pan",
            "1",
            "0",
            "--seed",
            "2",
            "--fps",
            "8",
            "--save-frames",
        ],
    )
    assert result.exit_code == 0, result.output
    mp4 = result.stdout.split()[-1]
    frames, fps = mp4_frames(mp4)
    assert len(frames) == 4 and fps == 8
    folder = tmp_path / "out" / "anim-a-red-circle-s2"
    meta = read_png_metadata(folder / "final.png")
    assert json.loads(meta["animation"]) == {
        "frames": 4,
        "steps_per_frame": 1,
        "zoom": 1.1,
        "rotate": 3.0,
        "pan": [1.0, 0.0],
        "blend": 0,
    }
    assert meta["step"] == "3" and meta["seed"] == "2"
    assert "story" not in meta and "active_prompt" not in meta  # one prompt: no schedule to record
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"frame_{k:05d}.png" for k in range(4)]
