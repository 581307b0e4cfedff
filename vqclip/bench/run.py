"""`vqclip bench`: time the real generate loop on random-weight models of the real architectures.

Each speed figure comes with a quality ratio from the quality guard (`vqclip.bench.quality`), so a faster path
that optimises worse cannot pass unnoticed.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .. import fastpath
from ..config import SpeedConfig
from ..errors import ConfigError
from ..resume import state_meta
from ..runner import prepare_run, settings
from ..validate import validate_speed
from ..version import __version__
from .measure import StepTimer, _sync, count_flops, peak_memory, percentile, state_write_seconds
from .quality import GRAD_COSINE_MIN, QUALITY_MIN, quality
from .setup import bench_config, bench_steps, build_models, default_config, run_config

IMAGES_PER_HOUR_STEPS = 500  # images/hour assumes runs of this many steps


@dataclass
class BenchOptions:
    config: Optional[str] = None  # None: the default for the device
    steps: Optional[int] = None  # timed steps; None: 30 on CUDA, 8 on CPU, 3 for --smoke
    warmup: Optional[int] = None  # untimed steps first (at least 1); None: 5 on CUDA (compile, autotune), 1 elsewhere
    reference: bool = False  # the fp32 eager reference path instead of the fast path
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's mode with compile (vqclip.config.COMPILE_MODES)
    smoke: bool = False
    quality_steps: Optional[int] = None  # None: 20 on CUDA, 6 on CPU, 10 for --smoke
    quality_seeds: Optional[int] = None  # None: 8 (2 for --smoke); the ratio's error falls as 1/sqrt(seeds)
    speed: Optional[SpeedConfig] = None  # explicit switches (library use); overrides reference/compile/compile_mode


def _defaults(o: BenchOptions, device: torch.device) -> tuple[int, int, int]:
    cuda = device.type == "cuda"
    steps = o.steps or (3 if o.smoke else 30 if cuda else 8)
    warmup = max(1, o.warmup if o.warmup is not None else 5 if cuda else 1)
    qsteps = o.quality_steps or (10 if o.smoke else 20 if cuda else 6)
    if steps < 2:
        raise ConfigError("bench needs at least 2 timed steps for percentiles")
    return steps, warmup, qsteps


def run_bench(o: BenchOptions, device: torch.device, on_step: Optional[Callable[[int, int], None]] = None) -> dict:
    """Time the generate loop for one configuration and return the figures (the JSON of `vqclip bench`)."""
    bc = bench_config(o.config or default_config(device), o.smoke)
    steps, warmup, qsteps = _defaults(o, device)
    speed = o.speed or (
        SpeedConfig.reference() if o.reference else SpeedConfig(compile=o.compile, compile_mode=o.compile_mode)
    )
    validate_speed(speed)
    cfg, plan = run_config(bc, warmup + steps, speed)
    prepare_run(cfg, plan, device=device, batch=bc.batch, outputs=False, load=False)  # refuse what cannot fit

    start = time.perf_counter()
    models = build_models(bc, device)
    _sync(device)
    build_s = time.perf_counter() - start
    flops = count_flops(models, plan, settings(cfg, device), device, bc.batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    timer = StepTimer(device)
    timer.mark()  # step i's time runs from the previous mark; the first interval holds setup and is warm-up
    loop_start = time.perf_counter()
    first_step_s = None
    last = None
    for step in bench_steps(cfg, plan, models, device, [plan.prompts] * bc.batch, list(range(bc.batch))):
        if step.final:
            break
        last = step
        timer.mark()
        if first_step_s is None:
            _sync(device)
            first_step_s = build_s + time.perf_counter() - loop_start
        if on_step:
            on_step(step.i + 1, warmup + steps)
    times = timer.seconds()[warmup:]
    peak = peak_memory(device)

    median = statistics.median(times)
    start = time.perf_counter()
    meta = state_meta(cfg, plan, "still", models.fingerprints, device)  # hashes the weights: once per run
    fingerprint_s = time.perf_counter() - start
    state_s, state_cpu_s, handoff_s = state_write_seconds(last.state, meta)
    result = {
        "config": bc.name,
        "device": device_name(device),
        "path": "reference" if o.reference else "fast",
        "fast_path": dataclasses.asdict(settings(cfg, device).fast),
        "size": bc.size,
        "cutn": bc.cutn,
        "clip": list(bc.clip),
        "batch": bc.batch,
        "vqgan": bc.vqgan,
        "steps": len(times),
        "warmup": warmup,
        "s_per_step_median": median,
        "s_per_step_p10": percentile(times, 10),
        "s_per_step_p90": percentile(times, 90),
        "steps_per_s": 1 / median,
        "images_per_hour": 3600 / (IMAGES_PER_HOUR_STEPS * median) * bc.batch,
        "time_to_first_step_s": first_step_s,
        "peak_memory_bytes": peak,
        "flops_per_step": flops,
        "tflops_achieved": flops / median / 1e12,
        # one image's state file (an interrupt, or every saved frame with --save-state); the weights' fingerprint
        # it records is computed once, at a run's first state
        "state_write_s": state_s,
        "state_write_cpu_s": state_cpu_s,
        "state_write_share": state_s / median,
        "state_handoff_s": handoff_s,
        "state_handoff_share": handoff_s / median,
        "state_fingerprint_s": fingerprint_s,
    }
    if timer.cpu_marks:  # CPU seconds of all threads; on a quiet machine about threads x wall time
        result["cpu_s_per_step_median"] = statistics.median(timer.cpu_seconds()[warmup:])
    seeds = o.quality_seeds or (2 if o.smoke else 8)
    result.update(quality(bc, models, speed, device, qsteps, list(range(seeds))))
    result.update(environment(device))
    return result


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return device.type


def environment(device: torch.device) -> dict:
    """Versions and, on CPU, the load at the end of the run (other processes disturb CPU timings)."""
    import open_clip

    env = {
        "versions": {
            "vqclip": __version__,
            "torch": torch.__version__,
            "open_clip": open_clip.__version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda,
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        env["load_average_1m"] = os.getloadavg()[0]
        env["cpu_threads"] = torch.get_num_threads()
        env["cpu_threads_chosen_by"] = fastpath.cpu_threads()[1]  # OMP_NUM_THREADS, or how busy the cores were
    return env


def _se(r: dict) -> str:
    se = r.get("quality_ratio_se")
    return f" +- {se:.3f} over {len(r['quality_seeds'])} seeds" if se is not None else ""


def table(r: dict) -> str:
    """The figures as an aligned two-column table."""
    ratio = r["quality_ratio"]
    rows = [
        (
            "config",
            f"{r['config']} ({r['size']}x{r['size']}, cutn {r['cutn']}, {'+'.join(r['clip'])}, "
            f"batch {r['batch']}, {r['path']} path)",
        ),
        ("device", r["device"]),
        (
            "s/step median (p10-p90)",
            f"{r['s_per_step_median']:.4f} ({r['s_per_step_p10']:.4f}-"
            f"{r['s_per_step_p90']:.4f}) over {r['steps']} steps",
        ),
        ("steps/s", f"{r['steps_per_s']:.2f}"),
        (f"images/hour at {IMAGES_PER_HOUR_STEPS} steps", f"{r['images_per_hour']:.1f}"),
        ("time to first step", f"{r['time_to_first_step_s']:.2f} s"),
        ("peak memory", f"{r['peak_memory_bytes'] / 2**30:.2f} GiB"),
        ("FLOPs/step (fwd+bwd)", f"{r['flops_per_step'] / 1e9:.1f} GFLOP"),
        ("achieved", f"{r['tflops_achieved']:.3f} TFLOP/s"),
        (
            "state write (one image)",
            f"{r['state_write_s'] * 1000:.2f} ms = {r['state_write_share']:.2%} of a step, "
            f"{r['state_write_cpu_s'] * 1000:.2f} ms CPU; a frame's in the background: "
            f"{r['state_handoff_s'] * 1000:.3f} ms = {r['state_handoff_share']:.3%} of a step "
            f"(+{r['state_fingerprint_s'] * 1000:.0f} ms once: the weights' fingerprint)",
        ),
        (
            "quality ratio",
            (
                "n/a (reference loss did not drop)"
                if ratio is None
                else f"{ratio:.3f}{_se(r)} ({'pass' if r['quality_pass'] else 'FAIL'}, >= {QUALITY_MIN} and "
                f"gradient cosine >= {GRAD_COSINE_MIN} needed; cosine {r['grad_cosine']:.4f})"
            ),
        ),
    ]
    if "load_average_1m" in r:
        rows.append(("CPU time/step (all threads)", f"{r['cpu_s_per_step_median']:.3f} s"))
        if "cpu_threads_chosen_by" in r:
            rows.append(("CPU threads", f"{r['cpu_threads']} ({r['cpu_threads_chosen_by']})"))
        rows.append(("load average (1 min)", f"{r['load_average_1m']:.2f}"))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
