"""`vqclip bench`: speed, memory and a quality guard on random-weight models of the real architectures.

`setup` holds the configurations and models, `measure` the timers and counters, `quality` the guard against the
fp32 reference path, `run` the benchmark itself and `report` the BENCHMARKS.md tables and targets.
"""

from .measure import flops_of
from .quality import QUALITY_MIN, evaluate, fixed_views
from .run import BenchOptions, run_bench, table
from .setup import ARCHITECTURES, BENCH_CONFIGS, SMOKE, BenchConfig, build_models, run_config

__all__ = ["ARCHITECTURES", "BENCH_CONFIGS", "QUALITY_MIN", "SMOKE", "BenchConfig", "BenchOptions", "build_models",
           "evaluate", "fixed_views", "flops_of", "run_bench", "run_config", "table"]
