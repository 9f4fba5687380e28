#!/usr/bin/env bash
# SQuAD fine-tuning / prediction / evaluation with NVIDIA's 14 positional arguments (HEAD order,
# spec §3.2). Presets: bash scripts/run_squad.sh $(source scripts/configs/squad_config.sh && dgxa100-80g_8gpu_fp16)
#
#  1 init_checkpoint [checkpoints/bert_uncased.pt]  2 epochs [2.0]  3 batch_size [4]
#  4 learning_rate [3e-5]  5 warmup_proportion [0.1]  6 precision [fp16] (fp16, bf16, tf32, fp32)
#  7 num_gpu [all GPUs, or 1]  8 seed [1]  9 squad_dir [$BERT_PREP_WORKING_DIR/download/squad/v1.1]
# 10 vocab_file [vocab/vocab]  11 OUT_DIR [results/SQuAD]  12 mode [train eval] (train, eval,
#    prediction, or both)  13 CONFIG_FILE [bert_configs/large.json]  14 max_steps [-1]
# SQuAD v2.0: a squad_dir ending in v2.0 uses train-v2.0.json / dev-v2.0.json and
# --version_2_with_negative. Paths are repository-relative; $BERT_PREP_WORKING_DIR defaults to data/.
# LOG_FREQ=N in the environment logs the training loss every N steps.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$repo/data}
source "$repo/scripts/common.sh"

init_checkpoint=${1:-"$repo/checkpoints/bert_uncased.pt"}
epochs=${2:-"2.0"}
batch_size=${3:-"4"}
learning_rate=${4:-"3e-5"}
warmup_proportion=${5:-"0.1"}
precision=${6:-"fp16"}
num_gpu=${7:-$(default_gpus)}
seed=${8:-"1"}
squad_dir=${9:-"$BERT_PREP_WORKING_DIR/download/squad/v1.1"}
vocab_file=${10:-"$repo/vocab/vocab"}
OUT_DIR=${11:-"$repo/results/SQuAD"}
mode=${12:-"train eval"}
CONFIG_FILE=${13:-"$repo/bert_configs/large.json"}
max_steps=${14:-"-1"}

version=1.1
flags=()
case "${squad_dir%/}" in *v2.0) version=2.0; flags+=(--version_2_with_negative) ;; esac
set_precision_flags "$precision"
flags+=("${PRECISION_FLAGS[@]}")
mkdir -p "$OUT_DIR"

train_args=(--do_train --train_file="$squad_dir/train-v$version.json" --train_batch_size="$batch_size")
eval_args=(--do_predict --predict_file="$squad_dir/dev-v$version.json" --predict_batch_size="$batch_size"
  --eval_script="$squad_dir/evaluate-v$version.py" --do_eval)
case "$mode" in
  train) flags+=("${train_args[@]}") ;;
  eval) flags+=("${eval_args[@]}") ;;
  prediction) flags+=("${eval_args[@]:0:3}") ;;
  *) flags+=("${train_args[@]}" "${eval_args[@]}") ;;
esac

[ -n "${LOG_FREQ:-}" ] && flags+=(--log_freq="$LOG_FREQ")  # optional: log every N steps
set_launcher "$num_gpu"
CMD=("${LAUNCHER[@]}" "$repo/run_squad.py" --init_checkpoint="$init_checkpoint"
  --do_lower_case --bert_model=bert-large-uncased --learning_rate="$learning_rate"
  --warmup_proportion="$warmup_proportion" --seed="$seed" --num_train_epochs="$epochs"
  --max_seq_length=384 --doc_stride=128 --output_dir="$OUT_DIR" --vocab_file="$vocab_file"
  --config_file="$CONFIG_FILE" --max_steps="$max_steps" --json-summary="$OUT_DIR/dllogger.json"
  "${flags[@]}")
echo "${CMD[@]}"
time "${CMD[@]}" 2>&1 | tee "$OUT_DIR/logfile.txt"
