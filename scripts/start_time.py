"""Time `vqclip generate` from the command to its first step, with the models already cached.

Random-weight files of the real architectures stand in for the downloads (the time does not depend on the
weights): the f16_16384 VQGAN as a registry model in a checkpoints folder of its own, and ViT-B/32 (quickgelu)
as a local weights file. They are written once into DIR; a first, untimed run then makes the safetensors cache
and the lock entries, as a user's first run does. Each timed run starts a fresh process and reads its progress
bar: the first step is done when the bar shows 1/2. Prints wall seconds, the child's CPU seconds and the load.

    python scripts/start_time.py [--dir bench-results/start] [--runs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VQGAN = "vqgan_imagenet_f16_16384"
CLIP = "ViT-B-32-quickgelu"


def write_models(folder: Path) -> Path:
    """The random-weight files (once): DIR/checkpoints/<VQGAN yaml + ckpt>, DIR/<CLIP>.pt; returns the CLIP file."""
    clip_file = folder / f"{CLIP}-random.pt"
    ckpts = folder / "checkpoints"
    if clip_file.is_file() and (ckpts / f"{VQGAN}.ckpt").is_file():
        return clip_file
    import open_clip
    import torch

    from vqclip.vqgan import build_vqgan, read_vqgan_yaml

    ckpts.mkdir(parents=True, exist_ok=True)
    yaml = ROOT / "vqclip" / "architectures" / f"{VQGAN}.yaml"
    shutil.copy(yaml, ckpts / f"{VQGAN}.yaml")
    torch.manual_seed(0)
    vqgan = build_vqgan(read_vqgan_yaml(yaml))
    torch.save({"state_dict": vqgan.state_dict()}, ckpts / f"{VQGAN}.ckpt")
    clip = open_clip.create_model(CLIP, pretrained=None)
    torch.save(clip.state_dict(), clip_file)
    return clip_file


def first_step(cmd: list[str], env: dict) -> tuple[float, float, float, float]:
    """(seconds to the first step, seconds to exit, child CPU seconds, seconds to the loop's start) of one run
    of cmd. The loop starts when its bar first shows 0/2 (models loaded, nothing computed yet)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    seen, at, begun = b"", None, None
    while True:
        chunk = proc.stderr.read1(4096)
        if not chunk:
            break
        seen = (seen + chunk)[-4096:]
        if begun is None and b" 0/2 " in seen:
            begun = time.perf_counter() - start
        if at is None and b" 1/2 " in seen:
            at = time.perf_counter() - start
    code = proc.wait()
    total = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0 or at is None:
        sys.exit(f"generate failed (exit {code}): {seen.decode(errors='replace')[-600:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return at, total, cpu, begun if begun is not None else at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT / "bench-results" / "start")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="speed.threads (0: vqclip's choice)")
    args = ap.parse_args()
    clip_file = write_models(args.dir)
    out = args.dir / "outputs"
    cmd = [
        sys.executable,
        "-m",
        "vqclip",
        "generate",
        "a lighthouse",
        "--vqgan",
        VQGAN,
        "--clip",
        f"{CLIP}:{clip_file}",
        "--size",
        "128",
        "128",
        "--cutn",
        "8",
        "--steps",
        "2",
        "--save-every",
        "0",
        "--out",
        str(out),
        "--checkpoints-dir",
        str(args.dir / "checkpoints"),
        "--offline",
        "--set",
        f"speed.threads={args.threads}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first_step(cmd, env)  # untimed: the safetensors cache and the lock entries, as on a user's first run
    runs = []
    for i in range(args.runs):
        runs.append(first_step(cmd, env))
        print(
            f"run {i + 1}: loop start {runs[-1][3]:.2f} s, first step {runs[-1][0]:.2f} s, exit {runs[-1][1]:.2f} s, "
            f"CPU {runs[-1][2]:.2f} s, "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    shutil.rmtree(out, ignore_errors=True)
    med = [statistics.median(r[k] for r in runs) for k in range(4)]
    print(
        f"median of {len(runs)}: command to loop start {med[3]:.2f} s, to first step {med[0]:.2f} s (to exit "
        f"{med[1]:.2f} s), "
        f"CPU {med[2]:.2f} s; load (1 min) {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
