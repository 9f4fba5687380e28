#!/usr/bin/env bash
# One prepared command for a single-GPU machine (PyTorch + CUDA, transformers, pytest; no
# internet): environment report, the whole test suite (GPU tests included), then the model-step
# benchmark against Hugging Face at the BERT-large phase-1 and phase-2 shapes.
#
#   bash scripts/gpu_check.sh [RESULTS_DIR]     # default: $OUT, else results/gpu_check
#
# Every result lands in RESULTS_DIR; the exit status is non-zero if any test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-results/gpu_check}}
mkdir -p "$out"
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'device', torch.cuda.get_device_name())"
} 2>&1 | tee "$out/env.txt"

"$PYTHON" -m pytest -q -p no:cacheprovider -rs 2>&1 | tee "$out/tests.txt"
status=${PIPESTATUS[0]}

bench() {  # name, then benchmark arguments
  local name=$1
  shift
  "$PYTHON" -m benchmarks.model_step "$@" --json "$out/$name.json" 2>&1 | tee -a "$out/bench.txt"
}
bench large_p1_bf16 --config bert_configs/large.json --batch 64 --seq 128 --masked 20 --dtype bf16
bench large_p1_fp16 --config bert_configs/large.json --batch 64 --seq 128 --masked 20 --dtype fp16
bench large_p2_bf16 --config bert_configs/large.json --batch 16 --seq 512 --masked 80 --dtype bf16
exit "$status"
