"""OpenAI's CLIP archives (vqclip.openai_clip): refused unless OpenAI published their hash, read without running
their code, equal to the archive's own model, cached once as safetensors, found in ~/.cache/clip."""

import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vqclip import clip_weights, openai_clip
from vqclip.cli import app
from vqclip.clip import check_clip, load_clip
from vqclip.errors import CheckpointError, UsageError
from vqclip.store import integrity
from vqclip.store.download import sha256_file

NAME = "Tiny-OpenAI-quickgelu"  # the tiny archive's architecture, registered with open_clip by the fixture
runner = CliRunner()


def _jit(path, as_stored=False):
    """The archive's own model, as openai/CLIP's clip.load(jit=True) gives it on CPU (the test trusts its file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.jit.load(str(path), map_location="cpu").eval()
    return model if as_stored else model.float()


def _publish(monkeypatch, path: Path, name: str = "Tiny/8") -> str:
    digest = sha256_file(path)
    monkeypatch.setitem(openai_clip.PUBLISHED, digest, openai_clip.OpenAIArchive(name, path.name, NAME))
    return digest


def test_the_published_table_is_openais_clip_py(published):
    """Every entry is a real model of openai/CLIP's _MODELS: its URL, file name and an open_clip name that exists."""
    import open_clip

    real = {sha: a for sha, a in openai_clip.PUBLISHED.items() if sha != published}
    assert len(real) == 9 and all(len(sha) == 64 for sha in real)
    assert openai_clip.url("40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af") == (
        "https://openaipublic.azureedge.net/clip/models/"
        "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt"
    )
    for sha, archive in real.items():
        assert archive.open_clip in open_clip.list_models() and archive.names[1] in open_clip.list_models()
        # open_clip lists the same URL for the openai tag: two independent copies of OpenAI's hashes agree
        assert open_clip.get_pretrained_cfg(archive.open_clip, "openai")["url"] == openai_clip.url(sha)


def test_reader_gives_the_archives_state_dict_without_running_it(openai_archive):
    assert openai_clip.is_torchscript(openai_archive)
    state = openai_clip.read_archive(openai_archive)
    ref = _jit(openai_archive, as_stored=True).state_dict()
    for key in ("input_resolution", "context_length", "vocab_size"):
        ref.pop(key)
    assert list(state) == list(ref)
    assert all(state[k].dtype == ref[k].dtype for k in ref)
    assert all(torch.equal(state[k], ref[k]) for k in ref)
    assert state["visual.conv1.weight"].dtype == torch.float16, "OpenAI stores most weights as float16"


def test_unknown_archive_is_refused_in_one_line_that_says_how_to_convert(openai_archive, no_model_loads):
    with pytest.raises(UsageError) as e:
        check_clip(f"{NAME}:{openai_archive}")
    message = str(e.value)
    assert "\n" not in message and "not one OpenAI published" in message and "jit=False" in message
    assert "weights_only=False" not in message and "unsafe" not in message


def test_unknown_archive_through_the_cli_exits_2_with_one_line(openai_archive, tiny_models, tiny_args):
    result = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--clip", f"{NAME}:{openai_archive}"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "not one OpenAI published" in result.stderr


def test_published_archive_loads_with_embeddings_equal_to_the_archives_own(openai_archive, published, monkeypatch):
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("vqclip ran the archive through torch.jit"))
    perceptor = load_clip(f"{NAME}:{openai_archive}")
    monkeypatch.undo()
    ref = _jit(openai_archive)
    assert perceptor.input_size == 32 and tuple(perceptor.mean.flatten().tolist()) == pytest.approx(openai_clip.MEAN)
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    normalised = (images - perceptor.mean) / perceptor.std
    tokens = perceptor.tokenizer(["a red circle", "a photo of a cat", ""])
    with torch.no_grad():
        ours_i, ours_t = perceptor.encode_image(images), perceptor.model.encode_text(tokens)
        theirs_i, theirs_t = ref.encode_image(normalised), ref.encode_text(tokens)
    for ours, theirs in ((ours_i, theirs_i), (ours_t, theirs_t)):
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4), (ours - theirs).abs().max()
        assert torch.nn.functional.cosine_similarity(ours, theirs).min() > 0.99999


def test_archive_is_read_once_then_loaded_from_its_safetensors_cache(openai_archive, published, tmp_path, monkeypatch):
    first = load_clip(f"{NAME}:{openai_archive}")
    base = tmp_path / "checkpoints"
    cache = integrity.cache_path(base, published, "clip")
    assert cache.is_file() and integrity.recorded(cache, base)["source"] == f"converted from {openai_archive.name}"
    assert integrity.recorded(openai_archive, base)["sha256"] == published
    ref = check_clip(f"{NAME}:{openai_archive}")
    assert ref.weights.path == cache and ref.weights.cache_dir is None
    monkeypatch.setattr(openai_clip, "read_archive", lambda p: pytest.fail("the archive was read again"))
    monkeypatch.setattr(clip_weights, "sha256_file", lambda p: pytest.fail(f"{p} was hashed again"))
    second = load_clip(ref)
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_wrong_architecture_for_the_name_is_named_before_any_load(openai_archive, published, no_model_loads):
    with pytest.raises(UsageError) as e:
        check_clip(f"ViT-B-32:{openai_archive}")
    assert str(e.value) == (
        f"{openai_archive} is OpenAI's Tiny/8 CLIP, not ViT-B-32; pass --clip {NAME}:{openai_archive}"
    )


