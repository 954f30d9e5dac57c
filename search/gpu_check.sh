#!/usr/bin/env bash
# GPU checks, one script (run only where a CUDA machine is lent), about 8 minutes at most:
#  1. issue 4: benchmark.py at the paper's settings (C=32, 8 cells, batch 256, bank 25,331) with bf16 autocast and
#     without (AMP=auto measures both on CUDA), channels_last against NCHW for the bound, and 2 real epochs per AMP
#     mode on a 25,331-image synthetic uint8 cache with the projected seconds of a 10-epoch trial.
#  2. issue 10: benchmark_workers.py's gpu preset (the same network, 32 px, batch 256, bf16): search.py itself with
#     1, 2 and 4 trials per GPU, 8 random-search trials of 1 epoch on 12,800 synthetic images per row; trials per
#     hour, the ratio to one trial at a time, and peak GPU memory per trial. Each row stops after ROW_LIMIT_S and
#     is then rated on the trials it finished.
# search.py needs hyperopt and graphviz (pure Python), which the GPU image lacks: carry their wheels in .whl at the
# repo root (or name another folder, absolute, in WHEELS); they go into a temporary folder, nothing else is touched.
#   bash search/gpu_check.sh            # from the repo root (or from search/); extra --NAME=value args go to both
#                                       # benchmarks (names both know: DEVICE, INIT_CHANNELS, LAYERS, BATCH_SIZE,
#                                       # IMAGE_SIZE, N_IMAGES, AMP, SEED); WORKERS_ARGS="..." to the second alone
#   WORKERS_ARGS="--N_TRIALS=2 --PER_DEVICE=(1,2) --BUDGET_NETWORK=(8,3,32,4)" \
#       bash search/gpu_check.sh --DEVICE=cpu --INIT_CHANNELS=4 --LAYERS=3 --BATCH_SIZE=8 --N_IMAGES=64   # a dry run
# Output: the logs and JSON lines in $OUT (if set), else in ./gpu_check_out. Time limits (s): BENCH_S, WORKERS_S.
set -euo pipefail
cd "$(dirname "$0")"
out="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
bench_s="${BENCH_S:-150}"  # s for part 1
workers_s="${WORKERS_S:-330}"  # s for part 2: 3 rows of at most 95 s, plus writing and decoding the images
read -r -a workers_args <<< "${WORKERS_ARGS:-}"

{ timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } 2>&1 | tee "$out/gpu.txt"
timeout 60 "$py" -c "import os, torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device', '|', os.cpu_count(), 'CPUs')" \
    2>&1 | tee -a "$out/gpu.txt" || true

# ---- 1. issue 4: paper settings (the 'cuda' preset), more timed steps per round: a GPU step is tens of ms ---------
status=0 failed=0
timeout "$bench_s" "$py" benchmark.py --PRESET=cuda --AMP=auto --COMPARE_LAYOUT=True --WARMUP=5 --ROUNDS=7 \
    --STEPS_PER_ROUND=5 --CHEAP_CALLS=20 --TRIAL_EPOCHS=2 "$@" 2>&1 | tee "$out/benchmark.txt" || status=$?
[ "$status" -eq 0 ] || { failed=1; echo "benchmark.py: exit status $status (124 = stopped after $bench_s s)" \
    | tee -a "$out/benchmark.txt"; }
{ grep '^{' "$out/benchmark.txt" || true; } | tail -n 1 > "$out/benchmark.json"

# ---- 2. issue 10: trials per hour with 1, 2 and 4 trials per GPU, through search.py --------------------------------
if ! "$py" -c "import hyperopt, graphviz" 2>/dev/null; then
    wheels="${WHEELS:-../.whl}"
    if compgen -G "$wheels/*.whl" > /dev/null; then
        site="$(mktemp -d)"
        timeout 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" \
            "$wheels"/*.whl 2>&1 | tee -a "$out/gpu.txt" || true
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"  # the spawned trial workers inherit it
    fi
fi
status=0
if "$py" -c "import hyperopt, graphviz" 2>/dev/null; then
    timeout "$workers_s" "$py" benchmark_workers.py --PRESET=gpu --N_IMAGES=12800 --PER_DEVICE="(1, 2, 4)" \
        --ROW_LIMIT_S=95 "$@" "${workers_args[@]}" 2>&1 | tee "$out/benchmark_workers.txt" || status=$?
    [ "$status" -eq 0 ] || { failed=1; echo "benchmark_workers.py: exit status $status (124 = stopped after $workers_s s)" \
        | tee -a "$out/benchmark_workers.txt"; }
else
    failed=1
    echo "benchmark_workers.py skipped: search.py needs hyperopt and graphviz; carry their wheels in .whl" \
        | tee "$out/benchmark_workers.txt"
fi
{ grep '^{' "$out/benchmark_workers.txt" || true; } | tail -n 1 > "$out/benchmark_workers.json"
echo "wrote $out/gpu.txt, benchmark.txt, benchmark.json, benchmark_workers.txt, benchmark_workers.json"
exit "$failed"  # 1 when either part failed or was skipped; each part's output is kept either way
