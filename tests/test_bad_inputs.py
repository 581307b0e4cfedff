"""The catalogue of bad inputs: each gets exit code 2 (usage/input) or 1 (runtime), exactly one line on stderr
that says what to do, no traceback, and no files left in the output folder.

Cases that can be caught without a model run with the model loaders replaced by a function that fails the
test: a typo must never cost a model load.
"""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, PngImagePlugin
from tiny import write_vqgan
from tmpfs import mount_tmpfs
from typer.testing import CliRunner

from vqclip import vqgan
from vqclip.cli import app
from vqclip.outputs import read_png_metadata
from vqclip.plan import check

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    """Bad files of every kind, under tmp_path/in."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "text.png").write_text("this is not an image\n")
    (d / "empty.png").write_bytes(b"")
    (d / "folder.png").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)).save(d / "good.png")
    data = (d / "good.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>')
    os.mkfifo(d / "fifo.png")
    (d / "not_taming.yaml").write_text("model:\n  target: something.Else\n")
    (d / "broken.yaml").write_text("model: [\n")
    (d / "a_file").write_text("I am a file, not a folder")
    (d / "empty.txt").write_text("")
    (d / "comments.txt").write_text("# only a comment\n\n")
    (d / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (d / "prompts.txt").write_text("a red circle\n")
    (d / "badkey.yaml").write_text("- prompt: x\n  nope: 1\n")
    (d / "bad.jsonl").write_text('{"prompt": "x"\n')
    (d / "no_frames").mkdir()
    _png_with_config(d / "bad_yaml.png", "prompt: [unclosed\n")
    _png_with_config(d / "bad_key.png", "prompt: x\nnot_a_key: 1\n")
    _png_with_config(d / "anim_frame.png", "prompt: x\n", animation='{"frames": 4}')
    return d


def _png_with_config(path, config: str, **chunks) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("config", config)
    for key, value in chunks.items():
        info.add_itxt(key, value)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)


def _decompression_bomb(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # good.png's 1600 pixels are then a "bomb"


# (id, extra CLI args, exit code, fragment of the message, setup(monkeypatch) or None)
# {in} is the folder of bad files; {tiny} the tiny VQGAN's folder. All are caught before a model loads.
EARLY = [
    ("empty-prompt", ["", "--steps", "2"], 2, "prompt is empty", None),
    ("whitespace-prompt", ["   \t "], 2, "prompt is empty", None),
    ("no-prompt", [], 2, "give a prompt", None),
    ("empty-part", ["a||b"], 2, "empty part between '|'", None),
    ("only-bar", ["|"], 2, "empty part between '|'", None),
    ("no-text", [":1"], 2, "has no text", None),
    ("zero-weight", ["a red circle:0"], 2, "has weight 0", None),
    ("weight-overflows", ["a:1e400"], 2, "too large to be a number", None),
    ("stop-overflows", ["a:1:1e999"], 2, "too large to be a number", None),
    ("size-zero", ["x", "--size", "0", "32"], 2, "width must be positive", None),
    ("size-negative", ["x", "--set", "height=-8"], 2, "height must be positive", None),
    ("size-below-one-token", ["x", "--size", "1", "1"], 2, "smaller than one VQGAN token", None),
    ("size-absurd", ["x", "--size", "100000", "100000"], 2, "is free; try --size", None),
    ("steps-zero", ["x", "--steps", "0"], 2, "steps must be positive", None),
    ("steps-negative", ["x", "--steps=-3"], 2, "steps must be positive", None),
    ("steps-not-a-number", ["x", "--set", "steps=abc"], 2, "bad value for steps", None),
    ("steps-float", ["x", "--set", "steps=2.5"], 2, "bad value for steps", None),
    ("cutn-zero", ["x", "--cutn", "0"], 2, "cutouts.cutn must be positive", None),
    ("lr-zero", ["x", "--lr", "0"], 2, "optim.lr must be positive", None),
    ("lr-negative", ["x", "--lr=-0.1"], 2, "optim.lr must be positive", None),
    ("lr-inf", ["x", "--set", "optim.lr=inf"], 2, "optim.lr must be a finite number", None),
    ("init-weight-nan", ["x", "--set", "init_weight=nan"], 2, "init_weight must be a finite number", None),
    ("cut-pow-zero", ["x", "--cut-pow", "0"], 2, "cut_pow must be positive", None),
    ("fps-zero", ["x", "--fps", "0"], 2, "output.fps must be positive", None),
    ("save-every-negative", ["x", "--save-every=-1"], 2, "save_every must be 0", None),
    ("seed-negative", ["x", "--seed=-1"], 2, "seed must be between", None),
    ("unknown-optimizer", ["x", "--optimizer", "lbfgs"], 2, "optimizer 'lbfgs'; choose one of: adagrad, adam", None),
    ("unknown-augment", ["x", "--augments", "flip,wobble"], 2, "unknown augmentation 'wobble'; choose one of:", None),
    ("unknown-vqgan", ["x", "--vqgan", "vqgan_nope"], 2, "unknown VQGAN model 'vqgan_nope'", None),
    (
        "unknown-clip",
        ["x", "--clip", "NoSuchCLIP"],
        2,
        "unknown CLIP model 'NoSuchCLIP'; see `vqclip models list`",
        None,
    ),
    ("unknown-clip-tag", ["x", "--clip", "ViT-B-32:nosuchtag"], 2, "unknown pretrained tag for ViT-B-32", None),
    ("clip-dir-missing", ["x", "--clip", "local-dir:{in}/nothing"], 2, "has no open_clip_config.json", None),
    ("clip-weights-missing", ["x", "--clip", "ViT-B-32:{in}/none.pt"], 2, "CLIP weights file", None),
    ("unknown-preset", ["x", "--preset", "nosuch"], 2, "unknown preset 'nosuch'; choose one of:", None),
    ("unknown-device", ["x", "--device", "tpu"], 2, "device must be auto, cpu, cuda", None),
    ("cuda-without-gpu", ["x", "--device", "cuda"], 2, "no CUDA GPU is available", None),
    ("cuda-n-without-gpu", ["x", "--device", "cuda:1"], 2, "no CUDA GPU is available", None),
    ("unknown-set-key", ["x", "--set", "nope=1"], 2, "unknown config key 'nope'", None),
    ("unknown-nested-set-key", ["x", "--set", "optim.momentum=0.9"], 2, "unknown config key", None),
    ("set-without-value", ["x", "--set", "steps"], 2, "--set expects key=value", None),
    ("init-missing", ["x", "--init-image", "{in}/missing.png"], 2, "does not exist", None),
    ("init-text-as-png", ["x", "--init-image", "{in}/text.png"], 2, "cannot read init image", None),
    ("init-empty", ["x", "--init-image", "{in}/empty.png"], 2, "is empty (0 bytes)", None),
    ("init-directory", ["x", "--init-image", "{in}/folder.png"], 2, "is a folder, not a regular file", None),
    ("init-fifo", ["x", "--init-image", "{in}/fifo.png"], 2, "is a FIFO (named pipe), not a regular file", None),
    ("init-truncated", ["x", "--init-image", "{in}/truncated.png"], 2, "cannot read init image", None),
    ("init-unsupported-svg", ["x", "--init-image", "{in}/drawing.svg"], 2, "cannot read init image", None),
    (
        "init-decompression-bomb",
        ["x", "--init-image", "{in}/good.png"],
        2,
        "cannot read init image",
        _decompression_bomb,
    ),
    ("init-url", ["x", "--init-image", "https://example.com/cat.png"], 2, "is a URL", None),
    ("image-prompt-url", ["x", "--image-prompt", "http://example.com/cat.png:0.5"], 2, "is a URL", None),
    ("image-prompt-file-url", ["x", "--image-prompt", "file:///etc/passwd"], 2, "is a URL", None),
    ("image-prompt-missing", ["x", "--image-prompt", "{in}/missing.jpg"], 2, "does not exist", None),
    ("image-prompt-text", ["x", "--image-prompt", "{in}/text.png:0.5"], 2, "cannot read image prompt", None),
    ("image-prompt-empty", ["--image-prompt", "{in}/empty.png"], 2, "is empty (0 bytes)", None),
    ("vqgan-yaml-missing", ["x", "--vqgan", "{in}/nothing.yaml"], 2, "missing", None),
    ("vqgan-ckpt-missing", ["x", "--vqgan-ckpt", "{in}/nothing.ckpt"], 2, "missing", None),
    (
        "vqgan-yaml-not-taming",
        ["x", "--vqgan", "{in}/not_taming.yaml", "--vqgan-ckpt", "{tiny}/tiny_vqgan.ckpt"],
        2,
        "is not a taming VQGAN config",
        None,
    ),
    (
        "vqgan-yaml-broken",
        ["x", "--vqgan", "{in}/broken.yaml", "--vqgan-ckpt", "{tiny}/tiny_vqgan.ckpt"],
        2,
        "broken.yaml is not valid YAML",
        None,
    ),
    ("from-png-without-metadata", ["--from", "{in}/good.png"], 2, "carries no vqclip config", None),
    ("from-text-file", ["--from", "{in}/text.png"], 2, "--from takes a PNG written by vqclip", None),
    ("from-missing", ["--from", "{in}/missing.png"], 2, "--from takes a PNG written by vqclip", None),
    ("from-broken-config", ["--from", "{in}/bad_yaml.png"], 2, "the recorded config is not valid YAML", None),
    ("from-unknown-key", ["--from", "{in}/bad_key.png"], 2, "unknown config key 'not_a_key'", None),
    (
        "from-animation-frame",
        ["--from", "{in}/anim_frame.png"],
        2,
        "is a frame of an animation; re-run it with vqclip animate --from",
        None,
    ),
    # story mode; tiny_args run 4 steps
    ("keyframe-without-equals", ["x", "--keyframe", "30"], 2, "--keyframe takes N=PROMPT", None),
    ("keyframe-negative", ["x", "--keyframe", "-3=a"], 2, "--keyframe takes N=PROMPT", None),
    ("keyframe-not-a-number", ["x", "--keyframe", "two=a"], 2, "--keyframe takes N=PROMPT", None),
    ("keyframe-without-prompt", ["x", "--keyframe", "2="], 2, "--keyframe takes N=PROMPT", None),
    ("keyframe-twice", ["x", "--keyframe", "2=a", "--keyframe", "2=b"], 2, "--keyframe 2 is given twice", None),
    (
        "keyframe-past-the-last-step",
        ["x", "--keyframe", "4=a"],
        2,
        "keyframe 4 ('a') is past the last step: the run has 4 steps (0-3); move it below 4 or raise --steps",
        None,
    ),
    ("keyframe-bad-prompt", ["x", "--keyframe", "2=a||b"], 2, "empty part between '|'", None),
    (
        "keyframes-without-a-start",
        ["--keyframe", "2=a"],
        2,
        "keyframes start at step 2; add a keyframe at step 0",
        None,
    ),
    ("set-keyframe-not-a-number", ["x", "--set", "keyframes.two=a"], 2, "keyframes map step (or frame) numbers", None),
    (
        "set-keyframe-without-prompt",
        ["x", "--set", "keyframes.2="],
        2,
        "keyframe 2: '' needs a step >= 0 and a prompt",
        None,
    ),
    ("story-empty-part", ["a^^b"], 2, "has an empty part", None),
    ("story-every-past-the-end", ["a^b", "--story-every", "5"], 2, "starts at step 5 but the run has 4 steps", None),
    ("out-is-a-file", ["x", "--out", "{in}/a_file"], 1, "is a file, not a folder; choose another --out", None),
    ("out-under-a-file", ["x", "--out", "{in}/a_file/run"], 1, "is a file, not a folder", None),
]


def _fill(args, files, tiny_models):
    tiny = os.path.dirname(tiny_models["vqgan"])
    return [a.replace("{in}", str(files)).replace("{tiny}", tiny) for a in args]


def _assert_one_line_error(result, code, fragment):
    """Exactly one line besides the progress bar (runtime failures come after some steps were shown)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [
        line
        for line in result.stderr.replace("\r", "\n").splitlines()
        if line.strip() and not line.startswith("generate:")
    ]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]