def test_name_openai_uses_the_archive_in_the_openai_clip_cache(openai_archive, published, tmp_path):
    folder = tmp_path / "home" / ".cache" / "clip"
    folder.mkdir(parents=True)
    shutil.copy(openai_archive, folder / openai_archive.name)
    ref = check_clip(f"{NAME}:openai")
    assert ref.weights.source == folder / openai_archive.name and ref.build == NAME
    assert load_clip(ref).input_size == 32


def test_a_changed_file_in_the_openai_cache_is_not_used(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "home" / ".cache" / "clip"
    folder.mkdir(parents=True)
    (folder / "ViT-B-32.pt").write_bytes(b"not OpenAI's file")
    assert clip_weights.find_openai("ViT-B-32-quickgelu") is None
    assert "ViT-B-32.pt is not OpenAI's ViT-B/32" in caplog.text


def _rewrite(src: Path, dest: Path, data_pkl: bytes | None = None, keep: float = 1.0) -> Path:
    """A copy of an archive with another data.pkl, or cut short to `keep` of its bytes."""
    if data_pkl is None:
        data = src.read_bytes()
        dest.write_bytes(data[: int(len(data) * keep)])
        return dest
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, data_pkl if item.filename.endswith("/data.pkl") else zin.read(item))
    return dest


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_published_hash_does_not_make_the_reader_run_code(openai_archive, tmp_path, monkeypatch):
    """Even a file on the allow-list is read as data: a pickle that calls anything is refused."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker), protocol=2)
    evil = _rewrite(openai_archive, tmp_path / "evil.pt", payload)
    _publish(monkeypatch, evil)
    with pytest.raises(CheckpointError) as e:
        load_clip(f"{NAME}:{evil}")
    assert "exec" in str(e.value) and "never holds" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
    pickle.loads(payload)  # the payload is real: unpickled as usual, it does run
    assert marker.exists()


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_archive_is_a_one_line_error(openai_archive, tmp_path, monkeypatch, keep):
    cut = _rewrite(openai_archive, tmp_path / "cut.pt", keep=keep)
    if not openai_clip.is_torchscript(cut):  # the zip's index is at its end: most cuts lose it
        with pytest.raises(CheckpointError, match="corrupt or truncated") as e:
            load_clip(f"{NAME}:{cut}")
    else:
        _publish(monkeypatch, cut)
        with pytest.raises(CheckpointError, match="corrupt or truncated|could not be read") as e:
            load_clip(f"{NAME}:{cut}")
    assert "\n" not in str(e.value)


def test_generate_runs_on_an_openai_archive(openai_archive, published, tiny_args, tmp_path):
    result = runner.invoke(app, ["generate", "a red circle", *tiny_args, "--clip", f"{NAME}:{openai_archive}"])
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip().splitlines()[-1]).is_file()


@pytest.mark.parametrize(
    "open_clip_name, arch",
    [
        (
            "ViT-B-32-quickgelu",
            dict(
                embed_dim=512,
                image_size=224,
                patch_size=32,
                vision_width=768,
                vision_layers=12,
                text_width=512,
                text_layers=12,
            ),
        ),
        pytest.param(
            "ViT-L-14-336-quickgelu",
            dict(
                embed_dim=768,
                image_size=336,
                patch_size=14,
                vision_width=1024,
                vision_layers=24,
                text_width=768,
                text_layers=12,
            ),
            marks=pytest.mark.slow,
        ),
    ],
)
def test_openais_layout_of_the_real_sizes_is_what_open_clip_builds(open_clip_name, arch):
    """The state dict OpenAI's ViT archives hold (names and shapes, on the meta device: no memory) loads strictly
    into the open_clip architecture the table maps it to."""
    import open_clip
    from openai_archive import TINY, OpenAICLIP

    with torch.device("meta"):
        theirs = OpenAICLIP(**{**TINY, **arch}).state_dict()
    ours = open_clip.create_model(open_clip_name, pretrained=None, load_weights=False, device="meta").state_dict()
    theirs = {
        k: tuple(v.shape) for k, v in theirs.items() if k not in ("input_resolution", "context_length", "vocab_size")
    }
    assert theirs == {k: tuple(v.shape) for k, v in ours.items()}


def test_tensors_of_a_published_archive_that_are_no_weights_are_left_out(openai_archive, published, monkeypatch):
    real = openai_clip.read_archive
    monkeypatch.setattr(openai_clip, "read_archive", lambda p: {k: v for k, v in real(p).items() if k != "visual.proj"})
    with pytest.raises(UsageError, match="1 weights missing, e.g. visual.proj"):  # fails before anything is cached
        load_clip(f"{NAME}:{openai_archive}")
    monkeypatch.setattr(
        openai_clip, "read_archive", lambda p: {**real(p), "transformer.resblocks.0.attn_mask": torch.zeros(77, 77)}
    )
    assert load_clip(f"{NAME}:{openai_archive}").input_size == 32
