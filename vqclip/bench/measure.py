"""What the benchmark measures with: step timers, the FLOP counter, peak memory, percentiles."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import fastpath
from ..optimize import LoopSettings, LoopState, optimize, random_latent
from ..plan import Plan
from ..runner import Models, make_guides
from ..state import StateWriter, write_state


class StepTimer:
    """Seconds between consecutive steps: CUDA events on a GPU (no host sync per step), perf_counter on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []
        self.cpu_marks: list[float] = []  # process CPU time: less disturbed by other processes than wall time

    def mark(self) -> None:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            self.marks.append(ev)
        else:
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

    def cpu_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.cpu_marks, self.cpu_marks[1:])]

    def seconds(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_of(fn: Callable[[], object]) -> int:
    """FLOPs torch's FlopCounterMode counts while fn runs (matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def count_flops(models: Models, plan: Plan, s: LoopSettings, device: torch.device, batch: int) -> int:
    """FLOPs of one step (forward and backward) of the real loop."""
    generators = [torch.Generator(device=device).manual_seed(i) for i in range(batch)]
    guides = make_guides(plan, models, [plan.prompts] * batch)  # prompt embedding is once per run, not per step
    z = random_latent(models.vqgan, plan.height, plan.width, generators)
    one = dataclasses.replace(s, steps=1, fast=fastpath.REFERENCE)  # the work, not how it is scheduled
    return flops_of(lambda: next(optimize(models.vqgan, guides, z, one, generators)))


def state_write_seconds(state: LoopState, meta: dict, repeats: int = 5) -> tuple[float, float, float]:
    """Median seconds of one image's state: the whole write (tensors to the CPU, safetensors, sidecar, both fsynced;
    an interrupt waits for it), its process CPU time, and what the loop pays for a frame's state, which is written
    on a background thread (`--save-state`). Each write makes a new tensors file, as a run does."""
    whole, cpu, handoff = [], [], []
    with tempfile.TemporaryDirectory(prefix="vqclip-bench-state-") as folder:
        for k in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            write_state(Path(folder), dataclasses.replace(state, step=state.step + 2 * k).image(0), meta)
            whole.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        writer = StateWriter(Path(folder))
        for k in range(repeats):
            start = time.perf_counter()
            writer.submit(dataclasses.replace(state, step=state.step + 2 * k + 1).image(0), meta)
            handoff.append(time.perf_counter() - start)
            writer.wait()  # a frame's interval is far longer than a write: the next one never waits
        writer.close()
    return statistics.median(whole), statistics.median(cpu), statistics.median(handoff)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: the CUDA allocator's high-water mark, or the process's RSS high-water mark on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)
