"""`vqclip bench`: time the real generate loop on random-weight models of the real architectures.

Speed does not depend on the weights' values, so the models are built from a fixed seed with no download:
the ImageNet f16_16384 VQGAN from its published architecture (vqclip/architectures) and open_clip's CLIPs.
Each speed figure comes with a quality ratio from a deterministic evaluator (`quality`), so a faster path
that optimises worse cannot pass unnoticed.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from . import __version__, fastpath
from .config import Config, CutoutConfig, ModelConfig, SpeedConfig, validate_speed
from .cutouts import apply_crops
from .errors import ConfigError, UnknownNameError
from .memory import Workload, check_memory
from .models import build_vqgan, load_clip, read_vqgan_yaml, register_clip_architectures
from .optimize import Guide, LoopSettings, optimize, random_latent, synth
from .pipeline import Models, Plan, generate_batch, make_guides, settings
from .prompts import parse_prompts

ARCHITECTURES = Path(__file__).resolve().parent / "architectures"
PROMPT = "a lighthouse on a cliff at dusk, oil painting"
IMAGES_PER_HOUR_STEPS = 500  # images/hour assumes runs of this many steps
CODEBOOK_STD = 0.05
QUALITY_MIN = 0.95  # a path's quality ratio must reach this for its speed to count


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration: image size, cutouts, CLIP models, images per step."""

    name: str
    size: int
    cutn: int
    clip: tuple[str, ...] = ("ViT-B-32-quickgelu",)
    batch: int = 1
    vqgan: str = "vqgan_imagenet_f16_16384"  # an architecture file in vqclip/architectures


BENCH_CONFIGS = {c.name: c for c in [
    BenchConfig("S", 256, 32),
    BenchConfig("S8", 256, 32, batch=8),
    BenchConfig("M", 512, 64),
    BenchConfig("M2", 512, 64, ("ViT-B-16-quickgelu", "ViT-B-32-quickgelu")),
    BenchConfig("L", 1024, 64),
    BenchConfig("CPU", 128, 8),
]}
# --smoke: the same code path on tiny models, for tests and a quick check that everything runs
SMOKE = BenchConfig("smoke", 32, 4, ("vqclip-tiny-clip",), vqgan="vqgan_tiny")


def default_config(device: torch.device) -> str:
    return "S" if device.type == "cuda" else "CPU"


def bench_config(name: str, smoke: bool = False) -> BenchConfig:
    if smoke:
        return SMOKE
    if name not in BENCH_CONFIGS:
        raise UnknownNameError("bench config", name, BENCH_CONFIGS)
    return BENCH_CONFIGS[name]


# ---------------------------------------------------------------------------------------------------------
# models and the run's config


def build_models(bc: BenchConfig, device: torch.device, seed: int = 0) -> Models:
    """Random-weight models of bc's architectures; the same seed always gives the same weights."""
    register_clip_architectures(ARCHITECTURES)
    torch.manual_seed(seed)
    vqgan = build_vqgan(read_vqgan_yaml(ARCHITECTURES / f"{bc.vqgan}.yaml"), name=bc.vqgan)
    with torch.no_grad():  # spread like a trained codebook, so steps of lr 0.1 change codes (the default
        vqgan.codebook.normal_(0, CODEBOOK_STD)  # init is a ball of radius 1/n_embed: no step leaves a code)
    vqgan = vqgan.eval().requires_grad_(False).to(device)
    perceptors = []
    for name in bc.clip:
        torch.manual_seed(seed)
        perceptors.append(load_clip(f"{name}:random", device))
    return Models(vqgan, perceptors, bc.vqgan)


def run_config(bc: BenchConfig, steps: int, speed: SpeedConfig) -> tuple[Config, Plan]:
    register_clip_architectures(ARCHITECTURES)  # the plan's CLIP names must resolve (memory estimate)
    cfg = Config(prompt=PROMPT, width=bc.size, height=bc.size, steps=steps, seed=0, device="auto",
                 model=ModelConfig(vqgan=bc.vqgan, clip=[f"{c}:random" for c in bc.clip]),
                 cutouts=CutoutConfig(cutn=bc.cutn), speed=speed)
    yaml = ARCHITECTURES / f"{bc.vqgan}.yaml"
    plan = Plan(yaml, yaml, bc.vqgan, read_vqgan_yaml(yaml), list(cfg.model.clip), parse_prompts(PROMPT), [],
                bc.size, bc.size)
    return cfg, plan


