import os

import pytest
import torch
from tiny import write_clip, write_vqgan

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach for the network
# the CPU's default precision follows AMX (see _one_cpu_path); CLI runs in child processes inherit this cap, so they
# take the same fp32 path as the tests' own process and a run resumed in another process matches it pixel for pixel
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
# tiny models gain nothing from threads, and two busy processes on 2 cores slow each other ~50x
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_cpu_path(monkeypatch):
    """The CPU's default precision follows AMX (bf16 where it has it, vqclip.fastpath): tests take the fp32 default
    on every machine, so their figures do not depend on the CPU; tests/test_fastpath.py tests the choice itself."""
    from vqclip import fastpath

    monkeypatch.setattr(fastpath, "cpu_has_amx", lambda: False)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Files of a tiny VQGAN and a tiny CLIP, made once per session."""
    root = tmp_path_factory.mktemp("models")
    config, ckpt = write_vqgan(root / "vqgan")
    clip_dir = write_clip(root / "clip")
    return {"vqgan": str(config), "ckpt": str(ckpt), "clip": f"local-dir:{clip_dir}", "root": root}


@pytest.fixture(scope="session")
def openai_archive(tmp_path_factory):
    """A tiny random CLIP saved in openai/CLIP's own format (a TorchScript archive), and the same architecture as
    an open_clip model config registered under the name `Tiny-OpenAI-quickgelu` (see tests/openai_archive.py)."""
    import json

    from openai_archive import OPEN_CLIP_CONFIG, write_openai_clip

    from vqclip.clip import register_clip_architectures

    root = tmp_path_factory.mktemp("openai")
    (root / "configs").mkdir()
    (root / "configs" / "Tiny-OpenAI-quickgelu.json").write_text(json.dumps(OPEN_CLIP_CONFIG))
    register_clip_architectures(root / "configs")
    return write_openai_clip(root / "Tiny-8.pt")


@pytest.fixture
def published(openai_archive, monkeypatch):
    """The tiny archive's SHA-256 on vqclip's list of OpenAI's published archives, as the real ones are."""
    from vqclip import openai_clip
    from vqclip.store.download import sha256_file

    digest = sha256_file(openai_archive)
    monkeypatch.setitem(
        openai_clip.PUBLISHED, digest, openai_clip.OpenAIArchive("Tiny/8", openai_archive.name, "Tiny-OpenAI-quickgelu")
    )
    return digest


@pytest.fixture
def tiny_args(tiny_models, tmp_path):
    """CLI arguments that run generate on the tiny models, writing under tmp_path."""
    return [
        "--vqgan",
        tiny_models["vqgan"],
        "--clip",
        tiny_models["clip"],
        "--size",
        "32",
        "32",
        "--steps",
        "4",
        "--cutn",
        "4",
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    ]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Every user path points into a tmp dir."""
    monkeypatch.setenv("VQCLIP_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # ~/.cache/clip, where openai/CLIP keeps its downloads
    # --offline sets this for the whole process; monkeypatch removes it again after each test
    monkeypatch.delenv("VQCLIP_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if model weights are read or a model is built on a real device.

    Patched where it happens (torch.load, safetensors, open_clip's factory, the VQGAN's constructor), not where a
    vqclip module names a loader, so no import-time binding can slip past it. The memory estimate builds models on
    the `meta` device only, which stays allowed.
    """
    import open_clip
    import safetensors.torch

    from vqclip.vqgan import VQGAN

    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded for input that could be checked without one")

    monkeypatch.setattr(torch, "load", fail)
    monkeypatch.setattr(safetensors.torch, "load_file", fail)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fail)
    create, build = open_clip.create_model, VQGAN.__init__

    def on_meta_only(real):
        def guarded(*args, **kwargs):
            if str(kwargs.get("device", torch.get_default_device())) != "meta":
                fail()
            return real(*args, **kwargs)

        return guarded

    monkeypatch.setattr(open_clip, "create_model", on_meta_only(create))
    monkeypatch.setattr(VQGAN, "__init__", on_meta_only(build))