def _files_under(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*")) if folder.exists() else []


def test_no_model_loads_guard_catches_every_loader(tiny_models, no_model_loads):
    """The guard itself: each way vqclip reads weights trips it."""
    from vqclip import clip_tools
    from vqclip.checkpoint import load_checkpoint
    from vqclip.clip import load_clip
    from vqclip.vqgan import load_vqgan

    loads = [
        lambda: load_vqgan(tiny_models["vqgan"], tiny_models["ckpt"]),
        lambda: load_clip(tiny_models["clip"]),
        lambda: load_checkpoint(tiny_models["ckpt"]),
        lambda: clip_tools.open_perceptor(tiny_models["clip"], "cpu"),
    ]
    for load in loads:
        with pytest.raises(AssertionError, match="a model was loaded"):
            load()


@pytest.mark.parametrize("case, args, code, fragment, setup", EARLY, ids=[c[0] for c in EARLY])
def test_bad_input_fails_before_any_model_loads(
    case, args, code, fragment, setup, tiny_args, tiny_models, files, tmp_path, monkeypatch, no_model_loads
):
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    if setup is not None:
        setup(monkeypatch)
    result = runner.invoke(app, ["generate", *tiny_args, *_fill(args, files, tiny_models)])
    _assert_one_line_error(result, code, fragment)
    assert _files_under(tmp_path / "out") == []


# the other commands: (id, argv after `vqclip`, exit code, fragment); {T} stands for the tiny model options
OTHERS = [
    ("batch-file-missing", ["batch", "{in}/missing.txt", "{T}"], 2, "missing.txt does not exist"),
    ("batch-file-empty", ["batch", "{in}/empty.txt", "{T}"], 2, "holds no prompts"),
    ("batch-file-only-comments", ["batch", "{in}/comments.txt", "{T}"], 2, "holds no prompts"),
    ("batch-file-not-utf8", ["batch", "{in}/latin1.txt", "{T}"], 2, "give a UTF-8 text, YAML or JSONL file"),
    ("batch-file-is-a-folder", ["batch", "{in}/no_frames", "{T}"], 2, "no_frames is a folder, not a regular file"),
    ("batch-yaml-unknown-key", ["batch", "{in}/badkey.yaml", "{T}"], 2, "unknown config key 'nope'"),
    ("batch-jsonl-broken", ["batch", "{in}/bad.jsonl", "{T}"], 2, "is not JSON"),
    ("batch-steps-zero", ["batch", "{in}/prompts.txt", "{T}", "--steps", "0"], 2, "steps must be positive"),
    ("video-folder-missing", ["video", "{in}/missing"], 2, "is not a folder"),
    ("video-folder-is-a-file", ["video", "{in}/text.png"], 2, "is not a folder"),
    ("video-no-frames", ["video", "{in}/no_frames"], 2, "holds no PNG, JPEG or WebP frames"),
    ("video-special-frame", ["video", "{in}"], 2, "fifo.png is a FIFO (named pipe), not a regular file; remove it"),
    ("animate-empty-prompt", ["animate", " ", "{T}"], 2, "prompt is empty"),
    ("animate-steps-zero", ["animate", "x", "{T}", "--steps", "0"], 2, "steps must be positive"),
    ("animate-size-below-one-token", ["animate", "x", "{T}", "--size", "1", "1"], 2, "smaller than one VQGAN token"),
    (
        "animate-init-not-an-image",
        ["animate", "x", "{T}", "--init-image", "{in}/text.png"],
        2,
        "cannot read init image",
    ),
    ("animate-zoom-zero", ["animate", "x", "{T}", "--zoom", "0"], 2, "zoom must be positive"),
    ("animate-pan-one-number", ["animate", "x", "{T}", "--set", "animation.pan=[1]"], 2, "pan two numbers"),
    (
        "animate-frames-zero",
        ["animate", "x", "{T}", "--set", "animation.frames=0"],
        2,
        "animation.frames must be positive",
    ),
    ("animate-from-without-metadata", ["animate", "--from", "{in}/good.png", "{T}"], 2, "carries no vqclip config"),
    # a story in animate counts frames
    (
        "animate-keyframe-past-the-last-frame",
        ["animate", "x", "{T}", "--frames", "4", "--keyframe", "4=y"],
        2,
        "keyframe 4 ('y') is past the last frame: the animation has 4 frames (0-3); move it below 4 or raise --frames",
    ),
    (
        "animate-story-every-past-the-end",
        ["animate", "a^b", "{T}", "--frames", "4", "--story-every", "5"],
        2,
        "story prompt 'b' starts at frame 5 but the animation has 4 frames; lower --story-every or raise --frames",
    ),
    ("animate-keyframes-without-a-start", ["animate", "{T}", "--keyframe", "2=y"], 2, "add a keyframe at frame 0"),
    ("animate-keyframe-not-a-number", ["animate", "x", "{T}", "--keyframe", "1.5=y"], 2, "--keyframe takes N=PROMPT"),
    ("animate-keyframe-bad-prompt", ["animate", "x", "{T}", "--keyframe", "2=y:0"], 2, "has weight 0"),
    (
        "animate-blend-too-long",
        ["animate", "a^b", "{T}", "--frames", "4", "--blend", "2"],
        2,
        "blend of 2 frames does not fit the segment 'b' (frames 2-3); lower --blend",
    ),
    ("score-image-not-an-image", ["score", "{in}/text.png", "--prompt", "x", "{C}"], 2, "cannot read image"),
    ("score-image-missing", ["score", "{in}/missing.png", "--prompt", "x", "{C}"], 2, "does not exist"),
    ("rank-folder-missing", ["rank", "{in}/missing", "x", "{C}"], 2, "does not exist"),
    ("rank-folder-without-images", ["rank", "{in}/no_frames", "x", "{C}"], 2, "holds no images"),
    ("classify-image-not-an-image", ["classify", "{in}/text.png", "--labels", "a,b", "{C}"], 2, "cannot read image"),
    ("models-download-unknown", ["models", "download", "nosuchmodel"], 2, "unknown VQGAN model 'nosuchmodel'"),
]


def _argv(argv, files, tiny_models, tiny_args):
    out = []
    for a in argv:
        if a == "{T}":
            out += tiny_args[:4] + ["--device", "cpu"]  # --vqgan and --clip of the tiny models
        elif a == "{C}":
            out += ["--clip", tiny_models["clip"]]
        else:
            out.append(a.replace("{in}", str(files)))
    return out


@pytest.mark.parametrize("case, argv, code, fragment", OTHERS, ids=[c[0] for c in OTHERS])
def test_other_commands_bad_input(case, argv, code, fragment, files, tiny_models, tiny_args, tmp_path, no_model_loads):
    result = runner.invoke(app, _argv(argv, files, tiny_models, tiny_args))
    _assert_one_line_error(result, code, fragment)
    assert not (tmp_path / "outputs").exists()


def test_batch_out_is_a_file(files, tiny_models, tiny_args, tmp_path, no_model_loads):
    argv = _argv(["batch", "{in}/prompts.txt", "{T}", "--out", "{in}/a_file"], files, tiny_models, tiny_args)
    _assert_one_line_error(runner.invoke(app, argv), 1, "is a file, not a folder")


def test_batch_size_that_cannot_fit_fails_before_any_model_loads(
    tiny_models, tiny_args, tmp_path, monkeypatch, no_model_loads
):
    from vqclip import memory
    from vqclip.config import Config

    cfg = Config(prompt="a", width=32, height=32)
    cfg.model.vqgan, cfg.model.clip = tiny_models["vqgan"], [tiny_models["clip"]]
    one, three = (memory.Workload.of(check(cfg), cfg, torch.device("cpu"), n).bytes() for n in (1, 3))
    monkeypatch.setattr(memory, "available_bytes", lambda device: (one + three) // 2)  # fits one image, not 3
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\na blue square\na green triangle\n")
    argv = [
        "batch",
        str(prompts),
        *tiny_args[:4],
        "--size",
        "32",
        "32",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "run"),
        "--batch-size",
        "3",
    ]
    _assert_one_line_error(runner.invoke(app, argv), 2, "a smaller --batch-size")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------
# failures that need the models: corrupt checkpoints, a full disk, out of memory (exit 1)


def _mismatched_ckpt(folder):
    _, ckpt = write_vqgan(folder, name="other", n_embed=32)
    return ckpt


def _tensorless_ckpt(folder):
    path = folder / "tensorless.ckpt"
    torch.save({"state_dict": {"weight": [1, 2, 3]}}, path)
    return path


def _truncated_ckpt(folder, source):
    data = open(source, "rb").read()
    path = folder / "truncated.ckpt"
    path.write_bytes(data[: len(data) // 3])
    return path


def _garbage_ckpt(folder, seed):
    import random

    path = folder / "garbage.ckpt"
    path.write_bytes(random.Random(seed).randbytes(4096))  # read as pickle opcodes, each seed fails its own way
    return path


def _bytes_ckpt(folder, data):
    path = folder / "bytes.ckpt"
    path.write_bytes(data)
    return path


def _empty_ckpt(folder):
    path = folder / "empty.ckpt"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d, src: _truncated_ckpt(d, src), "is corrupt or truncated"),
        *[(lambda d, src, seed=seed: _garbage_ckpt(d, seed), "is corrupt or truncated") for seed in range(6)],
        (lambda d, src: _bytes_ckpt(d, b"\x80\xbf" + bytes(64)), "is corrupt or truncated"),  # torch warns, then fails
        (lambda d, src: _empty_ckpt(d), "is corrupt or truncated"),
        (lambda d, src: _mismatched_ckpt(d), "does not fit its config"),
        (lambda d, src: _tensorless_ckpt(d), "holds no state dict of tensors"),
    ],
    ids=[
        "truncated",
        *[f"garbage{seed}" for seed in range(6)],
        "unknown-protocol",
        "empty",
        "yaml-ckpt-mismatch",
        "no-tensors",
    ],
)
def test_bad_checkpoint_is_one_line_and_writes_nothing(make, fragment, tiny_args, tiny_models, tmp_path):
    ckpt = make(tmp_path, tiny_models["ckpt"])
    result = runner.invoke(app, ["generate", "x", *tiny_args, "--vqgan-ckpt", str(ckpt)])
    _assert_one_line_error(result, 1, fragment)
    assert _files_under(tmp_path / "out") == []


