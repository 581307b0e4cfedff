"""Does `--preview` slow a run? s/step with and without it, on the toy models, in alternating runs.

    python scripts/bench_preview.py [--pairs 10] [--steps 150] [--save-every 10] [--size 32] [--threads 1]

Each pair runs the same toy generate twice, once plain and once with the preview page served and a page reading
its event stream (in another process, as a browser would: its own work is not the run's). Both write the same
frames. Per run it measures, from the first step to the files written: wall s/step; the loop thread's CPU s/step
(time.thread_time in the loop's own thread: what a step costs it); the process's CPU s/step (all threads: the
loop, torch's, and the preview's encoder and server); and the time the preview's calls take on the loop's thread.
Reported: per arm the median over runs, and the median over pairs of each pair's with/without ratio (a busy
machine's drift cancels within a pair). The load average before and after is printed so a figure can be judged.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = ("wall", "loop_thread_cpu", "process_cpu")
READER = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "events") as r:
    for line in r:
        pass
"""


class Timed:
    """Delegates to an observer, adding up the wall time its calls take on the loop's thread."""

    def __init__(self, observer):
        self.observer, self.seconds = observer, 0.0

    def __getattr__(self, name):
        method = getattr(self.observer, name)

        def timed(*args):
            t = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.seconds += time.perf_counter() - t

        return timed


def one_run(cfg, models, preview: bool) -> tuple[float, float, float, float]:
    """(wall, loop thread CPU, process CPU, the preview's calls on the loop thread) s/step of one toy run, from its
    first step to its files written (and, with the preview, the page's stream ended)."""
    from vqclip.preview import open_preview
    from vqclip.runner import prepare_run, run_image

    run = prepare_run(cfg, models=models)
    marks: list[tuple[float, float, float]] = []

    def first(step) -> None:
        if not marks:
            marks.append((time.perf_counter(), time.thread_time(), time.process_time()))

    if preview:
        with open_preview("generate", cfg.prompt) as live:
            reader = subprocess.Popen([sys.executable, "-c", READER, live.url])
            while not live.state._clients:  # the page is connected (its start-up done) before the run starts
                time.sleep(0.05)
            time.sleep(0.5)
            timed = Timed(live.observer)
            run_image(run, on_step=first, observers=[timed])
        reader.wait(30)
    else:
        timed = None
        run_image(run, on_step=first)
    now = (time.perf_counter(), time.thread_time(), time.process_time())
    per_step = tuple((b - a) / cfg.steps for a, b in zip(marks[0], now))
    return (*per_step, timed.seconds / cfg.steps if timed else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--save-every", type=int, default=10)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from vqclip.config import resolve
    from vqclip.runner import ModelCache

    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    models = ModelCache()
    results: dict[str, list[tuple[float, ...]]] = {"without": [], "with": []}
    load_before = os.getloadavg()
    for k in range(args.pairs + 1):  # pair 0 warms up (model load, caches) and is not counted
        order = ("without", "with") if k % 2 else ("with", "without")
        for arm in order:
            cfg = resolve(
                ["toy"],
                options={
                    "prompt": "a red circle",
                    "seed": 1,
                    "steps": args.steps,
                    "output.save_every": args.save_every,
                    "width": args.size,
                    "height": args.size,
                    "output.dir": str(out / arm),
                    "device": "cpu",
                },
            )
            figures = one_run(cfg, models, arm == "with")
            if k:
                results[arm].append(figures)
            print(
                f"pair {k} {arm:>7}: "
                + ", ".join(f"{v * 1e3:.3f} ms/step {n}" for v, n in zip(figures, NAMES))
                + f", {figures[3] * 1e6:.0f} us/step in the preview's calls",
                file=sys.stderr,
            )
    load_after = os.getloadavg()
    summary: dict = {}
    for j, name in enumerate(NAMES):
        without = [r[j] for r in results["without"]]
        with_ = [r[j] for r in results["with"]]
        summary[name] = {
            "without_s_per_step": statistics.median(without),
            "with_s_per_step": statistics.median(with_),
            "ratio_of_medians": statistics.median(with_) / statistics.median(without),
            "median_pair_ratio": statistics.median(w / o for w, o in zip(with_, without)),
        }
    summary["preview_calls_on_loop_thread_s_per_step"] = statistics.median(r[3] for r in results["with"])
    summary.update(
        pairs=args.pairs,
        steps=args.steps,
        save_every=args.save_every,
        size=args.size,
        threads=args.threads,
        load_before=load_before,
        load_after=load_after,
        torch=torch.__version__,
        python=sys.version.split()[0],
    )
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
