#!/usr/bin/env bash
# SQuAD fine-tuning, prediction and evaluation with NVIDIA's positional arguments, in either of
# the orders NVIDIA's launcher has had:
#
#   21.11 (13): init_checkpoint epochs batch_size learning_rate precision num_gpu seed squad_dir
#               vocab_file OUT_DIR mode CONFIG_FILE max_steps
#   HEAD  (14): init_checkpoint epochs batch_size learning_rate warmup_proportion precision
#               num_gpu seed squad_dir vocab_file OUT_DIR mode CONFIG_FILE max_steps
#
# Which order a call uses: 13 arguments are 21.11's, 14 HEAD's. With 5 to 12 the fifth decides: a
# precision word is 21.11's order, a number HEAD's. With 4 or fewer both orders read the same
# arguments and 21.11's defaults apply. A call that fits neither (13 arguments whose fifth is a
# number, 14 whose fifth is a precision, a fifth that is neither) is refused with one line that
# shows both orders. Presets: 21.11's echo 10 arguments, HEAD's 11 (with the warm-up):
#   bash scripts/run_squad.sh $(source scripts/configs/squad_config.sh && dgxa100_8gpu_fp16)
#
# Defaults (21.11 | HEAD where they differ): init_checkpoint checkpoints/bert_uncased.pt,
# epochs 2.0, batch_size 4 (per GPU), learning_rate 3e-5, warmup_proportion (not passed: the
# script's 0.1 | 0.1), precision fp16, num_gpu all GPUs nvidia-smi lists (else 1; NVIDIA: 8),
# seed 1, squad_dir $BERT_PREP_WORKING_DIR/download/squad/v1.1 ($BERT_PREP_WORKING_DIR defaults
# to data/), vocab_file vocab/vocab (the same file as Google's uncased vocab.txt that NVIDIA
# names), OUT_DIR results/SQuAD, mode "train eval", CONFIG_FILE (bert_config.json |
# bert_configs/large.json), max_steps -1. Default paths are in this repository.
#
# precision: fp16 (--fp16); fp32 and tf32 (no flag: the script's fp32 with TF32 allowed, as
# NVIDIA's containers ran); bf16 (--bf16); fp32_strict (--precision=fp32, TF32 off).
# mode: train, eval (predict and score), prediction (predict only), or both train and eval
# ("train eval", also spelled train+eval); anything else is refused (NVIDIA ran both for any
# unknown word). A squad_dir ending in v2.0 reads the v2.0 files and adds
# --version_2_with_negative. A relative path is looked up in the current directory, then in the
# repository root. Environment: DRY_RUN=1 prints the python command and runs nothing; LOG_FREQ=N
# logs the training loss every N steps. Output: $OUT_DIR/logfile.txt, and dllogger's JSON in
# $OUT_DIR/dllogger.json (appended to); NVIDIA's launcher left that file in results/dllogger.json
# of the working directory (run_squad.py's default), so this run's records are also copied
# there when the run ends, an earlier file there first renamed with a time stamp
# (dllogger.<yymmddHHMMSS>.json).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/scripts/common.sh"
BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$repo/data}
check_dry_run

orders="21.11 (13 arguments): init_checkpoint epochs batch_size learning_rate precision num_gpu \
seed squad_dir vocab_file OUT_DIR mode CONFIG_FILE max_steps; HEAD (14): init_checkpoint epochs \
batch_size learning_rate warmup_proportion precision num_gpu seed squad_dir vocab_file OUT_DIR mode \
CONFIG_FILE max_steps"
refuse() { die "$1 -- NVIDIA's two orders are $orders"; }

refuse_flag_arguments "$@"
fifth=${5:-}
case $# in
  0 | 1 | 2 | 3 | 4) form=21.11 ;;
  13) is_precision "$fifth" && form=21.11 ||
    refuse "13 arguments are 21.11's order, whose argument 5 is the precision, but it is '$fifth'" ;;
  14) is_number "$fifth" && form=HEAD ||
    refuse "14 arguments are HEAD's order, whose argument 5 is warmup_proportion, but it is '$fifth'" ;;
  5 | 6 | 7 | 8 | 9 | 10 | 11 | 12)
    if is_precision "$fifth"; then
      form=21.11
    elif is_number "$fifth"; then
      form=HEAD
    else
      refuse "argument 5 '$fifth' is neither a precision (21.11's order) nor a warm-up proportion (HEAD's)"
    fi
    ;;
  *) refuse "$# arguments are too many" ;;
esac

if [ "$form" = 21.11 ]; then
  bind_arguments init_checkpoint epochs batch_size learning_rate precision num_gpu seed squad_dir \
    vocab_file OUT_DIR mode CONFIG_FILE max_steps -- "$@"
  default_config=$repo/bert_config.json
else
  bind_arguments init_checkpoint epochs batch_size learning_rate warmup_proportion precision \
    num_gpu seed squad_dir vocab_file OUT_DIR mode CONFIG_FILE max_steps -- "$@"
  default_config=$repo/bert_configs/large.json
fi

