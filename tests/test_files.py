"""Special files never block: a FIFO, a link to /dev/zero, a socket or a folder where a file is expected is refused
at once, with what it really is, by every command that reads a file."""

import os
import signal
import socket

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.files import not_regular, open_regular, read_regular

runner = CliRunner()


@pytest.fixture(autouse=True)
def _never_blocks():
    """A read that blocks on a FIFO fails the test after 30 s instead of hanging the suite."""

    def stuck(signum, frame):
        raise TimeoutError("a read blocked on a special file")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def special(tmp_path):
    """Special files named like images: a FIFO, links to /dev/zero and /dev/null, a socket, a broken link."""
    d = tmp_path / "special"
    d.mkdir()
    os.mkfifo(d / "fifo.png")
    (d / "zero.png").symlink_to("/dev/zero")
    (d / "null.png").symlink_to("/dev/null")
    (d / "broken.png").symlink_to(d / "nothing-here.png")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock.png"))
    yield d
    sock.close()


REASONS = {
    "fifo.png": "is a FIFO (named pipe), not a regular file",
    "zero.png": "is a link to /dev/zero, a character device, not a regular file",
    "null.png": "is a link to /dev/null, a character device",
    "sock.png": "is a socket, not a regular file",
    "broken.png": "is a broken link (to ",
}


@pytest.mark.parametrize("name", sorted(REASONS))
def test_each_kind_is_named_for_what_it_is(name, special):
    assert REASONS[name] in not_regular(special / name)
    with pytest.raises(Exception, match="not a regular file|broken link"):
        open_regular(special / name, "file")


def test_a_file_that_grows_past_its_cap_is_refused(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"x" * 2000)
    with pytest.raises(Exception, match="more than the 0 MB"):
        read_regular(tmp_path / "big.txt", "the file", max_bytes=1000)


# every command that reads an image or a user's file: (id, argv, {S} is the folder of special files)
COMMANDS = [
    ("generate-init-image", ["generate", "x", "{T}", "--init-image", "{S}/NAME"]),
    ("generate-image-prompt", ["generate", "x", "{T}", "--image-prompt", "{S}/NAME:0.5"]),
    ("animate-init-image", ["animate", "x", "{T}", "--init-image", "{S}/NAME"]),
    ("generate-from", ["generate", "--from", "{S}/NAME", "{T}"]),
    ("score", ["score", "{S}/NAME", "--prompt", "x", "--clip", "toy"]),
    ("classify", ["classify", "{S}/NAME", "--labels", "a,b", "--clip", "toy"]),
    ("vqgan-yaml", ["generate", "x", "{T}", "--vqgan", "{S}/NAME.yaml", "--vqgan-ckpt", "{ckpt}"]),
    ("vqgan-ckpt", ["generate", "x", "{T}", "--vqgan", "{yaml}", "--vqgan-ckpt", "{S}/NAME"]),
    ("models-add", ["models", "add", "mine", "--config", "{yaml}", "--ckpt", "{S}/NAME"]),
    ("batch-job-file", ["batch", "{S}/NAME", "{T}"]),
]


@pytest.mark.parametrize("name", ["fifo.png", "zero.png"])
@pytest.mark.parametrize("case, argv", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_refuses_special_files_at_once(
    case, argv, name, special, tiny_models, tiny_args, tmp_path, no_model_loads
):
    if case == "vqgan-yaml":
        target = special / f"{name}.yaml"
        os.mkfifo(target) if name == "fifo.png" else target.symlink_to("/dev/zero")
    filled = []
    for a in argv:
        if a == "{T}":
            filled += tiny_args[:4] + ["--device", "cpu", "--out", str(tmp_path / "out")]
        else:
            filled.append(
                a.replace("{S}", str(special))
                .replace("NAME", name)
                .replace("{ckpt}", tiny_models["ckpt"])
                .replace("{yaml}", tiny_models["vqgan"])
            )
    result = runner.invoke(app, filled)
    assert result.exit_code == 2, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip() and not x.startswith(("generate:", "batch", "animate"))]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    reason = "is a FIFO (named pipe)" if name == "fifo.png" else "is a link to /dev/zero, a character device"
    assert reason in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_video_refuses_a_fifo_among_its_frames_at_once(special, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 50 * k, np.uint8)).save(frames / f"step_{k:05d}.png")
    os.mkfifo(frames / "step_00003.png")
    result = runner.invoke(app, ["video", str(frames)])
    assert result.exit_code == 2 and "frame " in result.stderr and "step_00003.png is a FIFO" in result.stderr
    assert not (tmp_path / "frames.mp4").exists()
    (frames / "step_00003.png").unlink()
    (frames / "step_00003.png").symlink_to("/dev/zero")
    result = runner.invoke(app, ["video", str(frames)])
    assert result.exit_code == 2 and "is a link to /dev/zero, a character device" in result.stderr


def test_rank_skips_special_files_with_their_reason_and_ranks_the_rest(special, tmp_path):
    from vqclip.toy import render

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("fifo.png", "zero.png"):
        os.rename(special / name, folder / name)
    Image.fromarray(render("red", "circle", np.random.default_rng(0))).save(folder / "circle.png")
    result = runner.invoke(app, ["rank", str(folder), "a red circle", "--clip", "toy", "--device", "cpu", "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "skipping fifo.png: it is a FIFO (named pipe)" in result.stderr
    assert "skipping zero.png: it is a link to /dev/zero" in result.stderr
    assert [line.split()[-1] for line in result.stdout.splitlines()] == ["circle.png"]  # relative to the folder
