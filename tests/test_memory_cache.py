import json

import pytest
import torch

from vqclip import memory, memory_cache
from vqclip.bench import ARCHITECTURES
from vqclip.clip import register_clip_architectures
from vqclip.fastpath import FastPath
from vqclip.vqgan import read_vqgan_yaml

TINY = read_vqgan_yaml(ARCHITECTURES / "vqgan_tiny.yaml")


@pytest.fixture()
def counted(monkeypatch):
    """How often the estimate runs the models on the meta device (with a checkpoints folder to keep the cache in)."""
    register_clip_architectures(ARCHITECTURES)
    memory_cache.cache_file().parent.parent.mkdir()
    calls = {"vqgan": 0, "clip": 0}
    decoder, clip = memory._decoder_activation_bytes, memory._clip_bytes_per_cutout

    def count(kind, fn):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(memory, "_decoder_activation_bytes", count("vqgan", decoder))
    monkeypatch.setattr(memory, "_clip_bytes_per_cutout", count("clip", clip))
    return calls


def _estimate(**kw):
    return memory.estimate_bytes(TINY, 64, 48, clips=("vqclip-tiny-clip:random",), cutn=4, **kw)


def test_the_second_estimate_measures_nothing(counted):
    first = _estimate()
    assert counted == {"vqgan": 1, "clip": 1} and memory_cache.cache_file().is_file()
    assert _estimate() == first and counted == {"vqgan": 1, "clip": 1}
    _estimate(fast=FastPath(decoder_bf16=True, clip_bf16=True))  # other switches: measured for themselves
    assert counted == {"vqgan": 2, "clip": 2}
    memory.estimate_bytes(TINY, 96, 48, clips=("vqclip-tiny-clip:random",), cutn=8)  # another size: the decoder
    assert counted == {"vqgan": 3, "clip": 2}


@pytest.mark.parametrize("damage", ["not json {", '["a list"]', "bad-values"])
def test_a_damaged_cache_is_measured_again(counted, damage):
    first = _estimate()
    path = memory_cache.cache_file()
    if damage == "bad-values":
        entries = json.loads(path.read_text())
        path.write_text(json.dumps({k: [-1, "x"] for k in entries}))
    else:
        path.write_text(damage)
    assert _estimate() == first and counted == {"vqgan": 2, "clip": 2}
    assert _estimate() == first and counted == {"vqgan": 2, "clip": 2}  # and kept again


def test_an_unwritable_cache_costs_only_time(counted, monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("VQCLIP_CHECKPOINTS", str(blocked / "ckpts"))  # under a file: nothing can be made there
    assert _estimate() == _estimate() and counted == {"vqgan": 2, "clip": 2}


def test_no_checkpoints_folder_is_made_for_the_cache(counted):
    memory_cache.cache_file().parent.parent.rmdir()
    assert _estimate() == _estimate() and counted == {"vqgan": 2, "clip": 2}
    assert not memory_cache.cache_file().parent.parent.exists()


def test_entries_are_keyed_by_the_torch_version(counted, monkeypatch):
    _estimate()
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    _estimate()
    assert counted == {"vqgan": 2, "clip": 2}
