"""One run path: generate, batch, animate and the Python API prepare a run the same way (vqclip.runner)."""

from __future__ import annotations

import urllib.parse
from collections import Counter
from pathlib import Path

import pytest
import torch
from fileserver import FileServer
from typer.testing import CliRunner

from vqclip.cli import app
from vqclip.config import resolve
from vqclip.errors import ConfigError, OutOfMemory
from vqclip.store import download, integrity, registry
from vqclip.store.registry import Source

NAME = "vqgan_imagenet_f16_16384"
runner = CliRunner()
ENTRY_POINTS = ["generate", "batch", "animate", "api"]


@pytest.fixture(autouse=True)
def _local_only(monkeypatch):
    real = download.urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        assert urllib.parse.urlsplit(request.full_url).hostname == "127.0.0.1", request.full_url
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", guarded)
    monkeypatch.delenv("VQCLIP_MIRROR", raising=False)


@pytest.fixture
def mirror(tiny_models, monkeypatch):
    """The tiny VQGAN served under the default model's file names on a mirror; the registry's own sources 404."""
    with FileServer() as s:
        for kind, src in (("yaml", tiny_models["vqgan"]), ("ckpt", tiny_models["ckpt"])):
            s.files[f"/mirror/{NAME}.{kind}"] = Path(src).read_bytes()
        entry = registry.VQGAN_MODELS[NAME]
        gone = {k: Source((f"{s.url}/gone/{k}",)) for k in ("yaml", "ckpt")}
        monkeypatch.setitem(
            registry.VQGAN_MODELS,
            NAME,
            registry.VQGANEntry(NAME, entry.description, size_mb=entry.size_mb, sources=gone),
        )
        monkeypatch.setenv("VQCLIP_MIRROR", s.url + "/mirror")
        yield s


