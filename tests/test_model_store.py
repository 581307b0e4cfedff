"""Getting and trusting model files: registry downloads, the lock file, user models, offline mode, safe loading."""

import json
import time
import urllib.parse
from pathlib import Path

import pytest
import torch
import yaml
from fileserver import FileServer
from tiny import write_vqgan
from typer.testing import CliRunner

from vqclip.checkpoint import load_checkpoint
from vqclip.cli import app
from vqclip.clip import load_clip
from vqclip.errors import CheckpointError, DownloadError, ModelFilesMissing
from vqclip.store import download, hub, listing, registry, resolve_vqgan
from vqclip.store.registry import Source
from vqclip.vqgan import load_vqgan

NAME = "vqgan_imagenet_f16_16384"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    real = download.urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        assert urllib.parse.urlsplit(request.full_url).hostname == "127.0.0.1", request.full_url
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", guarded)
    monkeypatch.delenv("VQCLIP_MIRROR", raising=False)
    monkeypatch.setenv("VQCLIP_OFFLINE", "0")  # --offline sets it to 1 for the process; this restores it after


@pytest.fixture
def server(tiny_models, monkeypatch):
    """Serves the tiny VQGAN under the default model's file names, at 'official' URLs and on a mirror."""
    files = {"yaml": Path(tiny_models["vqgan"]).read_bytes(), "ckpt": Path(tiny_models["ckpt"]).read_bytes()}
    with FileServer() as s:
        for kind, data in files.items():
            s.files[f"/official/{kind}"] = data
            s.files[f"/mirror/{NAME}.{kind}"] = data
        entry = registry.VQGAN_MODELS[NAME]
        local = {k: Source((f"{s.url}/official/{k}",)) for k in ("yaml", "ckpt")}
        monkeypatch.setitem(
            registry.VQGAN_MODELS,
            NAME,
            registry.VQGANEntry(NAME, entry.description, size_mb=entry.size_mb, sources=local),
        )
        yield s


def models(*args):
    return runner.invoke(app, ["models", *args])


def test_download_fetches_both_files_and_locks_their_hashes(server, tmp_path):
    result = models("download", NAME)
    assert result.exit_code == 0, result.output
    ckdir = tmp_path / "checkpoints"
    assert result.stdout.split() == [str(ckdir / f"{NAME}.yaml"), str(ckdir / f"{NAME}.ckpt")]
    lock = json.loads((ckdir / "vqclip.lock.json").read_text())["files"]
    cache = [k for k in lock if k.startswith("cache/")]
    assert set(lock) == {f"{NAME}.yaml", f"{NAME}.ckpt", *cache} and len(cache) == 1
    assert lock[cache[0]]["source"] == f"converted from {NAME}.ckpt"
    assert lock[f"{NAME}.ckpt"]["source"] == "first download"
    assert lock[f"{NAME}.ckpt"]["size"] == (ckdir / f"{NAME}.ckpt").stat().st_size
    assert "B/s" in result.stderr or "MB" in result.stderr or "kB" in result.stderr  # the tqdm byte bar
    # already there: nothing is fetched again
    n = len(server.requests)
    assert models("download", NAME).exit_code == 0 and len(server.requests) == n


def test_mirror_option_is_tried_first(server):
    result = models("download", NAME, "--mirror", server.url + "/mirror")
    assert result.exit_code == 0, result.output
    assert server.paths_requested() == [f"/mirror/{NAME}.yaml", f"/mirror/{NAME}.ckpt"]


def test_lock_refuses_a_changed_file_and_a_different_redownload(server, tmp_path):
    assert models("download", NAME).exit_code == 0
    ckpt = tmp_path / "checkpoints" / f"{NAME}.ckpt"
    resolve_vqgan(NAME)  # unchanged: passes
    data = bytearray(ckpt.read_bytes())
    data[-100] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError,
        match=r"does not match the SHA-256 recorded in .*vqclip.lock.json.*it is not "
        rf"used; run `vqclip models download {NAME} --force`",
    ):
        resolve_vqgan(NAME)
    # the source now serves other bytes: trust on first use refuses them, and names the way out
    ckpt.unlink()
    server.files["/official/ckpt"] = bytes(data)
    with pytest.raises(DownloadError, match=rf"checksum mismatch.*run `vqclip models download {NAME} --force`"):
        hub.download_vqgan(NAME, retries=0, backoff=0)
    assert not ckpt.exists()


def test_offline_download_fails_fast_without_traffic(server):
    start = time.perf_counter()
    result = models("download", NAME, "--offline")
    assert result.exit_code == 2 and "offline mode forbids downloading" in result.stderr
    assert f"vqclip models download {NAME}" in result.stderr
    assert time.perf_counter() - start < 1 and server.requests == []


