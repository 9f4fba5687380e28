#!/usr/bin/env bash
# One prepared command for a single-GPU machine (PyTorch + CUDA, transformers, h5py, pytest; no
# internet): environment report, the GPU tests (fused vs fallback agreement, fp16/bf16 steps,
# precision choice), the benchmark harness (ours vs transformers, BERT-large, bf16 with a profile
# of our phase-1 step), the real pre-training loop (phases 1 and 2), a DDP smoke test (torchrun,
# one process, NCCL), then the harness's pre-training rows again with ours under torch.compile,
# and in fp16. About 8 minutes on an H100.
#
#   bash scripts/gpu_check.sh [RESULTS_DIR]     # default: $OUT, else results/gpu_check
#   FULL_SUITE=1 bash scripts/gpu_check.sh      # also the whole test suite at the end
#
# The SQuAD dev set is read from ../shared/data, else from results/gpu_inputs/dev-v1.1.json; the
# shards from results/sample_shards (built when missing). Every result lands in RESULTS_DIR; the
# exit status is non-zero if a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-results/gpu_check}}
mkdir -p "$out"
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
xdist=()
"$PYTHON" -c "import xdist" 2>/dev/null && xdist=(-n 8)

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PYTHON" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'device', torch.cuda.get_device_name())"
} 2>&1 | tee "$out/env.txt"

# GPU tests first, so that their verdict comes back even if a later step runs out of time.
"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/gpu_tests.txt" \
  | grep -E "FAILED|ERROR|passed|failed"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

[ -d results/sample_shards/phase2 ] || bash scripts/make_sample_shards.sh results/sample_shards >/dev/null
dev=../shared/data/squad/v1.1/dev-v1.1.json
[ -f "$dev" ] || dev=results/gpu_inputs/dev-v1.1.json
harness() {  # dtype, then extra arguments
  local dtype=$1
  shift
  timeout 240 "$PYTHON" -m benchmarks.harness --config bert_configs/large.json --dtype "$dtype" \
    --batch_p1 64 --batch_p2 16 --batch_squad 32 --squad_questions 0 --squad_dev "$dev" \
    --steps 10 --json "$out/harness_large_$dtype.json" "$@" 2>&1 \
    | grep -vE "Warning|weights not in|warn" | tee -a "$out/bench.txt"
}
harness bf16 --profile "$out/profile_p1_bf16.txt"

# The real training loop (loader, LAMB, logging) on the bundled sample's shards, BERT-large.
pretrain() {  # name, phase, seq, pred, batch, extra flags...
  local name=$1 phase=$2 seq=$3 pred=$4 batch=$5
  shift 5
  timeout 150 "$PYTHON" run_pretraining.py --do_train --input_dir "results/sample_shards/$phase" \
    --output_dir "results/gpu_pretrain_$name" --config_file bert_configs/large.json \
    --max_seq_length "$seq" --max_predictions_per_seq "$pred" --train_batch_size "$batch" \
    --max_steps 60 --learning_rate 1e-4 --skip_checkpoint --log_freq 20 --disable_progress_bar \
    --json-summary "$out/pretrain_$name.json" "$@" 2>&1 | grep -E "Iteration: 60|e2e_train_time|rror" \
    | sed "s/^/$name: /" | tee -a "$out/bench.txt"
}
pretrain p1_bf16 phase1 128 20 64 --bf16
pretrain p2_bf16 phase2 512 80 16 --bf16

# DDP smoke test: torchrun, one process, NCCL, fp16-compressed all-reduce after accumulation.
timeout 120 "$PYTHON" -m torch.distributed.run --nproc_per_node=1 --standalone run_pretraining.py \
  --do_train --input_dir results/sample_shards/phase1 --output_dir results/gpu_ddp \
  --config_file bert_configs/base.json --train_batch_size 32 --gradient_accumulation_steps 2 \
  --max_steps 5 --bf16 --skip_checkpoint --allreduce_post_accumulation_fp16 --disable_progress_bar \
  --json-summary "$out/ddp.json" 2>&1 | tee "$out/ddp.txt" | grep -E "e2e_train_time|rror" \
  | sed 's/^/ddp: /' | tee -a "$out/bench.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Last, as they take longest: ours under torch.compile (a fixed masked-row count, as
# run_pretraining --compile), then fp16 with loss scaling.
harness bf16 --sections pretrain --compile --json "$out/harness_large_bf16_compile.json"
harness fp16 --sections pretrain

if [ "${FULL_SUITE:-0}" = 1 ]; then
  "$PYTHON" -m pytest -q -p no:cacheprovider "${xdist[@]}" 2>&1 | tee "$out/tests.txt" \
    | grep -E "FAILED|ERROR|passed|failed"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
exit "$status"
