#!/usr/bin/env bash
# Fetch, on a machine with pip access, the wheels the GPU machine lacks (its image has torch, torchvision,
# einops, imageio, typer, tqdm, timm, huggingface-hub, safetensors, pytest, but not these), into .whl/
# (git-ignored). The GPU machine cannot reach the network, so they travel with the working tree:
#
#   scripts/gpu_wheels.sh                     # here, once
#   device run, carry [".whl"]: scripts/gpu_bench.sh "$OUT"   # gpu_bench.sh installs .whl/ when it is there
#
# Versions are the ones this project's tests pass with (pip list of the CI venv). imageio-ffmpeg is left out: its
# wheel alone (68 MB) is over the 64 MiB a device call carries, and only video output imports it.
set -euo pipefail
dest=${1:-.whl}
mkdir -p "$dest"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" \
    open_clip_torch==3.3.0 taming-transformers-rom1504==0.0.6 omegaconf==2.4.0 \
    ftfy==6.3.1 wcwidth==0.9.4
ls -l "$dest"
