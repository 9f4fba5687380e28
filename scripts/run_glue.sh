#!/usr/bin/env bash
# GLUE fine-tuning with NVIDIA's 16 positional arguments (spec §3.3). Presets:
#   bash scripts/run_glue.sh $(source scripts/configs/glue_config.sh && mrpc_dgxa100_8gpu_fp16)
#
#  1 init_checkpoint [checkpoints/bert_uncased.pt]  2 data_dir [$BERT_PREP_WORKING_DIR/download/glue/MRPC/]
#  3 vocab_file [vocab/vocab]  4 config_file [bert_configs/large.json]  5 out_dir [results/MRPC]
#  6 task_name [mrpc]  7 num_gpu [all GPUs, or 1]  8 batch_size [16]  9 gradient_accumulation_steps [1]
# 10 learning_rate [2.4e-5]  11 warmup_proportion [0.1]  12 epochs [3]  13 max_steps [-1.0]
# 14 precision [fp16] (fp16, bf16, tf32, fp32)  15 seed [2]  16 mode [train eval] (words: train,
#    eval, prediction; exactly "eval" uses one process). LOG_FREQ=N (environment): loss every N steps
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$repo/data}
source "$repo/scripts/common.sh"

init_checkpoint=${1:-"$repo/checkpoints/bert_uncased.pt"}
data_dir=${2:-"$BERT_PREP_WORKING_DIR/download/glue/MRPC/"}
vocab_file=${3:-"$repo/vocab/vocab"}
config_file=${4:-"$repo/bert_configs/large.json"}
out_dir=${5:-"$repo/results/MRPC"}
task_name=${6:-"mrpc"}
num_gpu=${7:-$(default_gpus)}
batch_size=${8:-"16"}
gradient_accumulation_steps=${9:-"1"}
learning_rate=${10:-"2.4e-5"}
warmup_proportion=${11:-"0.1"}
epochs=${12:-"3"}
max_steps=${13:-"-1.0"}
precision=${14:-"fp16"}
seed=${15:-"2"}
mode=${16:-"train eval"}

mkdir -p "$out_dir"
[ "$mode" = "eval" ] && num_gpu=1
set_precision_flags "$precision"
flags=("${PRECISION_FLAGS[@]}")
[[ "$mode" == *train* ]] && flags+=(--do_train --train_batch_size="$batch_size")
[[ "$mode" == *eval* ]] && flags+=(--do_eval)
[[ "$mode" == *prediction* ]] && flags+=(--do_predict)
[[ "$mode" == *eval* || "$mode" == *prediction* ]] && flags+=(--eval_batch_size="$batch_size")

[ -n "${LOG_FREQ:-}" ] && flags+=(--log_freq="$LOG_FREQ")  # optional: log every N steps
set_launcher "$num_gpu"
CMD=("${LAUNCHER[@]}" "$repo/run_glue.py" --gradient_accumulation_steps="$gradient_accumulation_steps"
  --do_lower_case --data_dir="$data_dir" --bert_model=bert-large-uncased --seed="$seed"
  --init_checkpoint="$init_checkpoint" --warmup_proportion="$warmup_proportion" --max_seq_length=128
  --learning_rate="$learning_rate" --num_train_epochs="$epochs" --max_steps="$max_steps"
  --vocab_file="$vocab_file" --config_file="$config_file" --output_dir="$out_dir"
  --task_name="$task_name" --json-summary="$out_dir/dllogger.json" "${flags[@]}")
echo "${CMD[@]}"
"${CMD[@]}" 2>&1 | tee "$out_dir/logfile"