init_checkpoint=$(resolve_path "${ARG[init_checkpoint]:-$repo/checkpoints/bert_uncased.pt}")
epochs=${ARG[epochs]:-2.0}
batch_size=${ARG[batch_size]:-4}
learning_rate=${ARG[learning_rate]:-3e-5}
warmup_proportion=${ARG[warmup_proportion]:-0.1}
precision=${ARG[precision]:-fp16}
num_gpu=${ARG[num_gpu]:-$(default_gpus)}
seed=${ARG[seed]:-1}
squad_dir=$(resolve_path "${ARG[squad_dir]:-$BERT_PREP_WORKING_DIR/download/squad/v1.1}")
vocab_file=$(resolve_path "${ARG[vocab_file]:-$repo/vocab/vocab}")
OUT_DIR=$(resolve_path "${ARG[OUT_DIR]:-$repo/results/SQuAD}")
mode=${ARG[mode]:-train eval}
CONFIG_FILE=$(resolve_path "${ARG[CONFIG_FILE]:-$default_config}")
max_steps=${ARG[max_steps]:--1}

need_number epochs "$epochs" "$LIMIT_EPOCHS"
need_positive_int batch_size "$batch_size" "$LIMIT_BATCH"
need_number learning_rate "$learning_rate"
[ "$form" = HEAD ] && need_number warmup_proportion "$warmup_proportion"
set_precision_flags precision "$precision"
need_positive_int num_gpu "$num_gpu" "$LIMIT_PROCESSES"
need_uint seed "$seed" "$LIMIT_SEED"
need_number max_steps "$max_steps" "$LIMIT_COUNT"
[ -z "${LOG_FREQ:-}" ] || need_positive_int LOG_FREQ "$LOG_FREQ"

version=1.1
flags=()
case "${squad_dir%/}" in
  *v2.0) version=2.0; flags+=(--version_2_with_negative) ;;
esac
train_args=(--do_train --train_file="$squad_dir/train-v$version.json" --train_batch_size="$batch_size")
predict_args=(--do_predict --predict_file="$squad_dir/dev-v$version.json"
  --predict_batch_size="$batch_size")
eval_args=("${predict_args[@]}" --eval_script="$squad_dir/evaluate-v$version.py" --do_eval)
case "$mode" in
  train) mode_args=("${train_args[@]}") ;;
  eval) mode_args=("${eval_args[@]}") ;;
  prediction) mode_args=("${predict_args[@]}") ;;
  "train eval" | "eval train" | train+eval | eval+train | train,eval | eval,train)
    mode_args=("${train_args[@]}" "${eval_args[@]}") ;;
  *) die "$(where mode): '$mode' is not train, eval, prediction or \"train eval\"" ;;
esac

set_launcher "$num_gpu"
CMD=("${LAUNCHER[@]}" "$repo/run_squad.py" --init_checkpoint="$init_checkpoint" "${mode_args[@]}"
  --do_lower_case --bert_model=bert-large-uncased --learning_rate="$learning_rate")
[ "$form" = HEAD ] && CMD+=(--warmup_proportion="$warmup_proportion")
CMD+=(--seed="$seed" --num_train_epochs="$epochs" --max_seq_length=384 --doc_stride=128
  --output_dir="$OUT_DIR" --vocab_file="$vocab_file" --config_file="$CONFIG_FILE"
  --max_steps="$max_steps" "${PRECISION_FLAGS[@]}" "${flags[@]}"
  --json-summary="$OUT_DIR/dllogger.json")
[ -n "${LOG_FREQ:-}" ] && CMD+=(--log_freq="$LOG_FREQ")

# Copies what this run added to SUMMARY (which held BEFORE bytes at its start) to NVIDIA's
# place, results/dllogger.json of the working directory, through a temporary file and a rename;
# an earlier file there is kept aside. A failure to do so is a note, not a failed run.
copy_to_nvidias_place() {  # summary before
  local target=$PWD/results/dllogger.json partial=
  [ -f "$1" ] && [ "$(wc -c <"$1")" -gt "$2" ] || return 0  # the run logged nothing
  [ "$1" -ef "$target" ] && return 0  # OUT_DIR is ./results: the file is there already
  if mkdir -p "$PWD/results" 2>/dev/null &&
    partial=$(mktemp "$PWD/results/.dllogger.json.XXXXXX" 2>/dev/null) &&
    tail -c +$(($2 + 1)) "$1" >"$partial" && chmod "$(umask -S | tr -d x)" "$partial" &&
    keep_aside "$target" && mv -- "$partial" "$target"; then
    echo "dllogger's JSON is $1; this run's records are also in $target, where NVIDIA's launcher left them"
  else
    [ -z "$partial" ] || rm -f -- "$partial"
    note "could not copy this run's dllogger records to $target, where NVIDIA's launcher left them; they are in $1"
  fi
}

announce_command "$OUT_DIR" "${CMD[@]}"
summary_size=0
[ -f "$OUT_DIR/dllogger.json" ] && summary_size=$(wc -c <"$OUT_DIR/dllogger.json")
status=0
time "${CMD[@]}" 2>&1 | tee "$OUT_DIR/logfile.txt" || status=$?
copy_to_nvidias_place "$OUT_DIR/dllogger.json" "$summary_size"
exit "$status"
