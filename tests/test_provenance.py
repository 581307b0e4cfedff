"""What a PNG records for a reproduction: besides prompt, seed and config, the torch version, the device and the
SHA-256 of the model files the lock verified."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.outputs import read_png_metadata
from vqclip.provenance import describe_device
from vqclip.store import integrity

runner = CliRunner()


def _without_vqgan(tiny_args):
    i = tiny_args.index("--vqgan")
    return tiny_args[:i] + tiny_args[i + 2:]


def test_every_png_records_torch_device_and_the_vqgan_files_sha256(tiny_models, tiny_args, tmp_path):
    added = runner.invoke(app, ["models", "add", "tinyq", "--config", tiny_models["vqgan"], "--ckpt",
                                tiny_models["ckpt"]])
    assert added.exit_code == 0, added.output
    result = runner.invoke(app, ["generate", "a red circle", "--vqgan", "tinyq", *_without_vqgan(tiny_args),
                                 "--steps", "2", "--save-every", "1"])
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
        assert describe_device("cuda").startswith("cuda:0 (") and torch.cuda.get_device_name(0) in \
            describe_device("cuda:0")
