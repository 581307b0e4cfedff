"""Ctrl-C and SIGTERM delivered to a real `vqclip generate` process mid-run: the current image is saved with
its metadata marked "interrupted" and the step reached, and the process exits 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from vqclip.outputs import read_png_metadata


def _start(tiny_models, tmp_path):
    args = [sys.executable, "-m", "vqclip", "generate", "a red circle", "--vqgan", tiny_models["vqgan"],
            "--clip", tiny_models["clip"], "--size", "32", "32", "--steps", "100000", "--cutn", "2",
            "--save-every", "1", "--seed", "1", "--out", str(tmp_path / "out"), "--name", "run", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", VQCLIP_CHECKPOINTS=str(tmp_path / "ckpts"))
    # a shell's background jobs ignore SIGINT, and Python then never installs its Ctrl-C handler
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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
    assert f"interrupted at step {step};" in stderr
    saved = sorted(int(p.stem.split("_")[1]) for p in (folder / "frames").glob("step_*.png"))
    assert 2 <= step <= saved[-1] + 1
    assert [p.name for p in folder.rglob("*") if "tmp" in p.name] == []  # no half-written file left
