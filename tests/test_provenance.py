"""What a PNG records for a reproduction (besides prompt, seed and config: the torch version, the device and the
SHA-256 of the model files the lock verified), and what `--from image.png` takes from it: a run's prompts and
settings, never its places. A PNG cannot say where outputs go or where models live, and files it names by path are
used only with a warning that names them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.outputs import read_png_metadata
from vqclip.provenance import config_for, describe_device
from vqclip.store import integrity

runner = CliRunner()


def _without_vqgan(tiny_args):
    i = tiny_args.index("--vqgan")
    return tiny_args[:i] + tiny_args[i + 2 :]


def test_every_png_records_torch_device_and_the_vqgan_files_sha256(tiny_models, tiny_args, tmp_path):
    added = runner.invoke(
        app, ["models", "add", "tinyq", "--config", tiny_models["vqgan"], "--ckpt", tiny_models["ckpt"]]
    )
    assert added.exit_code == 0, added.output
    result = runner.invoke(
        app,
        [
            "generate",
            "a red circle",
            "--vqgan",
            "tinyq",
            *_without_vqgan(tiny_args),
            "--steps",
            "2",
            "--save-every",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    final = tmp_path / "out" / result.stdout.strip().splitlines()[-1].split("/")[-2] / "final.png"
    pngs = [final, *sorted((final.parent / "frames").glob("*.png"))]
    assert len(pngs) == 3
    expected = {"yaml": integrity.sha256_file(tiny_models["vqgan"]), "ckpt": integrity.sha256_file(tiny_models["ckpt"])}
    for png in pngs:
        meta = read_png_metadata(png)
        assert meta["torch_version"] == torch.__version__ and meta["device"] == "cpu"
        assert json.loads(meta["vqgan_sha256"]) == expected


def test_a_model_without_a_lock_records_no_hash(tiny_args, tmp_path):
    result = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--steps", "1", "--save-every", "0"])
    assert result.exit_code == 0, result.output
    meta = read_png_metadata(result.stdout.strip().splitlines()[-1])
    assert "vqgan_sha256" not in meta and meta["device"] == "cpu" and meta["torch_version"] == torch.__version__


def test_describe_device_names_the_gpu():
    assert describe_device("cpu") == "cpu" and describe_device(torch.device("meta")) == "meta"
    if torch.cuda.is_available():
        assert describe_device("cuda").startswith("cuda:0 (") and torch.cuda.get_device_name(0) in describe_device(
            "cuda:0"
        )


def _reconfigured(png: Path, out: Path, **changes) -> Path:
    """A copy of a vqclip PNG whose recorded config has `changes` (dotted keys) applied."""
    meta = read_png_metadata(png)
    config = yaml.safe_load(meta["config"])
    for key, value in changes.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    info = PngImagePlugin.PngInfo()
    for k, v in {**meta, "config": yaml.safe_dump(config)}.items():
        info.add_itxt(k, v)
    Image.open(png).save(out, pnginfo=info)
    return out


def test_a_png_never_decides_where_outputs_go_or_models_live(tiny_args, tmp_path):
    first = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--seed", "3"])
    assert first.exit_code == 0, first.output
    png = Path(first.stdout.strip().splitlines()[-1])
    elsewhere = tmp_path / "someone-elses" / "folder"
    crafted = _reconfigured(
        png,
        tmp_path / "shared.png",
        **{"output.dir": str(elsewhere), "model.checkpoints_dir": str(tmp_path / "their-models")},
    )
    assert yaml.safe_load(read_png_metadata(crafted)["config"])["output"]["dir"] == str(elsewhere)
    cfg = config_for(None, from_png=crafted)
    assert cfg.output.dir == "outputs" and cfg.model.checkpoints_dir is None  # the defaults, not the PNG's
    assert cfg.prompt == "a red circle" and cfg.seed == 3 and cfg.steps == 4  # its prompt and settings are taken
    rerun = runner.invoke(app, ["generate", "--from", str(crafted), "--device", "cpu"])
    assert rerun.exit_code == 0, rerun.output
    made = Path(rerun.stdout.strip().splitlines()[-1]).resolve()
    assert made.is_relative_to(tmp_path / "outputs") and not elsewhere.exists()  # cwd's outputs/, as by default
    assert not (tmp_path / "their-models").exists()
    assert made.read_bytes() != b"" and Image.open(made).size == Image.open(png).size


def test_files_a_png_names_by_path_are_named_in_a_warning(tiny_args, tiny_models, tmp_path):
    first = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--seed", "3"])
    png = Path(first.stdout.strip().splitlines()[-1])
    crafted = _reconfigured(png, tmp_path / "shared.png", init_image=str(png))
    rerun = runner.invoke(app, ["generate", "--from", str(crafted), "--out", str(tmp_path / "again")])
    assert rerun.exit_code == 0, rerun.output
    [warning] = [line for line in rerun.stderr.splitlines() if line.startswith("warning:") and "by path" in line]
    assert f"model.vqgan={tiny_models['vqgan']}" in warning and f"model.clip={tiny_models['clip']}" in warning
    assert f"init_image={png}" in warning and "--vqgan" in warning
    # options given on the command line replace what the PNG names, and are not warned about
    again = runner.invoke(
        app,
        [
            "generate",
            "--from",
            str(crafted),
            "--out",
            str(tmp_path / "again"),
            "--vqgan",
            tiny_models["vqgan"],
            "--clip",
            tiny_models["clip"],
            "--init-image",
            str(png),
        ],
    )
    assert again.exit_code == 0 and "by path" not in again.stderr, again.output


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(
    [
        "prompt",
        "seed",
        "steps",
        "width",
        "output",
        "model",
        "optim",
        "cutouts",
        "keyframes",
        "image_prompts",
        "init_image",
        "animation",
        "speed",
        "story_every",
        "nope",
    ]
)


@settings(max_examples=int(os.environ.get("FUZZ", 100)), deadline=None)
@given(config=st.dictionaries(_keys, _values, max_size=5) | _values)
def test_any_recorded_config_is_taken_or_refused_in_one_line(config, tmp_path_factory):
    from vqclip.errors import UsageError

    png = tmp_path_factory.mktemp("png") / "x.png"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("config", yaml.safe_dump(config))
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    try:
        config_for(None, from_png=png)
    except UsageError as e:
        assert "\n" not in str(e)
