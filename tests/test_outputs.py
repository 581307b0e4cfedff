"""Outputs are never overwritten and never noisy: no existing file is replaced, ffmpeg's own lines never reach the
terminal (a failure is vqclip's one line), and control characters from a file name are shown escaped."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tmpfs import mount_tmpfs
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.errors import OutputError
from vqclip.outputs import atomic_path, place

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def _frames(folder: Path, n: int = 3, size: int = 16) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(folder / f"step_{k:05d}.png")
    return folder


@pytest.mark.parametrize("existing", ["frames.gif", "frames.mp4"])
def test_video_never_overwrites_an_existing_mp4_or_gif(existing, tmp_path):
    frames = _frames(tmp_path / "frames")
    (tmp_path / existing).write_bytes(b"someone's file")
    result = runner.invoke(app, ["video", str(frames), "--gif"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        result.stderr.strip() == f"error: {tmp_path / existing} already exists; vqclip does not overwrite "
        f"outputs, choose another --out"
    )
    assert (tmp_path / existing).read_bytes() == b"someone's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["frames", existing])  # nothing else written


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "final.png"
    with pytest.raises(OutputError, match="already exists"):
        with atomic_path(target, overwrite=False) as tmp:
            tmp.write_bytes(b"ours")
            target.write_bytes(b"theirs")  # another process got there first
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["final.png"]
    tmp = tmp_path / "t"
    tmp.write_bytes(b"new")
    place(tmp, target, overwrite=True)  # where replacing is the point (a contact sheet), it replaces
    assert target.read_bytes() == b"new"


def test_a_full_disk_while_encoding_is_one_line_and_no_ffmpeg_noise(tmp_path):
    """In a real process: ffmpeg writes to the terminal's file descriptor, which CliRunner cannot see."""
    frames = _frames(tmp_path / "frames", n=40, size=128)
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "256k")
    try:
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
        os.truncate(filler, filler.stat().st_size - 40_000)  # room to start the video, not to finish it
        out = subprocess.run(
            [sys.executable, "-m", "vqclip", "video", str(frames), "--out", str(disk / "v.mp4")],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, lines  # no "[out#0/mp4 @ 0x...] Error muxing a packet" lines before it
        assert lines[0].startswith(f"error: cannot write the video {disk / 'v.mp4'} (ffmpeg: ")
        assert "No space left on device" in lines[0] and "free some space" in lines[0]
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # nothing half-written under any name
    finally:
        subprocess.run(["umount", str(disk)], check=False, capture_output=True)


def test_control_characters_in_a_file_name_are_escaped_in_messages(tiny_args, tmp_path, no_model_loads):
    name = tmp_path / "evil\x1b[2J\x1b]0;owned\x07\u202egnp.png"  # clear screen, set title, bell, bidi override
    result = runner.invoke(app, ["generate", "x", *tiny_args, "--init-image", str(name)])
    assert result.exit_code == 2
    assert not any(c in result.stderr for c in "\x1b\x07\u202e"), repr(result.stderr)
    assert "evil\\x1b[2J\\x1b]0;owned\\x07\\u202egnp.png does not exist" in result.stderr


def test_control_characters_in_warnings_are_escaped_too(tmp_path):
    from vqclip.toy import render

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(render("red", "circle", np.random.default_rng(0))).save(folder / "ok.png")
    (folder / "bad\x1b[31m.png").write_text("not an image")
    result = runner.invoke(app, ["rank", str(folder), "a red circle", "--clip", "toy", "--device", "cpu", "--no-cache"])
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.stderr.splitlines() if line.startswith("warning: skipping"))
    assert "bad\\x1b[31m.png" in warning and "\x1b" not in result.stderr
