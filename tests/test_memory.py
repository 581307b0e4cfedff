"""The memory estimate: measured against real CPU steps, and what the fast path's switches do to it."""

import pytest
import torch

from vqclip import memory
from vqclip.batch import default_batch_size, plan_jobs
from vqclip.bench import ARCHITECTURES
from vqclip.config import Config
from vqclip.fastpath import FastPath
from vqclip.jobs import Job
from vqclip.plan import check
from vqclip.runner import load_models, prepare_run
from vqclip.vqgan import read_vqgan_yaml

F16 = ARCHITECTURES / "vqgan_imagenet_f16_16384.yaml"
GIB = 2**30


def _step_peak(cfg: Config, models, device: torch.device) -> int:
    """Peak bytes torch's CPU allocator holds during one generate step, above what it held before (profiler
    memory events in time order: exact allocator bytes, unlike RSS, which glibc's heap reuse makes vary)."""
    plan = check(cfg)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in prepare_run(cfg, plan, device=device, outputs=False, models=models).steps():
            pass
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, change in events:
        live += change
        peak = max(peak, live)
    return peak


@pytest.mark.slow
@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_is_within_15_percent_of_a_real_steps_peak(tiny_models, checkpointing):
    """The estimate against the allocator's peak in a real generate step at 384x384 (hundreds of MiB)."""

    def config(side):
        cfg = Config(prompt="a red circle", width=side, height=side, steps=1, seed=0, device="cpu")
        cfg.model.vqgan, cfg.model.clip, cfg.cutouts.cutn = tiny_models["vqgan"], [tiny_models["clip"]], 8
        cfg.speed.checkpoint_pixels = 1 if checkpointing else 0
        return cfg

    cpu = torch.device("cpu")
    models = load_models(check(config(32)), cpu, None)
    _step_peak(config(32), models, cpu)  # warm up: lazily built state is not the step's
    big = config(384)
    measured = _step_peak(big, models, cpu)
    weights = sum(memory._weight_bytes(m) for m in (models.vqgan, *models.perceptors))  # loaded before the step
    estimate = memory.Workload.of(check(big), big, cpu).bytes() - weights
    assert measured > 300 * 2**20, measured  # large enough to mean something
    assert 0.85 <= estimate / measured <= 1.15, (estimate, measured)


def _f16(size, fast, clips=("ViT-B-32-quickgelu",), cutn=64, batch=1):
    return memory.estimate_bytes(read_vqgan_yaml(F16), size, size, batch, fast=fast, clips=clips, cutn=cutn)


CUDA_FAST = FastPath(decoder_bf16=True, clip_bf16=True, checkpoint=True, fused_attention=True)


def test_fast_path_fits_1024_in_24_gb_and_2048_in_80_gb_where_fp32_eager_does_not():
    """Issue 5's memory targets, as far as an estimate of the real architectures (on meta) can say."""
    assert _f16(1024, CUDA_FAST) < 24e9 < _f16(1024, FastPath())
    assert _f16(2048, CUDA_FAST) < 80e9 < _f16(2048, FastPath())


def test_each_memory_switch_lowers_the_estimate():
    plain = _f16(512, FastPath(), clips=())
    assert _f16(512, FastPath(checkpoint=True), clips=()) < 0.7 * plain
    assert _f16(512, FastPath(decoder_bf16=True), clips=()) < 0.6 * plain
    # fused attention drops the [hw, hw] matrix of the mid block: 4096 tokens at 1024x1024 -> >= 64 MiB
    assert _f16(1024, FastPath(), clips=()) - _f16(1024, FastPath(fused_attention=True), clips=()) > 64 * 2**20


def test_clip_share_is_weights_plus_a_fixed_cost_per_cutout():
    fast = FastPath()
    no_clip = _f16(256, fast, clips=())
    c8, c16, c24 = (_f16(256, fast, cutn=n) for n in (8, 16, 24))
    assert c16 - c8 == c24 - c16 > 8 * 2**20  # linear in cutn, and ViT-B/32 keeps over 1 MiB per cutout
    assert c8 - no_clip - (c16 - c8) > 300 * 2**20  # ViT-B/32's ~150M parameters, loaded as fp32
    assert _f16(256, fast, cutn=8, batch=2) - c8 == pytest.approx(c8 - _f16(256, fast, cutn=8, batch=0), abs=8)


def test_default_batch_size_follows_free_cuda_memory(tiny_models, monkeypatch):
    base = Config(width=64, height=64, steps=2)
    base.model.vqgan, base.model.clip = tiny_models["vqgan"], [tiny_models["clip"]]
    planned = plan_jobs([Job(i, f"prompt {i}", {}, f"test:{i}") for i in range(40)], base, 0)
    cuda = torch.device("cuda")
    work = memory.Workload.of(planned[0].plan, planned[0].cfg, cuda)
    one, per_image = work.bytes(), memory.Workload.of(planned[0].plan, planned[0].cfg, cuda, 2).bytes() - work.bytes()
    for images in (1, 5, 12):
        free = (one + (images - 1) * per_image + per_image // 2) / memory.SUGGEST_SHARE
        monkeypatch.setattr(memory, "available_bytes", lambda device, free=free: free)
        monkeypatch.setattr("vqclip.batch.available_bytes", lambda device, free=free: free)
        assert default_batch_size(cuda, planned) == images
    assert default_batch_size(torch.device("cpu"), planned) == 1
    assert default_batch_size(cuda, planned[:3]) == 3  # never more than the jobs there are


_NO_REAL_MEMORY = """
import copy, json, resource, sys
from pathlib import Path
from tiny import TINY_CLIP_CFG, TINY_DDCONFIG
from vqclip import memory
from vqclip.vqgan import VQGANSpec

def folder(name, **text):
    cfg = copy.deepcopy(TINY_CLIP_CFG)
    cfg["model_cfg"]["text_cfg"].update(text)
    d = Path(sys.argv[1]) / name
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps(cfg))
    return f"local-dir:{d}:random"  # shapes only: no weights needed

def rss():
    # the peak since exec (VmHWM): ru_maxrss would start at the forking parent's RSS and could hide any growth
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) * 1024

small, big = folder("small"), folder("big", context_length=16384)  # a causal mask of 16384^2 floats: 1 GiB
spec = VQGANSpec(dict(TINY_DDCONFIG), 64, 32)
memory.estimate_bytes(spec, 32, 32, clips=[small], cutn=2)  # imports and builds once: the baseline
before = rss()
need = memory.estimate_bytes(spec, 32, 32, clips=[big], cutn=2)
huge = VQGANSpec({**TINY_DDCONFIG, "ch": 4096, "z_channels": 4096}, 2**22, 4096)  # ~15 GB of weights
need_huge = memory.estimate_bytes(huge, 64, 64)
print(json.dumps({"grew": rss() - before, "need": need, "need_huge": need_huge}))
"""


def test_an_absurd_config_is_estimated_without_real_memory(tmp_path):
    """The estimate builds every model on meta only, so an absurd config is refused before any memory is used."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    env = {**__import__("os").environ, "PYTHONPATH": f"{tests.parent}{__import__('os').pathsep}{tests}"}
    out = subprocess.run(
        [sys.executable, "-c", _NO_REAL_MEMORY, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["need_huge"] > 10 * GIB  # what the config asks for is counted ...
    assert result["grew"] < 200 * 2**20, result  # ... none of it allocated (it was 6 GB for a 40000 context)
