"""`vqclip models import DIR` (vqclip.store.importer): a peer's checkpoints folder and ~/.cache/clip just work."""

import json
import shutil
from pathlib import Path

import pytest
from tiny import write_vqgan
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.outputs import read_png_metadata
from vqclip.store import importer, integrity

NAME = "vqgan_imagenet_f16_16384"
CLIP = "Tiny-OpenAI-quickgelu"  # the tiny OpenAI archive's architecture (conftest)
runner = CliRunner()


@pytest.fixture
def peer(tiny_models, openai_archive, published, tmp_path):
    """What nerdyrodent/VQGAN-CLIP leaves: checkpoints/NAME.{yaml,ckpt}, and openai/CLIP's ~/.cache/clip."""
    ckpts = tmp_path / "VQGAN-CLIP" / "checkpoints"
    ckpts.mkdir(parents=True)
    shutil.copy(tiny_models["vqgan"], ckpts / f"{NAME}.yaml")
    shutil.copy(tiny_models["ckpt"], ckpts / f"{NAME}.ckpt")
    cache = tmp_path / "home" / ".cache" / "clip"
    cache.mkdir(parents=True)
    shutil.copy(openai_archive, cache / openai_archive.name)
    return ckpts, cache


def _models(*args):
    return runner.invoke(app, ["models", *args])


def test_a_peers_folder_is_imported_and_generates_without_a_copy(peer, tmp_path):
    ckpts, cache = peer
    result = _models("import", str(ckpts))
    assert result.exit_code == 0, result.stderr
    assert f"use --vqgan {NAME}" in result.stdout and len(result.stdout.strip().splitlines()) == 1
    result = _models("import", str(cache))
    assert result.exit_code == 0 and f"use --clip {CLIP}:openai" in result.stdout, result.stderr
    base = tmp_path / "checkpoints"
    assert not (base / f"{NAME}.ckpt").exists(), "the 1 GB checkpoint is used where it is, never copied"
    for f in (ckpts / f"{NAME}.yaml", ckpts / f"{NAME}.ckpt", cache / "Tiny-8.pt"):
        assert integrity.recorded(f, base)["sha256"] == integrity.sha256_file(f)  # hashes locked
    listed = _models("list")
    row = next(line for line in listed.stdout.splitlines() if line.strip().startswith(NAME))
    assert "present" in row and str(ckpts / f"{NAME}.ckpt") in row
    result = runner.invoke(
        app,
        [
            "generate",
            "a red circle",
            "--vqgan",
            NAME,
            "--clip",
            f"{CLIP}:openai",
            "--size",
            "32",
            "32",
            "--steps",
            "2",
            "--cutn",
            "2",
            "--offline",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.stderr
    meta = read_png_metadata(Path(result.stdout.strip().splitlines()[-1]))
    assert meta["vqgan"] == NAME and meta["clip"] == f"{CLIP}:openai"


def test_importing_again_is_quick_and_a_changed_file_is_checked_again(peer, monkeypatch):
    ckpts, _ = peer
    assert _models("import", str(ckpts)).exit_code == 0
    calls = []
    monkeypatch.setattr(importer, "add_vqgan", lambda *a, **k: calls.append(a[0]))
    again = _models("import", str(ckpts))
    assert again.exit_code == 0 and "already imported" in again.stdout and calls == []
    (ckpts / f"{NAME}.yaml").write_text((ckpts / f"{NAME}.yaml").read_text() + "\n")
    importer.import_models(ckpts)
    assert calls == [NAME], "a changed file is loaded and locked again"


def test_tamings_own_layout_is_found(tiny_models, tmp_path):
    run = tmp_path / "logs" / "vqgan_imagenet_f16_1024"
    (run / "configs").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    shutil.copy(tiny_models["vqgan"], run / "configs" / "model.yaml")
    shutil.copy(tiny_models["ckpt"], run / "checkpoints" / "last.ckpt")
    found = importer.import_models(tmp_path / "logs")
    assert [(f.use, f.files[1].name) for f in found] == [("--vqgan vqgan_imagenet_f16_1024", "last.ckpt")]


def test_what_cannot_be_imported_is_reported_and_the_rest_imported(tiny_models, openai_archive, tmp_path):
    folder = tmp_path / "mixed"
    write_vqgan(folder, "mine")
    (folder / "broken.yaml").write_text(json.dumps({"model": {"params": {}}}))
    (folder / "broken.ckpt").write_bytes(b"not a checkpoint")
    shutil.copy(openai_archive, folder / "unknown.pt")  # its hash is not on the list in this test
    result = _models("import", str(folder))
    assert result.exit_code == 1
    assert "use --vqgan mine" in result.stdout
    skipped = result.stderr.strip().splitlines()
    assert len(skipped) == 2 and all(line.startswith("skipped ") for line in skipped), skipped
    assert any("not a taming VQGAN config" in line for line in skipped)
    assert any("unknown.pt" in line and "not one OpenAI published" in line for line in skipped)


def test_a_folder_with_nothing_to_import_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        result = _models("import", str(folder))
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