# ---------------------------------------------------------------------------------------------------------
# measurements


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


# ---------------------------------------------------------------------------------------------------------
# the quality guard


def fixed_views(n: int) -> torch.Tensor:
    """[6, 2, 3] crop matrices: the whole image, its four quadrants and its centre half; no randomness."""
    boxes = [(1.0, 0.0, 0.0)] + [(0.5, x, y) for x in (-0.5, 0.5) for y in (-0.5, 0.5)] + [(0.5, 0.0, 0.0)]
    theta = torch.zeros(len(boxes), 2, 3)
    for i, (scale, x, y) in enumerate(boxes):
        theta[i, 0, 0] = theta[i, 1, 1] = scale
        theta[i, 0, 2], theta[i, 1, 2] = x, y
    return theta.expand(n, -1, -1, -1)


@torch.no_grad()
def evaluate(vqgan, guides: Sequence[Guide], z: torch.Tensor) -> torch.Tensor:
    """Deterministic loss per image [B]: fp32, the quantised latent's image, fixed views, no augmentation."""
    image = synth(vqgan, z)  # synth's default is the fp32 reference path
    total = image.new_zeros(image.shape[0])
    for guide in guides:
        theta = fixed_views(image.shape[0]).to(image.device)
        crops = apply_crops(image, theta, guide.perceptor.input_size)
        embeds = guide.perceptor.encode_image(crops).float().view(image.shape[0], theta.shape[1], -1)
        for b, targets in enumerate(guide.targets):
            for target in targets:
                total[b] = total[b] + target(embeds[b])
    return total


def loss_drop(models: Models, plan: Plan, cfg: Config, device: torch.device, seeds: Sequence[int]) -> float:
    """Mean drop of the evaluator's loss from step 0 to step cfg.steps over seeds, on cfg's speed path."""
    drops = []
    for seed in seeds:
        final = None
        for step in generate_batch(cfg, plan, models, device, [plan.prompts], [seed]):
            final = step
        guides = make_guides(plan, models, [plan.prompts])
        z0 = random_latent(models.vqgan, plan.height, plan.width, [torch.Generator(device=device).manual_seed(seed)])
        drops.append(float((evaluate(models.vqgan, guides, z0) - evaluate(models.vqgan, guides, final.extras["z"]))
                           .mean()))
    return statistics.fmean(drops)


def quality(bc: BenchConfig, models: Models, speed: SpeedConfig, device: torch.device, steps: int,
            seeds: Sequence[int]) -> dict:
    """quality_ratio = this path's loss drop / the fp32 eager reference path's, on the same seeds."""
    cfg, plan = run_config(bc, steps, speed)
    fast = settings(cfg, device).fast
    drop = loss_drop(models, plan, cfg, device, seeds)
    if fast == fastpath.REFERENCE:  # the very same code path: the ratio is 1 by construction
        ref = drop
    else:
        ref_cfg, _ = run_config(bc, steps, SpeedConfig.reference())
        # the same weights: the reference run switches layout, attention and checkpointing back itself, but a
        # compiled module stays compiled, so only then are the models built again
        ref_models = build_models(bc, device) if fast.compile else models
        ref = loss_drop(ref_models, plan, ref_cfg, device, seeds)
    ratio = drop / ref if ref > 0 else None
    return {"quality_ratio": ratio, "loss_drop": drop, "reference_loss_drop": ref, "quality_steps": steps,
            "quality_seeds": list(seeds), "quality_pass": ratio is not None and ratio >= QUALITY_MIN}


