#!/usr/bin/env bash
# The CPU config's s/step of another checkout (e.g. a worktree of an older commit) and of this one, alternated,
# then this checkout's start time. Run it on a quiet machine; every figure carries its load average.
#   scripts/ab_bench.sh /path/to/old-checkout [rounds] [out-folder]
set -u
base=$(cd "$1" && pwd); rounds=${2:-2}; out=${3:-bench-results/ab}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
mkdir -p "$out"
for round in $(seq "$rounds"); do
  for arm in base main; do
    dir=$base; [ $arm = main ] && dir=$here
    echo "== $arm round $round, load $(cut -d' ' -f1-3 /proc/loadavg), $(date +%T)"
    (cd "$dir" && PYTHONPATH=$dir "$py" -m vqclip bench --config CPU --steps 8 --json "$here/$out/$arm$round.json" 2>&1 | tail -12)
  done
done
echo "== start time, load $(cut -d' ' -f1-3 /proc/loadavg)"
(cd "$here" && "$py" scripts/start_time.py 2>&1 | tail -5)