def _invoke(entry: str, tmp_path: Path, clip: str, vqgan: str = NAME, size=(32, 32), *extra: str):
    """Run one entry point on the tiny CLIP; returns (exit code, stderr) for the CLI, or raises for the API."""
    common = [
        "--vqgan",
        vqgan,
        "--clip",
        clip,
        "--size",
        str(size[0]),
        str(size[1]),
        "--steps",
        "2",
        "--cutn",
        "2",
        "--device",
        "cpu",
        *extra,
    ]
    out = str(tmp_path / "out")
    if entry == "api":
        from vqclip import generate

        cfg = resolve(
            options={
                "prompt": "a red circle",
                "model.vqgan": vqgan,
                "model.clip": [clip],
                "steps": 2,
                "width": size[0],
                "height": size[1],
                "cutouts.cutn": 2,
                "device": "cpu",
            }
        )
        steps = list(generate(cfg))
        return 0, f"{len(steps)} steps"
    if entry == "batch":
        jobs = tmp_path / "jobs.txt"
        jobs.write_text("a red circle\n")
        argv = ["batch", str(jobs), "--out", out, *common]
    elif entry == "animate":
        argv = ["animate", "a red circle", "--frames", "2", "--steps-per-frame", "1", "--out", out, *common]
    else:
        argv = ["generate", "a red circle", "--out", out, *common]
    result = runner.invoke(app, argv)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_downloads_a_missing_registry_vqgan_and_verifies_it(entry, mirror, tiny_models, tmp_path):
    code, err = _invoke(entry, tmp_path, tiny_models["clip"])
    assert code == 0, err
    assert mirror.paths_requested() == [f"/mirror/{NAME}.yaml", f"/mirror/{NAME}.ckpt"]
    base = tmp_path / "checkpoints"
    lock = integrity.read_lock(base)
    for kind in ("yaml", "ckpt"):
        assert lock[f"{NAME}.{kind}"]["sha256"] == integrity.sha256_file(base / f"{NAME}.{kind}")
    # the run's load cached the verified checkpoint as safetensors, locked too
    cache = [k for k in lock if k.startswith("cache/")]
    assert len(cache) == 1 and (base / cache[0]).is_file()


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_refuses_a_size_that_cannot_fit_before_any_model_loads(
    entry, tiny_models, tmp_path, monkeypatch, no_model_loads
):
    from vqclip import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 200 * 2**20)  # 512x512 needs ~1.4 GiB
    if entry == "api":
        with pytest.raises(ConfigError, match=r"512x512 needs at least .* but only .* is free; try --size \d+ \d+"):
            _invoke(entry, tmp_path, tiny_models["clip"], tiny_models["vqgan"], (512, 512))
        return
    code, err = _invoke(entry, tmp_path, tiny_models["clip"], tiny_models["vqgan"], (512, 512))
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "512x512 needs at least" in lines[0] and "try --size" in lines[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*")), "nothing is written"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_entry_point_gives_the_same_advice_for_an_oom_in_the_loop(entry, tiny_models, tmp_path, monkeypatch):
    from vqclip import optimize

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(optimize, "score", oom)
    advice = r"out of memory on cpu at 64x48; try --size \d+ \d+, fewer cutouts"
    if entry == "api":
        with pytest.raises(OutOfMemory, match=advice):
            _invoke(entry, tmp_path, tiny_models["clip"], tiny_models["vqgan"], (64, 48))
        return
    code, err = _invoke(entry, tmp_path, tiny_models["clip"], tiny_models["vqgan"], (64, 48))
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(lines) == 1, err
    assert __import__("re").search(advice, lines[0]), lines[0]


def test_each_model_file_is_verified_and_hashed_at_most_once_per_run(mirror, tiny_models, tmp_path, monkeypatch):
    """A first batch (downloading), then a second one over three jobs: each file checked once per run."""
    verified, hashed = Counter(), Counter()
    real_verify, real_hash = integrity.verify, integrity.sha256_file

    def verify(path, *args, **kwargs):
        verified[Path(path).name] += 1
        return real_verify(path, *args, **kwargs)

    def sha(path):
        hashed[Path(path).name] += 1
        return real_hash(path)

    monkeypatch.setattr(integrity, "verify", verify)
    monkeypatch.setattr(integrity, "sha256_file", sha)
    monkeypatch.setattr(download, "sha256_file", sha)
    jobs = tmp_path / "jobs.txt"
    args = [
        "--vqgan",
        NAME,
        "--clip",
        tiny_models["clip"],
        "--size",
        "32",
        "32",
        "--steps",
        "1",
        "--cutn",
        "2",
        "--device",
        "cpu",
    ]
    for run, prompts in enumerate(["a red circle\n", "a red circle\na blue square\na green triangle ## seed=3\n"]):
        verified.clear()
        hashed.clear()
        jobs.write_text(prompts)
        result = runner.invoke(app, ["batch", str(jobs), "--out", str(tmp_path / f"out{run}"), *args])
        assert result.exit_code == 0, result.output
        assert all(n == 1 for n in verified.values()), verified
        assert all(n == 1 for n in hashed.values()), hashed
        if run == 0:  # the download hashed each file as it arrived, the cache was hashed once as it was written
            # (from the download's own check that the file loads); the run then finds that cache by its stat
            assert all(n.endswith(".safetensors") for n in verified) and len(hashed) == 3, (verified, hashed)
    cache = [n for n in verified if n.endswith(".safetensors")]
    assert set(verified) == {f"{NAME}.yaml", f"{NAME}.ckpt", *cache} and len(cache) == 1, verified
    assert hashed == Counter(), "an unchanged file is not hashed again (its size and mtime are in the lock)"


def test_each_clip_is_checked_once_and_the_yaml_read_once_per_run(tiny_models, tmp_path, monkeypatch):
    from vqclip import clip, plan, vqgan

    checks, reads = Counter(), Counter()
    real_check, real_read = clip.check_clip, vqgan.read_vqgan_yaml

    def check(spec, *args):
        if not isinstance(spec, clip.ClipRef):  # a ClipRef is a spec checked already: passed through as it is
            checks[str(spec)] += 1
        return real_check(spec, *args)

    def read(path):
        reads[str(path)] += 1
        return real_read(path)

    monkeypatch.setattr(clip, "check_clip", check)
    monkeypatch.setattr(plan, "check_clip", check)
    monkeypatch.setattr(vqgan, "read_vqgan_yaml", read)
    monkeypatch.setattr(plan, "read_vqgan_yaml", read)
    code, err = _invoke("generate", tmp_path, tiny_models["clip"], tiny_models["vqgan"])
    assert code == 0, err
    assert list(checks.values()) == [1] and list(reads.values()) == [1], (checks, reads)


@pytest.mark.parametrize("entry", ["generate", "batch", "animate"])
def test_every_command_takes_mirror_as_an_option(entry, mirror, tiny_models, tmp_path, monkeypatch):
    """`--mirror URL` does what VQCLIP_MIRROR does, on every command that downloads on first use."""
    monkeypatch.delenv("VQCLIP_MIRROR")
    code, err = _invoke(entry, tmp_path, tiny_models["clip"], NAME, (32, 32), "--mirror", mirror.url + "/mirror")
    assert code == 0, err
    assert mirror.paths_requested() == [f"/mirror/{NAME}.yaml", f"/mirror/{NAME}.ckpt"]