# ---------------------------------------------------------------------------------------------------------
# the benchmark


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
    quality_seeds: int = 2
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
    speed = o.speed or (SpeedConfig.reference() if o.reference else
                        SpeedConfig(compile=o.compile, compile_mode=o.compile_mode))
    validate_speed(speed)
    cfg, plan = run_config(bc, warmup + steps, speed)
    check_memory(Workload.of(plan, cfg, device, bc.batch))  # refuse up front what cannot fit

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
    for step in generate_batch(cfg, plan, models, device, [plan.prompts] * bc.batch, list(range(bc.batch))):
        if step.final:
            break
        timer.mark()
        if first_step_s is None:
            _sync(device)
            first_step_s = build_s + time.perf_counter() - loop_start
        if on_step:
            on_step(step.i + 1, warmup + steps)
    times = timer.seconds()[warmup:]
    peak = peak_memory(device)

    median = statistics.median(times)
    result = {
        "config": bc.name, "device": device_name(device), "path": "reference" if o.reference else "fast",
        "fast_path": dataclasses.asdict(settings(cfg, device).fast),
        "size": bc.size, "cutn": bc.cutn, "clip": list(bc.clip), "batch": bc.batch, "vqgan": bc.vqgan,
        "steps": len(times), "warmup": warmup,
        "s_per_step_median": median, "s_per_step_p10": percentile(times, 10), "s_per_step_p90": percentile(times, 90),
        "steps_per_s": 1 / median,
        "images_per_hour": 3600 / (IMAGES_PER_HOUR_STEPS * median) * bc.batch,
        "time_to_first_step_s": first_step_s,
        "peak_memory_bytes": peak,
        "flops_per_step": flops, "tflops_achieved": flops / median / 1e12,
    }
    if timer.cpu_marks:  # CPU seconds of all threads; on a quiet machine about threads x wall time
        result["cpu_s_per_step_median"] = statistics.median(timer.cpu_seconds()[warmup:])
    result.update(quality(bc, models, speed, device, qsteps, list(range(o.quality_seeds))))
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

    env = {"versions": {"vqclip": __version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
                        "python": platform.python_version(), "cuda": torch.version.cuda},
           "date": time.strftime("%Y-%m-%d")}
    if device.type == "cpu" and hasattr(os, "getloadavg"):
        env["load_average_1m"] = os.getloadavg()[0]
        env["cpu_threads"] = torch.get_num_threads()
    return env


def table(r: dict) -> str:
    """The figures as an aligned two-column table."""
    ratio = r["quality_ratio"]
    rows = [
        ("config", f"{r['config']} ({r['size']}x{r['size']}, cutn {r['cutn']}, {'+'.join(r['clip'])}, "
                   f"batch {r['batch']}, {r['path']} path)"),
        ("device", r["device"]),
        ("s/step median (p10-p90)", f"{r['s_per_step_median']:.4f} ({r['s_per_step_p10']:.4f}-"
                                    f"{r['s_per_step_p90']:.4f}) over {r['steps']} steps"),
        ("steps/s", f"{r['steps_per_s']:.2f}"),
        (f"images/hour at {IMAGES_PER_HOUR_STEPS} steps", f"{r['images_per_hour']:.1f}"),
        ("time to first step", f"{r['time_to_first_step_s']:.2f} s"),
        ("peak memory", f"{r['peak_memory_bytes'] / 2**30:.2f} GiB"),
        ("FLOPs/step (fwd+bwd)", f"{r['flops_per_step'] / 1e9:.1f} GFLOP"),
        ("achieved", f"{r['tflops_achieved']:.3f} TFLOP/s"),
        ("quality ratio", ("n/a (reference loss did not drop)" if ratio is None else
                           f"{ratio:.3f} ({'pass' if r['quality_pass'] else 'FAIL'}, >= {QUALITY_MIN} needed)")),
    ]
    if "load_average_1m" in r:
        rows.append(("CPU time/step (all threads)", f"{r['cpu_s_per_step_median']:.3f} s"))
        rows.append(("load average (1 min)", f"{r['load_average_1m']:.2f}"))
    rows.append(("versions", ", ".join(f"{k} {v}" for k, v in r["versions"].items() if v)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
