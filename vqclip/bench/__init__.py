"""`vqclip bench`: speed, memory and a quality guard on random-weight models of the real architectures.

`setup` holds the configurations and models, `measure` the timers and counters, `quality` the guard against the
fp32 reference path, `run` the benchmark itself and `report` the BENCHMARKS.md tables and targets.
"""

from .measure import flops_of
from .quality import GRAD_COSINE_MIN, QUALITY_MIN, evaluate, evaluate_image, fixed_views, verdict
from .run import BenchOptions, run_bench, table
from .setup import ARCHITECTURES, BENCH_CONFIGS, SMOKE, BenchConfig, build_models, run_config

__all__ = [
    "ARCHITECTURES",
    "BENCH_CONFIGS",
    "GRAD_COSINE_MIN",
    "QUALITY_MIN",
    "SMOKE",
    "BenchConfig",
    "BenchOptions",
    "build_models",
    "evaluate",
    "evaluate_image",
    "fixed_views",
    "flops_of",
    "run_bench",
    "run_config",
    "table",
    "verdict",
]
