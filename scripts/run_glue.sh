#!/usr/bin/env bash
# GLUE fine-tuning with NVIDIA's 16 positional arguments (the same order in 21.11 and HEAD):
#
#   init_checkpoint data_dir vocab_file config_file out_dir task_name num_gpu batch_size
#   gradient_accumulation_steps learning_rate warmup_proportion epochs max_steps precision seed mode
#
# Presets echo the first 14 (seed and mode keep their defaults):
#   bash scripts/run_glue.sh $(source scripts/configs/glue_config.sh && mrpc_dgxa100_8gpu_fp16)
#
# Defaults: init_checkpoint checkpoints/bert_uncased.pt, data_dir
# $BERT_PREP_WORKING_DIR/download/glue/MRPC/ ($BERT_PREP_WORKING_DIR defaults to data/),
# vocab_file vocab/vocab (the same file as Google's uncased vocab.txt that NVIDIA names),
# config_file bert_config.json (21.11's; HEAD's bert_configs/large.json holds the same model),
# out_dir results/MRPC, task_name mrpc, num_gpu all GPUs nvidia-smi lists (else 1; NVIDIA: 8),
# batch_size 16 (per GPU), gradient_accumulation_steps 1, learning_rate 2.4e-5,
# warmup_proportion 0.1, epochs 3, max_steps -1.0, precision fp16, seed 2, mode "train eval".
# Default paths are in this repository.
#
# precision: fp16 (--fp16); fp32 and tf32 (no flag: the script's fp32 with TF32 allowed, as
# NVIDIA's containers ran); bf16 (--bf16); fp32_strict (--precision=fp32, TF32 off).
# mode: the words train, eval and prediction, separated by spaces, "+" or ","; exactly "eval"
# runs one process, as NVIDIA's did; any other word is refused. A relative path is looked up in
# the current directory, then in the repository root. Environment: DRY_RUN=1 prints the python
# command and runs nothing; LOG_FREQ=N logs the training loss every N steps. Output:
# $out_dir/logfile, and dllogger's JSON in $out_dir/dllogger.json.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/scripts/common.sh"
BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$repo/data}
check_dry_run

refuse_flag_arguments "$@"
[ $# -le 16 ] || die "$# arguments are too many: NVIDIA's launcher takes 16 (init_checkpoint \
data_dir vocab_file config_file out_dir task_name num_gpu batch_size gradient_accumulation_steps \
learning_rate warmup_proportion epochs max_steps precision seed mode)"
bind_arguments init_checkpoint data_dir vocab_file config_file out_dir task_name num_gpu \
  batch_size gradient_accumulation_steps learning_rate warmup_proportion epochs max_steps \
  precision seed mode -- "$@"

init_checkpoint=$(resolve_path "${ARG[init_checkpoint]:-$repo/checkpoints/bert_uncased.pt}")
data_dir=$(resolve_path "${ARG[data_dir]:-$BERT_PREP_WORKING_DIR/download/glue/MRPC/}")
vocab_file=$(resolve_path "${ARG[vocab_file]:-$repo/vocab/vocab}")
config_file=$(resolve_path "${ARG[config_file]:-$repo/bert_config.json}")
out_dir=$(resolve_path "${ARG[out_dir]:-$repo/results/MRPC}")
task_name=${ARG[task_name]:-mrpc}
num_gpu=${ARG[num_gpu]:-$(default_gpus)}
batch_size=${ARG[batch_size]:-16}
gradient_accumulation_steps=${ARG[gradient_accumulation_steps]:-1}
learning_rate=${ARG[learning_rate]:-2.4e-5}
warmup_proportion=${ARG[warmup_proportion]:-0.1}
epochs=${ARG[epochs]:-3}
max_steps=${ARG[max_steps]:--1.0}
precision=${ARG[precision]:-fp16}
seed=${ARG[seed]:-2}
mode=${ARG[mode]:-train eval}

need_positive_int num_gpu "$num_gpu" "$LIMIT_PROCESSES"
need_positive_int batch_size "$batch_size" "$LIMIT_BATCH"
need_positive_int gradient_accumulation_steps "$gradient_accumulation_steps" "$LIMIT_BATCH"
need_number learning_rate "$learning_rate"
need_number warmup_proportion "$warmup_proportion"
need_number epochs "$epochs" "$LIMIT_EPOCHS"
need_number max_steps "$max_steps" "$LIMIT_COUNT"
set_precision_flags precision "$precision"
need_uint seed "$seed" "$LIMIT_SEED"
[ -z "${LOG_FREQ:-}" ] || need_positive_int LOG_FREQ "$LOG_FREQ"

train=false evaluate=false predict=false
read -r -a words <<<"${mode//[+,]/ }"
for word in "${words[@]}"; do
  case "$word" in
    train) train=true ;;
    eval) evaluate=true ;;
    prediction) predict=true ;;
    *) die "$(where mode): '$mode' holds '$word'; the words are train, eval and prediction" ;;
  esac
done
[ "${#words[@]}" -gt 0 ] || die "$(where mode): empty; the words are train, eval and prediction"
[ "$mode" = eval ] && num_gpu=1

flags=()
[ "$train" = true ] && flags+=(--do_train --train_batch_size="$batch_size")
[ "$evaluate" = true ] && flags+=(--do_eval)
[ "$predict" = true ] && flags+=(--do_predict)
if [ "$evaluate" = true ] || [ "$predict" = true ]; then flags+=(--eval_batch_size="$batch_size"); fi

set_launcher "$num_gpu"
CMD=("${LAUNCHER[@]}" "$repo/run_glue.py" --task_name="$task_name" "${flags[@]}"
  --gradient_accumulation_steps="$gradient_accumulation_steps" --do_lower_case
  --data_dir="$data_dir" --bert_model=bert-large-uncased --seed="$seed"
  --init_checkpoint="$init_checkpoint" --warmup_proportion="$warmup_proportion"
  --max_seq_length=128 --learning_rate="$learning_rate" --num_train_epochs="$epochs"
  --max_steps="$max_steps" --vocab_file="$vocab_file" --config_file="$config_file"
  --output_dir="$out_dir" "${PRECISION_FLAGS[@]}" --json-summary="$out_dir/dllogger.json")
[ -n "${LOG_FREQ:-}" ] && CMD+=(--log_freq="$LOG_FREQ")

announce_command "$out_dir" "${CMD[@]}"
"${CMD[@]}" 2>&1 | tee "$out_dir/logfile"
