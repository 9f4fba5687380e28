#!/usr/bin/env bash
# BERT pre-training, phase 1 (seq 128) then phase 2 (seq 512), with NVIDIA's positional
# arguments (spec §3.1: the same 24 in the same order and with the same defaults; HEAD's 28
# num_workers, 30 phase2_bin_size (none by default: measured slower on an H100; or e.g. 64),
# 31 masking and 32 BERT_CONFIG are read too).
# Presets:
#   bash scripts/run_pretraining.sh $(source scripts/configs/pretrain_config.sh && dgxa100_8gpu_fp16)
#
# Paths are repository-relative. Data: $BERT_PREP_WORKING_DIR (default: data/ of this repository,
# where data/create_datasets_from_start.sh writes). Results: $RESULTS_DIR (default: results/),
# checkpoints in $RESULTS_DIR/checkpoints. Launch: torchrun, one process per GPU (CPU: one).
# Precision (3rd argument): fp16, bf16, tf32 (fp32 with TF32 matmuls) or fp32 (no TF32).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$repo/data}
source "$repo/scripts/common.sh"

train_batch_size=${1:-8192}
learning_rate=${2:-"6e-3"}
precision=${3:-"fp16"}
num_gpus=${4:-$(default_gpus)}
warmup_proportion=${5:-"0.2843"}
train_steps=${6:-7038}
save_checkpoint_steps=${7:-200}
resume_training=${8:-"false"}
create_logfile=${9:-"true"}
accumulate_gradients=${10:-"true"}
gradient_accumulation_steps=${11:-128}
seed=${12:-12439}
job_name=${13:-"bert_lamb_pretraining"}
allreduce_post_accumulation=${14:-"true"}
allreduce_post_accumulation_fp16=${15:-"true"}
train_batch_size_phase2=${16:-4096}
learning_rate_phase2=${17:-"4e-3"}
warmup_proportion_phase2=${18:-"0.128"}
train_steps_phase2=${19:-1563}
gradient_accumulation_steps_phase2=${20:-512}
DATA_DIR_PHASE1=${21:-$BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/wikicorpus_en/}
DATA_DIR_PHASE2=${22:-$BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_512_max_pred_80_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/wikicorpus_en/}
CODEDIR=${23:-$repo}
init_checkpoint=${24:-"None"}
num_workers=${28:-4}
phase2_bin_size=${30:-none}
masking=${31:-"static"}
BERT_CONFIG=${32:-${BERT_CONFIG:-$CODEDIR/bert_configs/large.json}}
VOCAB_FILE=${VOCAB_FILE:-$CODEDIR/vocab/vocab}
RESULTS_DIR=${RESULTS_DIR:-$CODEDIR/results}
CHECKPOINTS_DIR=$RESULTS_DIR/checkpoints

fail() { echo "run_pretraining.sh: $*" >&2; exit 1; }
[ -f "$BERT_CONFIG" ] || fail "config file $BERT_CONFIG not found"
[ -f "$CODEDIR/run_pretraining.py" ] || fail "CODEDIR $CODEDIR holds no run_pretraining.py"
mkdir -p "$CHECKPOINTS_DIR"

set_precision_flags "$precision"
set_launcher "$num_gpus"

common=(--config_file="$BERT_CONFIG" --output_dir="$CHECKPOINTS_DIR" --vocab_file="$VOCAB_FILE"
  --seed="$seed" --num_steps_per_checkpoint="$save_checkpoint_steps" --do_train
  --json-summary "$RESULTS_DIR/dllogger.json" --num_workers="$num_workers")
common+=("${PRECISION_FLAGS[@]}")
[ "$allreduce_post_accumulation" = "true" ] && common+=(--allreduce_post_accumulation)
[ "$allreduce_post_accumulation_fp16" = "true" ] && [ "$precision" = "fp16" ] && common+=(--allreduce_post_accumulation_fp16)
[ "$masking" = "dynamic" ] && common+=(--dynamic_masking)
[ -n "${EXTRA_ARGS:-}" ] && read -r -a extra <<<"$EXTRA_ARGS" && common+=("${extra[@]}")

run_phase() {  # phase, then the command
  local phase=$1 gbs=$2
  shift 2
  echo "$@"
  if [ "$create_logfile" = "true" ]; then
    local log="$RESULTS_DIR/$job_name.pyt_bert_pretraining_phase${phase}_${precision}_gbs$((gbs * num_gpus)).$(date +%y%m%d%H%M%S).log"
    "$@" 2>&1 | tee "$log"
  else
    "$@"
  fi
}

# Phase 1
phase1=("${LAUNCHER[@]}" "$CODEDIR/run_pretraining.py" "${common[@]}"
  --input_dir="$DATA_DIR_PHASE1" --train_batch_size="$train_batch_size" --max_seq_length=128
  --max_predictions_per_seq=20 --max_steps="$train_steps" --warmup_proportion="$warmup_proportion"
  --learning_rate="$learning_rate")
[ "$accumulate_gradients" = "true" ] && phase1+=(--gradient_accumulation_steps="$gradient_accumulation_steps")
[ "$resume_training" = "true" ] && phase1+=(--resume_from_checkpoint)
[ "$init_checkpoint" != "None" ] && phase1+=(--resume_from_checkpoint --init_checkpoint="$init_checkpoint")
echo "final loss, throughput and timing of phase 1 are in $RESULTS_DIR/dllogger.json"
run_phase 1 "$train_batch_size" "${phase1[@]}"

# Phase 2: continues from the newest checkpoint of phase 1 in the same folder.
phase2=("${LAUNCHER[@]}" "$CODEDIR/run_pretraining.py" "${common[@]}"
  --input_dir="$DATA_DIR_PHASE2" --train_batch_size="$train_batch_size_phase2" --max_seq_length=512
  --max_predictions_per_seq=80 --max_steps="$train_steps_phase2"
  --warmup_proportion="$warmup_proportion_phase2" --learning_rate="$learning_rate_phase2"
  --phase2 --resume_from_checkpoint --phase1_end_step="$train_steps")
[ "$phase2_bin_size" != "none" ] && phase2+=(--bin_size="$phase2_bin_size")
[ "$accumulate_gradients" = "true" ] && phase2+=(--gradient_accumulation_steps="$gradient_accumulation_steps_phase2")
run_phase 2 "$train_batch_size_phase2" "${phase2[@]}"
echo "finished pre-training; checkpoints in $CHECKPOINTS_DIR"
