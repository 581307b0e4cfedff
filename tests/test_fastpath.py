"""The fast path's choices for the CPU: bf16 where AMX is, and how many threads."""

import os

import pytest
import torch

from vqclip import fastpath
from vqclip.config import SpeedConfig
from vqclip.errors import ConfigError
from vqclip.validate import validate_speed

CPU = torch.device("cpu")
CPU_HAS_AMX = fastpath.cpu_has_amx  # the real probe: conftest pins the answer to False for every test


@pytest.fixture()
def fresh_threads():
    """cpu_threads decides once per process; each test decides again and leaves torch's threads as it found them."""
    before = torch.get_num_threads()
    fastpath.cpu_threads.cache_clear()
    yield
    fastpath.cpu_threads.cache_clear()
    torch.set_num_threads(before)


@pytest.mark.parametrize("amx", [False, True])
def test_cpu_precision_follows_amx(monkeypatch, amx):
    monkeypatch.setattr(fastpath, "cpu_has_amx", lambda: amx)
    fast = fastpath.resolve(SpeedConfig(), CPU, 128, 128)
    assert (fast.decoder_bf16, fast.clip_bf16) == (amx, amx)
    assert fast.fused_attention and fast.clip_fused  # the same maths: on everywhere
    assert not fastpath.resolve(SpeedConfig(precision="fp32"), CPU, 128, 128).decoder_bf16
    assert fastpath.resolve(SpeedConfig(precision="bf16"), CPU, 128, 128).clip_bf16
    assert fastpath.resolve(SpeedConfig.reference(), CPU, 128, 128) == fastpath.REFERENCE


def test_amx_is_not_used_when_onednn_is_capped_below_it(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert CPU_HAS_AMX()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert not CPU_HAS_AMX()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_amx")
    assert CPU_HAS_AMX()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not CPU_HAS_AMX()


@pytest.mark.parametrize(
    "busy, load, threads", [(0.0, 0.1, 2), (1.9, 0.2, 2), (0.2, 3.0, 2), (1.0, 1.2, 1), (1.8, 6.0, 1), (5.0, 9.0, 1)]
)
def test_threads_leave_out_the_cores_others_keep_busy(monkeypatch, fresh_threads, busy, load, threads):
    """Two cores: both when either the sample or the 1-minute load says they are free, one when both say busy."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    monkeypatch.setattr(fastpath, "busy_cores", lambda: busy)
    monkeypatch.setattr(fastpath, "_load_1m", lambda: load)
    assert fastpath.cpu_threads()[0] == threads
    fastpath.set_threads(SpeedConfig(), CPU)
    assert torch.get_num_threads() == threads


def test_explicit_threads_win(monkeypatch, fresh_threads):
    monkeypatch.setattr(fastpath, "busy_cores", lambda: 0.0)
    monkeypatch.setattr(fastpath, "_load_1m", lambda: 0.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)  # what torch made of OMP_NUM_THREADS at start
    assert fastpath.cpu_threads() == (1, "OMP_NUM_THREADS")
    fastpath.set_threads(SpeedConfig(threads=2), CPU)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    fastpath.set_threads(SpeedConfig(threads=2), torch.device("cuda"))  # threads are for CPU runs only
    assert torch.get_num_threads() == 1
    with pytest.raises(ConfigError, match="speed.threads must be 0"):
        validate_speed(SpeedConfig(threads=-1))


def test_thread_choice_is_made_once_per_process(monkeypatch, fresh_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    readings = iter([0.0, 5.0])
    monkeypatch.setattr(fastpath, "busy_cores", lambda: next(readings))
    monkeypatch.setattr(fastpath, "_load_1m", lambda: None)
    first = fastpath.cpu_threads()
    assert fastpath.cpu_threads() == first  # the run's own load does not talk it down later


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux only")
def test_busy_cores_reads_the_machine():
    busy = fastpath.busy_cores(0.05)
    assert busy is not None and 0 <= busy <= os.cpu_count() + 1e-9
