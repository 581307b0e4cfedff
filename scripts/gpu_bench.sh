#!/usr/bin/env bash
# The GPU benchmarks of BENCHMARKS.md in one command, run from the repository root on a CUDA machine:
#
#   scripts/gpu_bench.sh [OUT_DIR]          # OUT_DIR defaults to bench-results/ (git-ignored)
#
# 1. the GPU tests (pytest -m gpu), log in OUT_DIR/gpu-tests.log;
# 2. `vqclip bench` for S, S8, M, M2, L (fast path), S and M with --reference (fp32 eager) and S and M with
#    --compile-mode reduce-overhead (torch.compile + CUDA graphs): one OUT_DIR/NAME.json (and NAME.log) each;
# 3. the BENCHMARKS.md tables made from those files (`vqclip bench --markdown OUT_DIR`), also saved as
#    OUT_DIR/tables.md, with every issue-5 target marked met or not met.
#
# Finished steps are skipped when the script runs again (their JSON file, or gpu-tests.passed, is there), so a
# run cut short carries on where it stopped; FORCE=1 redoes everything. TIME_LIMIT_S=N stops starting (and
# kills) work N seconds after the start, then still writes the tables and exits 3: run it again to go on.
# Python: $PYTHON, else .venv/bin/python, else python3 (with .whl/ from scripts/gpu_wheels.sh installed first).
# Exits 1 if a test or a benchmark failed (the other benchmarks still run).
set -euo pipefail

out=${1:-bench-results}
py=${PYTHON:-.venv/bin/python}
[[ -x $py ]] || py=python3  # the GPU machine's python3 holds its torch
if [[ -d .whl && ! -x .venv/bin/python ]]; then  # wheels carried from scripts/gpu_wheels.sh
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/vqclip-site .whl/*.whl
    export PYTHONPATH=$PWD:/tmp/vqclip-site${PYTHONPATH:+:$PYTHONPATH}
fi
force=${FORCE:-}
limit=${TIME_LIMIT_S:-0}
mkdir -p "$out"

"$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: these are the GPU benchmarks")'
"$py" -c 'import torch; print(torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)'

# run a command; with TIME_LIMIT_S, only in the time that is left (status 124 when there is none or it runs out)
limited() {
    if (( limit > 0 )); then
        local left=$(( limit - SECONDS ))
        (( left > 20 )) || return 124
        timeout "$left" "$@"
    else
        "$@"
    fi
}

failed=()
unfinished=()

if [[ -f $out/gpu-tests.passed && -z $force ]]; then
    echo "== GPU tests: passed before ($out/gpu-tests.passed)"
else
    echo "== GPU tests"
    rm -f "$out/gpu-tests.passed"
    rc=0
    limited "$py" -m pytest -m gpu -q 2>&1 | tee "$out/gpu-tests.log" || rc=$?
    if (( rc == 0 )); then
        touch "$out/gpu-tests.passed"
    elif (( rc == 124 )); then
        unfinished+=("gpu tests")
    else
        failed+=("gpu tests (see $out/gpu-tests.log)")
    fi
fi

# NAME:OPTIONS; eager runs first, the compiled ones (slow to start, most likely to fail) last
runs=(
    "S:--config S"
    "S-reference:--config S --reference"
    "S8:--config S8"
    "M:--config M"
    "M-reference:--config M --reference"
    "M2:--config M2"
    "L:--config L"
    "S-compile-reduce-overhead:--config S --compile-mode reduce-overhead"
    "M-compile-reduce-overhead:--config M --compile-mode reduce-overhead"
)
for run in "${runs[@]}"; do
    name=${run%%:*}
    read -r -a options <<< "${run#*:}"
    json=$out/$name.json
    if [[ -f $json && -z $force ]]; then
        echo "== $name: done before ($json)"
        continue
    fi
    echo "== $name: vqclip bench ${options[*]}"
    # written under a temporary name first: a run that is killed leaves no JSON that would be skipped next time
    rc=0
    limited "$py" -m vqclip bench "${options[@]}" --json "$out/.$name.json.partial" 2>&1 | tee "$out/$name.log" \
        || rc=$?
    if (( rc == 0 )); then
        mv "$out/.$name.json.partial" "$json"
    else
        rm -f "$out/.$name.json.partial"
        if (( rc == 124 )); then unfinished+=("$name"); else failed+=("$name (see $out/$name.log)"); fi
    fi
done

echo "== BENCHMARKS.md tables ($out/tables.md)"
if ! "$py" -m vqclip bench --markdown "$out" | tee "$out/tables.md"; then
    failed+=("the tables")
fi

if (( ${#failed[@]} )); then
    printf 'FAILED: %s\n' "${failed[@]}" >&2
fi
if (( ${#unfinished[@]} )); then
    printf 'NOT FINISHED (time limit): %s; run the same command again to go on\n' "${unfinished[@]}" >&2
fi
if (( ${#failed[@]} )); then exit 1; fi
if (( ${#unfinished[@]} )); then exit 3; fi
