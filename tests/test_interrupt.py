"""Ctrl-C and SIGTERM delivered to a real `vqclip generate` process mid-run: the current image is saved with
its metadata marked "interrupted" and the step reached, and the process exits 130. A run stopped so and resumed
(generate and animate --resume, batch rerun) ends with the pixels of the run that was never stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny import model_args
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.outputs import read_jsonl, read_png_metadata


def _start(tiny_models, tmp_path):
    args = [
        sys.executable,
        "-m",
        "vqclip",
        "generate",
        "a red circle",
        "--vqgan",
        tiny_models["vqgan"],
        "--clip",
        tiny_models["clip"],
        "--size",
        "32",
        "32",
        "--steps",
        "100000",
        "--cutn",
        "2",
        "--save-every",
        "1",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--name",
        "run",
        "--device",
        "cpu",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", VQCLIP_CHECKPOINTS=str(tmp_path / "ckpts"))
    # a shell's background jobs ignore SIGINT, and Python then never installs its Ctrl-C handler
    return subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_frames(proc, frames, count, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"generate ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        if frames.is_dir() and len(list(frames.glob("step_*.png"))) >= count:
            return
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no frames appeared")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_saves_an_interrupted_png_and_exits_130(signum, tiny_models, tmp_path):
    proc = _start(tiny_models, tmp_path)
    folder = tmp_path / "out" / "run"
    try:
        _wait_for_frames(proc, folder / "frames", 3)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    final = folder / "final.png"
    assert stdout.strip().splitlines()[-1] == str(final)
    with Image.open(final) as im:
        im.load()  # a complete, decodable PNG
        assert im.size == (32, 32)
    meta = read_png_metadata(final)
    step = int(meta["step"])
    assert meta["status"] == "interrupted" and meta["steps"] == "100000" and meta["prompt"] == "a red circle"
    # on its own line, after the progress bar's
    assert re.search(rf"(?m)^interrupted at step {step}; saved what was made in {re.escape(str(folder))}(;|$)", stderr)
    saved = sorted(int(p.stem.split("_")[1]) for p in (folder / "frames").glob("step_*.png"))
    assert 2 <= step <= saved[-1] + 1
    assert [p.name for p in folder.rglob("*") if "tmp" in p.name] == []  # no half-written file left


# ---------------------------------------------------------------------------------------------------------
# resume: a run stopped by a real SIGINT and continued with --resume (or a rerun batch) makes the same pixels as
# the run that was never stopped. The stopped run is a subprocess; the others run in-process (1 torch thread each).


def _interrupt(args, tmp_path, ready):
    """Run `python -m vqclip ARGS` until ready() holds, then send SIGINT; (exit code, stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", VQCLIP_CHECKPOINTS=str(tmp_path / "ckpts"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vqclip", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 180
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(
                    f"the run ended ({proc.returncode}) before it could be interrupted: {proc.communicate()[1][-2000:]}"
                )
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
    return stderr


def _count(folder, pattern):
    return len(list(folder.glob(pattern))) if folder.is_dir() else 0


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _video_frames(path):
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return sum(1 for _ in reader)


def test_generate_stopped_by_sigint_resumes_to_the_same_pixels(tiny_models, tmp_path):
    # a keyframe at step 3 and init_weight: the resumed part starts mid-story and still pulls towards z_orig
    run = [
        "a red circle",
        "--keyframe",
        "3=a blue square",
        "--set",
        "init_weight=0.2",
        "--steps",
        "60",
        "--save-every",
        "1",
        "--seed",
        "5",
        "--video",
        "--name",
        "run",
    ]
    folder = tmp_path / "cut" / "run"
    stderr = _interrupt(
        ["generate", *run, *model_args(tiny_models, tmp_path / "cut")],
        tmp_path,
        lambda: _count(folder / "frames", "step_*.png") >= 6,
    )
    saved = json.loads((folder / "state.json").read_text())
    assert f"continue it with vqclip generate --resume {folder}" in stderr
    assert 6 <= saved["step"] < 60 and read_png_metadata(folder / "final.png")["status"] == "interrupted"

    resumed = CliRunner().invoke(app, ["generate", "--resume", str(folder), "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    whole = CliRunner().invoke(app, ["generate", *run, *model_args(tiny_models, tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    final = Path(resumed.stdout.strip().splitlines()[-1])
    assert final == folder / "final.png"
    assert np.array_equal(_pixels(final), _pixels(tmp_path / "whole" / "run" / "final.png"))
    meta = read_png_metadata(final)
    assert meta["status"] == "complete" and json.loads(meta["resumed"]) == [saved["step"]]
    assert meta["loss"] == read_png_metadata(tmp_path / "whole" / "run" / "final.png")["loss"]
    # the frames and the video grew across the interruption: all 60 steps and the final image
    assert sorted(p.name for p in (folder / "frames").iterdir()) == [f"step_{i:05d}.png" for i in range(60)]
    for i in (0, saved["step"] - 1, saved["step"], 59):
        assert np.array_equal(
            _pixels(folder / "frames" / f"step_{i:05d}.png"),
            _pixels(tmp_path / "whole" / "run" / "frames" / f"step_{i:05d}.png"),
        )
    assert _video_frames(folder / "progress.mp4") == 61
    assert not list(folder.glob("state*"))  # a finished run keeps no state


# ~15 s of CPU, kept in the default run: issue 18's promise is a real SIGINT for generate, batch and animate
def test_batch_of_two_stopped_by_sigint_resumes_each_image_to_the_same_pixels(tiny_models, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle  ## seed=11\na blue square  ## seed=22\n")
    run = ["batch", str(prompts), "--steps", "60", "--batch-size", "2", "--save-every", "1"]
    out = tmp_path / "cut"
    _interrupt(
        [*run, *model_args(tiny_models, out)],
        tmp_path,
        lambda: min(_count(out, "0001-*/frames/step_*.png"), _count(out, "0002-*/frames/step_*.png")) >= 4,
    )
    stopped = read_jsonl(out / "manifest.jsonl")
    assert [r["status"] for r in stopped] == ["interrupted", "interrupted"]

    again = CliRunner().invoke(app, [*run, *model_args(tiny_models, out)])
    assert again.exit_code == 0, again.output
    whole = CliRunner().invoke(app, [*run, *model_args(tiny_models, tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    done = [r for r in read_jsonl(out / "manifest.jsonl") if r["status"] == "done"]
    reference = read_jsonl(tmp_path / "whole" / "manifest.jsonl")
    assert [r["prompt"] for r in done] == [r["prompt"] for r in reference] == ["a red circle", "a blue square"]
    for r, ref in zip(done, reference):
        # resumed from the same step, in one batch of two again: the same pixels as the uninterrupted batch
        assert r["batch"] == 2 and r["resumed"] == [stopped[0]["step"] + 1] == [stopped[1]["step"] + 1]
        assert r["folder"] == ref["folder"] and r["loss"] == ref["loss"]
        assert np.array_equal(_pixels(out / r["image"]), _pixels(tmp_path / "whole" / ref["image"]))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(r["folder"] for r in reference)  # no -2


# ~10 s of CPU, in the default run for the same reason
def test_animation_stopped_by_sigint_resumes_from_its_last_frame(tiny_models, tmp_path):
    run = [
        "animate",
        "a red circle^a blue square",
        "--frames",
        "40",
        "--steps",
        "2",
        "--steps-per-frame",
        "1",
        "--zoom",
        "1.05",
        "--blend",
        "2",
        "--seed",
        "3",
        "--save-frames",
        "--name",
        "anim",
    ]
    folder = tmp_path / "cut" / "anim"
    stderr = _interrupt(
        [*run, *model_args(tiny_models, tmp_path / "cut")],
        tmp_path,
        lambda: _count(folder / "frames", "frame_*.png") >= 4,
    )
    saved = json.loads((folder / "state.json").read_text())
    assert f"continue it with vqclip animate --resume {folder}" in stderr and 4 <= saved["step"] < 40

    # --save-frames is kept from the stopped run without being given again
    resumed = CliRunner().invoke(app, ["animate", "--resume", str(folder)])
    assert resumed.exit_code == 0, resumed.output
    whole = CliRunner().invoke(app, [*run, *model_args(tiny_models, tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    frames = sorted((folder / "frames").iterdir())
    assert [p.name for p in frames] == [f"frame_{k:05d}.png" for k in range(40)]
    for k, path in enumerate(frames):
        assert np.array_equal(_pixels(path), _pixels(tmp_path / "whole" / "anim" / "frames" / path.name)), k
    assert np.array_equal(_pixels(folder / "final.png"), _pixels(tmp_path / "whole" / "anim" / "final.png"))
    assert json.loads(read_png_metadata(folder / "final.png")["resumed"]) == [saved["step"]]
    assert _video_frames(folder / "animation.mp4") == 40


def test_animate_interrupted_prints_its_message_on_its_own_line(tiny_args, tmp_path, monkeypatch):
    """In-process (Ctrl-C raised at frame 2 by the frame callback): the message follows the bar's line."""
    from typer.testing import CliRunner

    from vqclip.cli import animate as command
    from vqclip.cli import app

    real = command._frame_done

    def ctrl_c_at_frame_2(bar, step):
        real(bar, step)
        if step.i == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(command, "_frame_done", ctrl_c_at_frame_2)
    result = CliRunner().invoke(
        app,
        [
            "animate",
            "a red circle",
            *tiny_args,
            "--frames",
            "50",
            "--steps",
            "1",
            "--steps-per-frame",
            "1",
            "--name",
            "anim",
        ],
    )
    assert result.exit_code == 130, result.output
    folder = tmp_path / "out" / "anim"
    assert re.search(
        rf"(?m)^interrupted at frame \d; saved what was made in {re.escape(str(folder))}(;|$)", result.stderr
    )
