#!/usr/bin/env bash
# GPU check for issue 4 (run only where a CUDA machine is lent): the benchmark at the paper's settings
# (C=32, 8 cells, batch 256, bank 25,331) with bf16 autocast and without (AMP=auto measures both on CUDA),
# channels_last against NCHW for the bound, and 2 real epochs per AMP mode on a 25,331-image synthetic
# uint8 cache with the projected seconds of a 10-epoch trial.
#   bash search/gpu_check.sh            # from the repo root (or from search/); extra --NAME=value args are passed on
#   bash search/gpu_check.sh --DEVICE=cpu --INIT_CHANNELS=4 --LAYERS=3 --BATCH_SIZE=8 --N_IMAGES=64   # a dry run
# Output: the full log and the JSON line in $OUT (if set), else in ./gpu_check_out.
set -euo pipefail
cd "$(dirname "$0")"
out="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$out"
py="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } 2>&1 | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')" \
    2>&1 | tee -a "$out/gpu.txt"

# paper settings (the 'cuda' preset), more timed steps per round: a GPU step is tens of milliseconds
"$py" benchmark.py --PRESET=cuda --AMP=auto --COMPARE_LAYOUT=True --WARMUP=5 --ROUNDS=7 --STEPS_PER_ROUND=5 \
    --CHEAP_CALLS=20 --TRIAL_EPOCHS=2 "$@" 2>&1 | tee "$out/benchmark.txt"
tail -n 1 "$out/benchmark.txt" > "$out/benchmark.json"
echo "wrote $out/gpu.txt, $out/benchmark.txt, $out/benchmark.json"
