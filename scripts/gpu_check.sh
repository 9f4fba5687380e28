#!/usr/bin/env bash
# One prepared command for a single-GPU machine (PyTorch + CUDA, transformers, pytest; no
# internet): environment report, GPU benchmarks (model step vs transformers, run_pretraining
# throughput through the real loop, SQuAD inference on the dev set when it is present), then the
# whole test suite (GPU tests included).
#
#   bash scripts/gpu_check.sh [RESULTS_DIR]     # default: $OUT, else results/gpu_check
#
# The SQuAD dev set is read from ../shared/data or results/gpu_inputs/dev-v1.1.json. Every
# result lands in RESULTS_DIR; the exit status is non-zero if a test failed.
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

bench() {  # name, then benchmark arguments
  local name=$1
  shift
  "$PYTHON" -m benchmarks.model_step "$@" --json "$out/$name.json" 2>&1 | tee -a "$out/bench.txt"
}
bench large_p1_bf16 --config bert_configs/large.json --batch 64 --seq 128 --masked 20 --dtype bf16
bench large_p2_bf16 --config bert_configs/large.json --batch 16 --seq 512 --masked 80 --dtype bf16

# The real training loop (loader, LAMB, logging) on the bundled sample's shards, BERT-large.
DUPE_FACTOR=4 bash scripts/make_sample_shards.sh results/gpu_shards >/dev/null 2>&1
pretrain() {  # name, shards, seq, pred, batch, precision flag
  "$PYTHON" run_pretraining.py --do_train --input_dir "results/gpu_shards/$2" \
    --output_dir "results/gpu_pretrain_$1" --config_file bert_configs/large.json \
    --max_seq_length "$3" --max_predictions_per_seq "$4" --train_batch_size "$5" "$6" \
    --max_steps 40 --learning_rate 1e-4 --skip_checkpoint --log_freq 20 --disable_progress_bar \
    --json-summary "$out/pretrain_$1.json" 2>&1 | grep -E "Iteration: 40|e2e_train_time|error" \
    | tee -a "$out/bench.txt"
}
pretrain p1_bf16 phase1 128 20 64 --bf16
pretrain p1_fp16 phase1 128 20 64 --fp16
pretrain p2_bf16 phase2 512 80 16 --bf16

dev=../shared/data/squad/v1.1/dev-v1.1.json
[ -f "$dev" ] || dev=results/gpu_inputs/dev-v1.1.json
if [ -f "$dev" ]; then
  "$PYTHON" -m benchmarks.squad_inference --predict_file "$dev" --model random \
    --config bert_configs/large.json --batch 64 --dtype bf16 --hf \
    --json "$out/squad_inference_large_bf16.json" \
    2>&1 | grep -E "seq/s|identical|ratio|features" | tee -a "$out/bench.txt"
fi

"$PYTHON" -m pytest -q -p no:cacheprovider -rs -n 8 2>&1 | tail -40 | tee "$out/tests.txt"
exit "${PIPESTATUS[0]}"