def test_disk_full_during_a_save_leaves_no_partial_file(tiny_args, tmp_path, monkeypatch):
    real_fsync = os.fsync

    def full(fd):  # the PNG's bytes are in the temporary file when the disk turns out to be full
        assert os.fstat(fd).st_size > 0
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = runner.invoke(app, ["generate", "x", *tiny_args, "--name", "run", "--save-every", "2"])
    monkeypatch.setattr(os, "fsync", real_fsync)
    _assert_one_line_error(result, 1, "No space left on device); free some space or choose another --out")
    # the run's folders were made; no frame, no final image and no temporary file is left in them
    assert [p for p in (tmp_path / "out").rglob("*") if not p.is_dir()] == []


def test_disk_full_on_a_real_tiny_filesystem(tiny_args, tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "64k")
    try:
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as f:  # fill it up, leaving no room for an image
            try:
                while True:
                    f.write(b"\0" * 1024)
            except OSError as e:
                assert e.errno == errno.ENOSPC
        result = runner.invoke(
            app, ["generate", "x", *tiny_args, "--size", "64", "64", "--out", str(disk / "out"), "--name", "run"]
        )
        _assert_one_line_error(result, 1, "No space left on device")
        assert [p for p in (disk / "out").rglob("*") if not p.is_dir()] == []
    finally:
        subprocess.run(["umount", str(disk)], check=False, capture_output=True)