def test_generate_downloads_a_missing_default_on_first_use(server, tiny_models, tmp_path, monkeypatch):
    monkeypatch.setenv("VQCLIP_MIRROR", server.url + "/mirror")
    args = [
        "generate",
        "a red circle",
        "--vqgan",
        NAME,
        "--clip",
        tiny_models["clip"],
        "--size",
        "32",
        "32",
        "--steps",
        "2",
        "--cutn",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, [*args, "--offline"])
    assert result.exit_code == 2 and f"vqclip models download {NAME}" in result.stderr
    assert server.requests == []
    monkeypatch.setenv("VQCLIP_OFFLINE", "0")  # --offline lasts for the process; in-process runs share one
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert server.paths_requested() == [f"/mirror/{NAME}.yaml", f"/mirror/{NAME}.ckpt"]
    assert Path(result.stdout.strip().splitlines()[-1]).is_file()


def test_models_add_then_generate_by_name(tiny_models, tmp_path):
    result = models(
        "add", "mine", "--config", tiny_models["vqgan"], "--ckpt", tiny_models["ckpt"], "--description", "my tiny model"
    )
    assert result.exit_code == 0, result.output
    listing = models("list")
    assert listing.exit_code == 0 and "VQGAN (added)" in listing.stdout
    line = next(line for line in listing.stdout.splitlines() if line.strip().startswith("mine"))
    assert "present" in line and tiny_models["ckpt"] in line
    result = runner.invoke(
        app,
        [
            "generate",
            "a red circle",
            "--vqgan",
            "mine",
            "--clip",
            tiny_models["clip"],
            "--size",
            "32",
            "32",
            "--steps",
            "2",
            "--cutn",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output


def test_models_add_refuses_builtin_names_and_pairs_that_do_not_fit(tiny_models, tmp_path):
    result = models("add", NAME, "--config", tiny_models["vqgan"], "--ckpt", tiny_models["ckpt"])
    assert result.exit_code == 2 and "built-in" in result.stderr
    _, other = write_vqgan(tmp_path / "other", "other", n_embed=128)
    result = models("add", "bad", "--config", tiny_models["vqgan"], "--ckpt", str(other))
    assert result.exit_code == 1 and "does not fit" in result.stderr
    assert not registry.user_models_path().exists()


def test_unknown_name_lists_user_models_too(tiny_models):
    hub.add_vqgan("mine", tiny_models["vqgan"], tiny_models["ckpt"])
    result = models("download", "nope")
    assert result.exit_code == 2 and NAME in result.stderr
    with pytest.raises(Exception, match="mine"):
        resolve_vqgan("nope")


def test_models_list_shows_every_model_its_size_state_and_path(server, tmp_path):
    ckdir = tmp_path / "checkpoints"
    ckdir.mkdir()
    (ckdir / "wikiart_1024.ckpt.partial").write_bytes(b"x" * 5000)
    assert models("download", NAME).exit_code == 0
    result = models("list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ")}
    for name in [
        "vqgan_imagenet_f16_1024",
        "vqgan_gumbel_f8_8192",
        "wikiart_16384",
        "coco",
        "faceshq",
        "sflckr",
        "ViT-B-32-quickgelu:openai",
        "ViT-L-14:openai",
    ]:
        assert name in rows
    assert "present" in rows[NAME] and str(ckdir / f"{NAME}.ckpt") in rows[NAME] and "~" not in rows[NAME]
    assert "~376 MB" in rows["vqgan_gumbel_f8_8192"] and "missing" in rows["vqgan_gumbel_f8_8192"]
    assert "partial 5 kB" in rows["wikiart_1024"]
    assert "~1.7 GB" in rows["ViT-L-14:openai"] and str(ckdir / "clip") in rows["ViT-L-14:openai"]


def test_listing_knows_where_open_clip_fetches_the_usual_clips():
    import open_clip

    for spec, (repo, _) in listing._HF_REPOS.items():
        name, tag = spec.split(":")
        assert open_clip.get_pretrained_cfg(name, tag)["hf_hub"].rstrip("/") == repo


def test_offline_missing_clip_fails_fast_naming_the_file(monkeypatch, tmp_path):
    import open_clip  # noqa: F401  (imported ahead: the time measured is the failure, not the import)

    monkeypatch.setenv("VQCLIP_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelFilesMissing) as e:
        load_clip("ViT-B-32-quickgelu:openai", cache_dir=str(tmp_path / "clip"))
    assert time.perf_counter() - start < 1
    message = str(e.value)
    assert "offline" in message and "open_clip_pytorch_model.bin" in message
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message and str(tmp_path / "clip") in message


def test_clip_download_is_refused_offline_and_for_specs_without_weights(monkeypatch):
    assert models("download", "clip:ViT-B-32:random").exit_code == 2
    result = models("download", "clip:ViT-B-32-quickgelu:openai", "--offline")
    assert result.exit_code == 2 and "offline" in result.stderr


class _Payload:
    """Unpickling this runs code: it creates the file named by `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_malicious_checkpoint_is_refused_and_its_code_never_runs(tiny_models, tmp_path):
    state = torch.load(tiny_models["ckpt"], weights_only=True)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({**state, "callbacks": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_vqgan(tiny_models["vqgan"], evil)
    assert not marker.exists()
    # the payload is real: an unsafe load does run it
    torch.load(evil, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_checkpoint_is_a_clear_error_through_the_registry(tiny_models, tmp_path, keep):
    ckdir = tmp_path / "checkpoints"
    ckdir.mkdir()
    data = Path(tiny_models["ckpt"]).read_bytes()
    (ckdir / f"{NAME}.yaml").write_bytes(Path(tiny_models["vqgan"]).read_bytes())
    (ckdir / f"{NAME}.ckpt").write_bytes(data[: int(len(data) * keep)])
    config, ckpt = (lambda f: (f.config, f.weights))(resolve_vqgan(NAME))
    with pytest.raises(CheckpointError, match="corrupt or truncated.*download it again"):
        load_checkpoint(ckpt)


def test_transformer_checkpoint_yields_its_first_stage(tiny_models, tmp_path):
    """coco, faceshq and sflckr are whole taming transformers; their VQGAN is the first stage."""
    doc = yaml.safe_load(Path(tiny_models["vqgan"]).read_text())
    wrapped = {
        "model": {
            "target": "taming.models.cond_transformer.Net2NetTransformer",
            "params": {"first_stage_config": doc["model"], "transformer_config": {"target": "x"}},
        }
    }
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(wrapped))
    state = torch.load(tiny_models["ckpt"], weights_only=True)["state_dict"]
    torch.save(
        {
            "state_dict": {
                **{f"first_stage_model.{k}": v for k, v in state.items()},
                "transformer.tok_emb.weight": torch.zeros(4, 4),
            }
        },
        tmp_path / "t.ckpt",
    )
    model = load_vqgan(tmp_path / "t.yaml", tmp_path / "t.ckpt")
    assert torch.equal(model.codebook, state["quantize.embedding.weight"])


def test_download_caches_the_used_weights_as_safetensors_and_loads_them(server, tiny_models, tmp_path):
    assert models("download", NAME).exit_code == 0
    config, weights = (lambda f: (f.config, f.weights))(resolve_vqgan(NAME))
    assert weights.suffix == ".safetensors" and weights.parent == tmp_path / "checkpoints" / "cache"
    original = load_vqgan(tiny_models["vqgan"], tiny_models["ckpt"])
    cached = load_vqgan(config, weights)
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(), cached.state_dict().values()))
    # a tampered cache is caught like any locked file; being only a cache, it is dropped for the checkpoint
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    found = resolve_vqgan(NAME)
    assert found.weights == found.ckpt and not weights.exists() and found.cache_dir is not None


def test_added_model_resolves_to_its_cache(tiny_models, tmp_path):
    hub.add_vqgan("mine", tiny_models["vqgan"], tiny_models["ckpt"])
    found = resolve_vqgan("mine")
    config, weights, name = found.config, found.weights, found.name
    assert name == "mine" and config == Path(tiny_models["vqgan"]) and weights.suffix == ".safetensors"


def test_a_first_download_cut_short_is_never_saved_nor_locked(server, tmp_path):
    """No Content-Length and a dropped connection look like a whole file; only loading it shows it is not."""
    server.no_length.add("/official/ckpt")
    server.drop["/official/ckpt"] = [len(server.files["/official/ckpt"]) // 2] * 8
    ckdir = tmp_path / "checkpoints"
    result = models("download", NAME)
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error: ")]
    assert "what it sent is not the file" in line and "corrupt or truncated" in line and "--mirror" in line
    assert not (ckdir / f"{NAME}.ckpt").exists() and not (ckdir / f"{NAME}.ckpt.partial").exists()
    assert f"{NAME}.ckpt" not in json.loads((ckdir / "vqclip.lock.json").read_text())["files"]
    server.drop.clear()  # the server behaves again: the same command now works, and locks what loaded
    assert models("download", NAME).exit_code == 0
    assert load_vqgan(ckdir / f"{NAME}.yaml", ckdir / f"{NAME}.ckpt") is not None


def test_a_web_page_sent_as_the_yaml_is_refused(server, tmp_path):
    server.files["/official/yaml"] = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>"
    result = models("download", NAME)
    assert result.exit_code == 1 and "sent a web page instead of the file" in result.stderr
    assert not (tmp_path / "checkpoints" / f"{NAME}.yaml").exists()


def test_force_recovers_from_a_bad_hash_recorded_by_a_first_download(server, tmp_path, caplog):
    from vqclip.store import integrity

    ckdir = tmp_path / "checkpoints"
    bad = ckdir / f"{NAME}.ckpt"
    ckdir.mkdir()
    bad.write_bytes(b"the first half of a checkpoint")  # what an older vqclip locked after a cut-short download
    integrity.record(bad, ckdir, integrity.sha256_file(bad), source="first download")
    bad.unlink()
    result = models("download", NAME)
    assert result.exit_code == 1 and f"run `vqclip models download {NAME} --force`" in result.stderr
    result = models("download", NAME, "--force")
    assert result.exit_code == 0, result.output
    assert "differs from the file recorded" in result.stderr
    entry = json.loads((ckdir / "vqclip.lock.json").read_text())["files"][f"{NAME}.ckpt"]
    assert entry["source"] == "forced download" and entry["sha256"] == integrity.sha256_file(bad)
    resolve_vqgan(NAME)  # the lock and the file agree again
