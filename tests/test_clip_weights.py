"""CLIP weights files that fail to load say why, in one line: wrong format, wrong architecture for the name,
truncated, refused as unsafe, or no weights at all (vqclip.clip_weights)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.clip import check_clip, load_clip
from vqclip.errors import CheckpointError, ModelFilesMissing, UsageError, VQClipError

runner = CliRunner()
OTHER = "Tiny-OpenAI-quickgelu"  # a registered tiny architecture (conftest) that tiny_models' CLIP is not


@pytest.fixture(autouse=True)
def _other_architecture(openai_archive):
    """The fixture that writes the tiny OpenAI archive also registers OTHER with open_clip."""


@pytest.fixture
def state(tiny_models):
    return load_file(str(Path(tiny_models["clip"].split(":", 1)[1]) / "open_clip_model.safetensors"))


def _tiny_dir(tiny_models) -> Path:
    return Path(tiny_models["clip"].split(":", 1)[1])


def _fails(spec: str, error=VQClipError) -> str:
    with pytest.raises(error) as e:
        load_clip(spec)
    message = str(e.value)
    assert "\n" not in message, message
    for advice in ("weights_only=False", "unsafely", "can still be loaded", "\x1b["):  # torch's advice, its colours
        assert advice not in message, message
    return message


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_clip_file_that_pickles_code_is_refused_without_torchs_unsafe_advice(tiny_models, state, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil_clip"
    folder.mkdir()
    shutil.copy(_tiny_dir(tiny_models) / "open_clip_config.json", folder)
    torch.save({**state, "extra": _Payload(marker)}, folder / "open_clip_pytorch_model.bin")
    for spec in (f"local-dir:{folder}", f"{OTHER}:{folder / 'open_clip_pytorch_model.bin'}"):
        message = _fails(spec, CheckpointError)
        assert "it pickles exec, not only tensors" in message and "could run arbitrary code" in message
    assert not marker.exists()
    torch.load(folder / "open_clip_pytorch_model.bin", weights_only=False)  # the payload is real
    assert marker.exists()


def test_weights_of_another_architecture_name_the_mismatch(tiny_models, state, tmp_path):
    pt = tmp_path / "weights.pt"
    torch.save(state, pt)
    for path in (pt, _tiny_dir(tiny_models) / "open_clip_model.safetensors"):
        message = _fails(f"{OTHER}:{path}", UsageError)
        assert f"CLIP weights {path} do not fit {OTHER}" in message and "another architecture" in message
        assert "is (" in message  # the first weight whose shape differs, with both shapes


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("keep", [0.05, 0.6])
def test_a_truncated_weights_file_says_so(tiny_models, state, tmp_path, suffix, keep):
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".pt":
        torch.save(state, whole)
    else:
        shutil.copy(_tiny_dir(tiny_models) / "open_clip_model.safetensors", whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * keep)])
    folder = tmp_path / "cut_dir"
    folder.mkdir()
    shutil.copy(_tiny_dir(tiny_models) / "open_clip_config.json", folder)
    shutil.copy(cut, folder / f"open_clip_model{suffix}" if suffix == ".safetensors" else folder / "model.pth")
    assert "corrupt or truncated" in _fails(f"local-dir:{folder}", CheckpointError)


@pytest.mark.parametrize("content", [b"<html>404 Not Found</html>", b"\x89PNG\r\n\x1a\n" + bytes(64), b""])
def test_a_file_that_is_no_weights_file_says_what_it_is_not(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    assert "is not a weights file" in _fails(f"{OTHER}:{path}", UsageError)


def test_a_local_dir_with_only_its_config_does_not_run_on_random_weights(tiny_models, tmp_path, no_model_loads):
    folder = tmp_path / "config_only"
    folder.mkdir()
    shutil.copy(_tiny_dir(tiny_models) / "open_clip_config.json", folder)
    with pytest.raises(ModelFilesMissing) as e:
        check_clip(f"local-dir:{folder}")
    assert "no weights" in str(e.value) and f"local-dir:{folder}:random" in str(e.value)


def test_a_local_dir_runs_on_random_weights_only_when_asked(tiny_models, tmp_path):
    folder = tmp_path / "config_only"
    folder.mkdir()
    shutil.copy(_tiny_dir(tiny_models) / "open_clip_config.json", folder)
    a, b = load_clip(f"local-dir:{folder}:random"), load_clip(tiny_models["clip"])
    assert a.name == f"local-dir:{folder}:random" and a.input_size == b.input_size
    assert not torch.equal(a.model.visual.proj, b.model.visual.proj)


def test_generate_with_a_config_only_clip_folder_exits_2_in_one_line(tiny_models, tiny_args, tmp_path):
    folder = tmp_path / "config_only"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(
        json.dumps(json.loads((_tiny_dir(tiny_models) / "open_clip_config.json").read_text()))
    )
    result = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--clip", f"local-dir:{folder}"])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no weights" in result.stderr and not (tmp_path / "out").exists()


def test_a_state_dict_saved_from_ddp_or_with_openais_extras_loads(tiny_models, state, tmp_path):
    path = tmp_path / "ddp.pt"
    extras = {"input_resolution": torch.tensor(32), "context_length": torch.tensor(77)}
    torch.save({"state_dict": {f"module.{k}": v for k, v in {**state, **extras}.items()}}, path)
    folder = tmp_path / "ddp_dir"
    folder.mkdir()
    shutil.copy(_tiny_dir(tiny_models) / "open_clip_config.json", folder)
    shutil.copy(path, folder / "open_clip_pytorch_model.bin")
    loaded = load_clip(f"local-dir:{folder}")
    assert torch.equal(loaded.model.visual.proj, state["visual.proj"])