def test_out_of_memory_mid_run_gives_the_same_advice(tiny_args, tmp_path, monkeypatch):
    from vqclip import optimize

    real_score = optimize.score
    calls = []

    def score(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(optimize, "score", score)
    result = runner.invoke(app, ["generate", "x", *tiny_args, "--size", "64", "48"])
    _assert_one_line_error(result, 1, "out of memory on cpu at 64x48; try --size ")
    size = result.stderr.split("try --size ")[1].split(",")[0].split()
    w, h = int(size[0]), int(size[1])
    assert w * h < 64 * 48 and w % 2 == 0 and h % 2 == 0


def test_size_suggested_for_too_little_memory_fits(tiny_models, monkeypatch):
    from vqclip import memory
    from vqclip.errors import ConfigError

    spec = vqgan.read_vqgan_yaml(tiny_models["vqgan"])
    free = 60 * 2**20
    monkeypatch.setattr(memory, "available_bytes", lambda device: free)
    work = memory.Workload(spec, 512, 256, torch.device("cpu"), clips=(tiny_models["clip"],), cutn=4)
    with pytest.raises(ConfigError, match=r"try --size \d+ \d+") as e:
        memory.check_memory(work)
    w, h = (int(v) for v in str(e.value).split("try --size ")[1].split(",")[0].split())
    assert w < 512 and h < 256 and abs(w / h - 2) < 0.2  # the aspect ratio is kept
    memory.check_memory(work.at(w, h))  # the suggestion passes the same check
    assert work.at(w, h).bytes() <= free * memory.SUGGEST_SHARE


def test_memory_estimate_grows_with_size_and_batch(tiny_models):
    from vqclip import memory

    spec = vqgan.read_vqgan_yaml(tiny_models["vqgan"])
    small, large = memory.estimate_bytes(spec, 32, 32), memory.estimate_bytes(spec, 64, 64)
    assert 3.5 < (large - memory.estimate_bytes(spec, 2, 2)) / (small - memory.estimate_bytes(spec, 2, 2))
    assert memory.estimate_bytes(spec, 32, 32, batch=4) > 3 * small - 3 * memory.estimate_bytes(spec, 2, 2)


# ---------------------------------------------------------------------------------------------------------
# odd but valid input: a warning at most, and the run completes


def _run(args, tmp_path):
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result, result.stdout.strip().splitlines()[-1]


def test_prompt_longer_than_clip_context_warns_and_runs(tiny_args, tmp_path):
    prompt = " ".join(["a red circle on a blue square"] * 20)
    result, last = _run([prompt, *tiny_args], tmp_path)
    assert "tokens; CLIP reads only the first 77" in result.stderr
    assert read_png_metadata(last)["prompt"] == prompt


@pytest.mark.parametrize(
    "prompt, recorded",
    [
        ("a:1:2:3", "a:1:2:3"),  # text "a:1", weight 2, stop 3: only the last two numbers are fields
        ("a photo: by x", "a photo: by x"),
        ("cost ${oc.env:HOME} $5", "cost ${oc.env:HOME} $5"),  # text, never an interpolation
        ("blurry:-1|sharp:2:0.5", "blurry:-1|sharp:2:0.5"),
    ],
)
def test_odd_but_valid_prompts_run(prompt, recorded, tiny_args, tmp_path):
    _, last = _run([prompt, *tiny_args, "--steps", "1"], tmp_path)
    meta = read_png_metadata(last)
    assert meta["prompt"] == recorded and yaml.safe_load(meta["config"])["prompt"] == recorded


def test_size_not_a_multiple_of_the_factor_is_rounded_with_a_notice(tiny_args, tmp_path):
    result, last = _run(["x", *tiny_args, "--size", "33", "31", "--steps", "1"], tmp_path)
    assert "is not a multiple of the VQGAN's factor 2; using 32x30" in result.stderr
    assert Image.open(last).size == (32, 30)


# ---------------------------------------------------------------------------------------------------------
# security


def test_no_eval_exec_or_unsafe_loading_in_the_package():
    """No config value can reach eval/exec, and nothing unpickles outside weights_only loading."""
    import ast
    from pathlib import Path

    import vqclip

    offences = []
    for path in Path(vqclip.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("eval", "exec", "compile", "__import__") and not owner:
                offences.append(f"{path.name}:{node.lineno} {name}()")
            elif owner in ("pickle", "dill", "marshal") and name in ("load", "loads"):
                offences.append(f"{path.name}:{node.lineno} {owner}.{name}()")
            elif owner == "yaml" and name in ("load", "unsafe_load", "full_load"):
                offences.append(f"{path.name}:{node.lineno} yaml.{name}()")
            elif owner == "torch" and name == "load":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    offences.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
    assert offences == []


def test_config_values_are_never_evaluated(tiny_args, tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    _, last = _run([payload, *tiny_args, "--steps", "1", "--set", f"output.name={payload}"], tmp_path)
    assert not marker.exists()
    assert read_png_metadata(last)["prompt"] == payload


def test_recorded_config_cannot_read_the_environment(tiny_args, tmp_path, monkeypatch):
    """A shared PNG whose config asks for an environment variable gets the text, not the secret."""
    monkeypatch.setenv("VQCLIP_TEST_SECRET", "hunter2")
    _, first = _run(["x", *tiny_args, "--steps", "1"], tmp_path)
    meta = read_png_metadata(first)
    doc = yaml.safe_load(meta["config"])
    doc["prompt"] = "${oc.env:VQCLIP_TEST_SECRET}"
    _png_with_config(tmp_path / "shared.png", yaml.safe_dump(doc))
    _, rerun = _run(["--from", str(tmp_path / "shared.png"), "--out", str(tmp_path / "again")], tmp_path)
    meta = read_png_metadata(rerun)
    assert meta["prompt"] == "${oc.env:VQCLIP_TEST_SECRET}" and "hunter2" not in str(meta)
