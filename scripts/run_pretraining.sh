#!/usr/bin/env bash
# BERT pre-training, phase 1 (seq 128) then phase 2 (seq 512), with NVIDIA's positional
# arguments. Both generations of NVIDIA's launcher read the same 24 (numbers as here); HEAD's
# added eight more. A call with 25 to 32 is HEAD's form, one with 24 or fewer 21.11's, except
# when it names neither data folder (21, 22) and the disk holds HEAD's data only: when 21.11's
# default HDF5 folders are not both there and HEAD's default parquet folders hold data, it takes
# HEAD's form, with a note saying so (and a note when both generations' folders hold data):
#
#   1 train_batch_size [8192]           13 job_name [bert_lamb_pretraining]
#   2 learning_rate [6e-3]              14 allreduce_post_accumulation [true]
#   3 precision [fp16]                  15 allreduce_post_accumulation_fp16 [true]
#   4 num_gpus [GPUs nvidia-smi lists]  16 train_batch_size_phase2 [4096]
#   5 warmup_proportion [0.2843]        17 learning_rate_phase2 [4e-3]
#   6 train_steps [7038]                18 warmup_proportion_phase2 [0.128]
#   7 save_checkpoint_steps [200]       19 train_steps_phase2 [1563]
#   8 resume_training [false]           20 gradient_accumulation_steps_phase2 [512]
#   9 create_logfile [true]             21 DATA_DIR_PHASE1 [see below]
#  10 accumulate_gradients [true]       22 DATA_DIR_PHASE2 [see below]
#  11 gradient_accumulation_steps [128] 23 CODEDIR [this repository]
#  12 seed [12439]                      24 init_checkpoint [None]
#  HEAD only: 25 wikipedia_source [$BERT_PREP_WORKING_DIR/wikipedia/source/], 26 num_dask_workers
#  [CPUs], 27 num_shards_per_worker [128], 28 num_workers [4], 29 sample_ratio [0.9],
#  30 phase2_bin_size [64; none, 32, 64, 128, 256 or 512], 31 masking [static; or dynamic],
#  32 BERT_CONFIG [bert_configs/large.json].
#
# Presets: bash scripts/run_pretraining.sh $(source scripts/configs/pretrain_config.sh && dgxa100_8gpu_fp16)
#
# The two forms, as NVIDIA's launchers ran them:
# - 21.11 form: data DATA_DIR_PHASE{1,2} = $BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_{128,512}_
#   max_pred_{20,80}_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/wikicorpus_en/ (what
#   data/create_datasets_from_start.sh writes), model config bert_config.json, and
#   --bert_model=bert-large-uncased (and --vocab_file when a data folder holds LDDL parquet
#   files, whose tokens are text); no length bins.
# - HEAD form: data $BERT_PREP_WORKING_DIR/pretrain/phase1/unbinned/parquet/ and
#   .../pretrain/phase2/bin_size_64/parquet/ (LDDL's folders), model config 32, and
#   --vocab_file --disable_progress_bar --num_workers=<28>. HEAD baked lengths bins (30) and
#   static masking (31) into its LDDL data; here phase 2 gets --bin_size=<30> (unless none) and
#   dynamic masking --dynamic_masking (both phases), which our data readers apply while loading.
#   HEAD's launcher ran LDDL's preprocessing (mpirun + dask) when a data folder was missing or
#   empty; this project cannot, so such a folder is refused with one line that says how to
#   prepare data instead, and 25, 26, 27 and 29, which only steer that preprocessing, get a note
#   when set to something other than their default.
# $BERT_PREP_WORKING_DIR defaults to data/ of this repository; $BERT_CONFIG (environment) replaces
# the default model config of either form.
#
# precision: fp16 (--fp16); fp32 and tf32 (no flag: the script's fp32 with TF32 allowed, as
# NVIDIA's containers ran); bf16 (--bf16); fp32_strict (--precision=fp32, TF32 off).
# Every value is checked before anything runs: numbers, true/false, precision, bin size, masking,
# the config file and both data folders. A relative path is looked up in the current directory,
# then in the repository root (CODEDIR: the first of the two that holds run_pretraining.py).
# init_checkpoint (24) is passed to phase 1 as NVIDIA's launcher did; run_pretraining.py starts
# from its weights with a fresh optimizer (NVIDIA's ignored it unless resume_training was true).
# Launch: torchrun, one process per GPU (CPU: one process).
#
# Output: $RESULTS_DIR (default: CODEDIR/results), checkpoints in $RESULTS_DIR/checkpoints, logs
# $RESULTS_DIR/<job_name>.pyt_bert_pretraining_phase<1|2>_<precision>_gbs<batch x GPUs>.<date>.log.
# Both phases get NVIDIA's --json-summary $RESULTS_DIR/dllogger.json; NVIDIA's dllogger emptied
# that file at each start, so after a run it held phase 2's events. Here the file is the same after
# a run, and nothing is lost: phase 1's events are moved to $RESULTS_DIR/dllogger_phase1.json
# when phase 1 ends, and files left by an earlier run are first renamed with a time stamp
# (dllogger.<yymmddHHMMSS>.json).
#
# Environment: DRY_RUN=1 checks everything and prints the two python commands without running
# them; RESULTS_DIR; BERT_PREP_WORKING_DIR; BERT_CONFIG; VOCAB_FILE (HEAD form; default
# vocab/vocab); EXTRA_ARGS (more flags for both phases, split at whitespace only);
# EVAL_DIR_PHASE1, EVAL_DIR_PHASE2, EVAL_EVERY, EVAL_MAX_SAMPLES (held-out evaluation, below).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/scripts/common.sh"
BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$repo/data}
check_dry_run

refuse_flag_arguments "$@"
[ $# -le 32 ] || die "$# arguments are too many: NVIDIA's launcher takes 24 (21.11) or 32 (HEAD)"
bind_arguments train_batch_size learning_rate precision num_gpus warmup_proportion train_steps \
  save_checkpoint_steps resume_training create_logfile accumulate_gradients \
  gradient_accumulation_steps seed job_name allreduce_post_accumulation \
  allreduce_post_accumulation_fp16 train_batch_size_phase2 learning_rate_phase2 \
  warmup_proportion_phase2 train_steps_phase2 gradient_accumulation_steps_phase2 DATA_DIR_PHASE1 \
  DATA_DIR_PHASE2 CODEDIR init_checkpoint wikipedia_source num_dask_workers num_shards_per_worker \
  num_workers sample_ratio phase2_bin_size masking BERT_CONFIG -- "$@"

hdf5_folder() {  # sequence length, predictions per sequence
  printf '%s/hdf5_lower_case_1_seq_len_%s_max_pred_%s_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/wikicorpus_en/' \
    "$BERT_PREP_WORKING_DIR" "$1" "$2"
}
holds_data() { [ -d "$1" ] && [ -n "$(ls -A "$1" 2>/dev/null)" ]; }

# The form: by the count; a short call that names no data folder goes by the default folders
# that hold data (the note is printed once every value has passed its check).
form=21.11 form_note=
if [ $# -gt 24 ]; then
  form=HEAD
elif [ -z "${ARG[DATA_DIR_PHASE1]}" ] && [ -z "${ARG[DATA_DIR_PHASE2]}" ]; then
  hdf5=false parquet=false
  holds_data "$(hdf5_folder 128 20)" && holds_data "$(hdf5_folder 512 80)" && hdf5=true
  for folder in phase1/unbinned phase2/bin_size_64; do
    holds_data "$BERT_PREP_WORKING_DIR/pretrain/$folder/parquet/" && parquet=true
  done
  if [ "$parquet" = true ] && [ "$hdf5" = false ]; then
    form=HEAD
    form_note="taking HEAD's form (LDDL parquet data, its model config and flags): no argument names the data folders, and in $BERT_PREP_WORKING_DIR 21.11's HDF5 folders are missing or empty while HEAD's pretrain/.../parquet/ folders hold data"
  elif [ "$parquet" = true ]; then
    form_note="taking 21.11's form (HDF5 data), as for any call of 24 or fewer arguments, although $BERT_PREP_WORKING_DIR also holds HEAD's pretrain/.../parquet/ data; pass 25 to 32 arguments for HEAD's form"
  fi
fi
if [ "$form" = 21.11 ]; then
  default_phase1=$(hdf5_folder 128 20)
  default_phase2=$(hdf5_folder 512 80)
  default_config=bert_config.json
else
  default_phase1=$BERT_PREP_WORKING_DIR/pretrain/phase1/unbinned/parquet/
  default_phase2=$BERT_PREP_WORKING_DIR/pretrain/phase2/bin_size_64/parquet/
  default_config=bert_configs/large.json
fi

train_batch_size=${ARG[train_batch_size]:-8192}
learning_rate=${ARG[learning_rate]:-6e-3}
precision=${ARG[precision]:-fp16}
num_gpus=${ARG[num_gpus]:-$(default_gpus)}
warmup_proportion=${ARG[warmup_proportion]:-0.2843}
train_steps=${ARG[train_steps]:-7038}
save_checkpoint_steps=${ARG[save_checkpoint_steps]:-200}
resume_training=${ARG[resume_training]:-false}
create_logfile=${ARG[create_logfile]:-true}
accumulate_gradients=${ARG[accumulate_gradients]:-true}
gradient_accumulation_steps=${ARG[gradient_accumulation_steps]:-128}
seed=${ARG[seed]:-12439}
job_name=${ARG[job_name]:-bert_lamb_pretraining}
allreduce_post_accumulation=${ARG[allreduce_post_accumulation]:-true}
allreduce_post_accumulation_fp16=${ARG[allreduce_post_accumulation_fp16]:-true}
train_batch_size_phase2=${ARG[train_batch_size_phase2]:-4096}
learning_rate_phase2=${ARG[learning_rate_phase2]:-4e-3}
warmup_proportion_phase2=${ARG[warmup_proportion_phase2]:-0.128}
train_steps_phase2=${ARG[train_steps_phase2]:-1563}
gradient_accumulation_steps_phase2=${ARG[gradient_accumulation_steps_phase2]:-512}
DATA_DIR_PHASE1=$(resolve_path "${ARG[DATA_DIR_PHASE1]:-$default_phase1}")
DATA_DIR_PHASE2=$(resolve_path "${ARG[DATA_DIR_PHASE2]:-$default_phase2}")
init_checkpoint=${ARG[init_checkpoint]:-None}
default_source=$(resolve_path "$BERT_PREP_WORKING_DIR/wikipedia/source/")
wikipedia_source=$(resolve_path "${ARG[wikipedia_source]:-$default_source}")
default_dask_workers=$(nproc 2>/dev/null || echo 1)
num_dask_workers=${ARG[num_dask_workers]:-$default_dask_workers}
num_shards_per_worker=${ARG[num_shards_per_worker]:-128}
num_workers=${ARG[num_workers]:-4}
sample_ratio=${ARG[sample_ratio]:-0.9}
phase2_bin_size=${ARG[phase2_bin_size]:-64}
masking=${ARG[masking]:-static}

need_positive_int train_batch_size "$train_batch_size" "$LIMIT_BATCH"
need_number learning_rate "$learning_rate"
set_precision_flags precision "$precision"
need_positive_int num_gpus "$num_gpus" "$LIMIT_PROCESSES"
need_number warmup_proportion "$warmup_proportion"
need_positive_int train_steps "$train_steps"
need_positive_int save_checkpoint_steps "$save_checkpoint_steps"
need_bool resume_training "$resume_training"
need_bool create_logfile "$create_logfile"
need_bool accumulate_gradients "$accumulate_gradients"
need_positive_int gradient_accumulation_steps "$gradient_accumulation_steps" "$LIMIT_BATCH"
need_uint seed "$seed" "$LIMIT_SEED"
[[ $job_name =~ ^[A-Za-z0-9._+-]+$ ]] ||
  die "$(where job_name): '$job_name' must be letters, digits, '.', '_', '+' or '-' (it names the log files)"
need_bool allreduce_post_accumulation "$allreduce_post_accumulation"
need_bool allreduce_post_accumulation_fp16 "$allreduce_post_accumulation_fp16"
need_positive_int train_batch_size_phase2 "$train_batch_size_phase2" "$LIMIT_BATCH"
need_number learning_rate_phase2 "$learning_rate_phase2"
need_number warmup_proportion_phase2 "$warmup_proportion_phase2"
need_positive_int train_steps_phase2 "$train_steps_phase2"
need_positive_int gradient_accumulation_steps_phase2 "$gradient_accumulation_steps_phase2" "$LIMIT_BATCH"
need_positive_int num_dask_workers "$num_dask_workers" "$LIMIT_PROCESSES"
need_positive_int num_shards_per_worker "$num_shards_per_worker" "$LIMIT_SHARDS"
need_uint num_workers "$num_workers" "$LIMIT_PROCESSES"
{ is_number "$sample_ratio" && awk -v r="$sample_ratio" 'BEGIN { exit !(r > 0 && r <= 1) }'; } ||
  die "$(where sample_ratio): '$sample_ratio' is not a number in (0, 1]"
need_choice phase2_bin_size "$phase2_bin_size" none 32 64 128 256 512
need_choice masking "$masking" static dynamic

# CODEDIR: where run_pretraining.py is; a relative one is tried in the current directory first.
codedir=${ARG[CODEDIR]:-$repo}
case "$codedir" in
  /*) candidates=("$codedir") ;;
  *) candidates=("$PWD/$codedir" "$repo/$codedir") ;;
esac
CODEDIR=
for candidate in "${candidates[@]}"; do
  if [ -f "$candidate/run_pretraining.py" ]; then CODEDIR=$(cd "$candidate" && pwd) && break; fi
done
[ -n "$CODEDIR" ] || die "$(where CODEDIR): '$codedir' holds no run_pretraining.py"

if [ -n "${ARG[BERT_CONFIG]}" ]; then
  BERT_CONFIG=$(resolve_path "${ARG[BERT_CONFIG]}")
elif [ -n "${BERT_CONFIG:-}" ]; then
  BERT_CONFIG=$(resolve_path "$BERT_CONFIG")
else
  BERT_CONFIG=$CODEDIR/$default_config
fi
[ -f "$BERT_CONFIG" ] || die "$(where BERT_CONFIG): model config $BERT_CONFIG not found"
VOCAB_FILE=$(resolve_path "${VOCAB_FILE:-$CODEDIR/vocab/vocab}")
RESULTS_DIR=$(resolve_path "${RESULTS_DIR:-$CODEDIR/results}")
CHECKPOINTS_DIR=$RESULTS_DIR/checkpoints

prepare="prepare shards with 'bash data/create_datasets_from_start.sh' (or 'python -m data.pipeline') and pass their folder"
for name in DATA_DIR_PHASE1 DATA_DIR_PHASE2; do
  folder=${!name}
  if [ ! -d "$folder" ] || [ -z "$(ls -A "$folder")" ]; then
    if [ "$form" = HEAD ]; then
      die "$(where "$name"): $folder is missing or empty; NVIDIA's HEAD launcher would build it with LDDL (mpirun + dask), which this project does not run: $prepare"
    fi
    die "$(where "$name"): $folder is missing or empty: $prepare"
  fi
done
if [ "$form" = HEAD ]; then
  unused=()
  [ "${wikipedia_source%/}" = "${default_source%/}" ] || unused+=("25 wikipedia_source=$wikipedia_source")
  [ "$num_dask_workers" = "$default_dask_workers" ] || unused+=("26 num_dask_workers=$num_dask_workers")
  [ "$num_shards_per_worker" = 128 ] || unused+=("27 num_shards_per_worker=$num_shards_per_worker")
  [ "$sample_ratio" = 0.9 ] || unused+=("29 sample_ratio=$sample_ratio")
  if [ "${#unused[@]}" -gt 0 ]; then
    note "arguments ${unused[*]} only steer LDDL preprocessing, which is not needed: both data folders exist"
  fi
fi

set_launcher "$num_gpus"
common=(--output_dir="$CHECKPOINTS_DIR" --config_file="$BERT_CONFIG")
if [ "$form" = 21.11 ]; then
  common+=(--bert_model=bert-large-uncased)
  # LDDL parquet shards hold tokens as text, so reading them needs the vocabulary; 21.11 only
  # read HDF5 shards (token ids) and passed none.
  if compgen -G "$DATA_DIR_PHASE1/*.parquet*" >/dev/null || compgen -G "$DATA_DIR_PHASE2/*.parquet*" >/dev/null; then
    common+=(--vocab_file="$VOCAB_FILE")
  fi
else
  common+=(--vocab_file="$VOCAB_FILE")
fi
tail_flags=("${PRECISION_FLAGS[@]}")  # after the schedule flags, in NVIDIA's order
[ "$resume_training" = true ] && tail_flags+=(--resume_from_checkpoint)
[ "$allreduce_post_accumulation" = true ] && tail_flags+=(--allreduce_post_accumulation)
[ "$allreduce_post_accumulation_fp16" = true ] && tail_flags+=(--allreduce_post_accumulation_fp16)
summary=(--json-summary="$RESULTS_DIR/dllogger.json")
[ "$form" = HEAD ] && summary+=(--disable_progress_bar --num_workers="$num_workers")
[ "$masking" = dynamic ] && summary+=(--dynamic_masking)
extra=()
[ -n "${EXTRA_ARGS:-}" ] && read -r -a extra <<<"$EXTRA_ARGS"
# Held-out evaluation (ours, opt-in): EVAL_DIR_PHASE1 and EVAL_DIR_PHASE2 name each phase's
# held-out shards (of that phase's sequence length); EVAL_EVERY and EVAL_MAX_SAMPLES apply to both.
[ -z "${EVAL_EVERY:-}" ] || need_positive_int EVAL_EVERY "$EVAL_EVERY"
[ -z "${EVAL_MAX_SAMPLES:-}" ] || need_positive_int EVAL_MAX_SAMPLES "$EVAL_MAX_SAMPLES"
eval_phase1=() eval_phase2=()
for phase in 1 2; do
  name=EVAL_DIR_PHASE$phase
  [ -n "${!name:-}" ] || continue
  folder=$(resolve_path "${!name}")
  [ -d "$folder" ] || die "$name: $folder is not a folder of held-out shards"
  flags=(--eval_dir="$folder")
  [ -z "${EVAL_EVERY:-}" ] || flags+=(--eval_every="$EVAL_EVERY")
  [ -z "${EVAL_MAX_SAMPLES:-}" ] || flags+=(--eval_max_samples="$EVAL_MAX_SAMPLES")
  if [ "$phase" = 1 ]; then eval_phase1=("${flags[@]}"); else eval_phase2=("${flags[@]}"); fi
done

phase1=("${LAUNCHER[@]}" "$CODEDIR/run_pretraining.py" --input_dir="$DATA_DIR_PHASE1" "${common[@]}"
  --train_batch_size="$train_batch_size" --max_seq_length=128 --max_predictions_per_seq=20
  --max_steps="$train_steps" --warmup_proportion="$warmup_proportion"
  --num_steps_per_checkpoint="$save_checkpoint_steps" --learning_rate="$learning_rate"
  --seed="$seed" "${tail_flags[@]}")
[ "$accumulate_gradients" = true ] && phase1+=(--gradient_accumulation_steps="$gradient_accumulation_steps")
[ "$init_checkpoint" != None ] && phase1+=(--init_checkpoint="$(resolve_path "$init_checkpoint")")
phase1+=(--do_train "${summary[@]}" "${eval_phase1[@]}" "${extra[@]}")

# Phase 2 continues from the newest phase-1 checkpoint in the same folder (NVIDIA never passed
# init_checkpoint here, and --resume_from_checkpoint only once is enough).
phase2=("${LAUNCHER[@]}" "$CODEDIR/run_pretraining.py" --input_dir="$DATA_DIR_PHASE2" "${common[@]}"
  --train_batch_size="$train_batch_size_phase2" --max_seq_length=512 --max_predictions_per_seq=80
  --max_steps="$train_steps_phase2" --warmup_proportion="$warmup_proportion_phase2"
  --num_steps_per_checkpoint="$save_checkpoint_steps" --learning_rate="$learning_rate_phase2"
  --seed="$seed" "${PRECISION_FLAGS[@]}")
[ "$accumulate_gradients" = true ] && phase2+=(--gradient_accumulation_steps="$gradient_accumulation_steps_phase2")
[ "$allreduce_post_accumulation" = true ] && phase2+=(--allreduce_post_accumulation)
[ "$allreduce_post_accumulation_fp16" = true ] && phase2+=(--allreduce_post_accumulation_fp16)
phase2+=(--do_train --phase2 --resume_from_checkpoint --phase1_end_step="$train_steps" "${summary[@]}")
[ "$form" = HEAD ] && [ "$phase2_bin_size" != none ] && phase2+=(--bin_size="$phase2_bin_size")
phase2+=("${eval_phase2[@]}" "${extra[@]}")

[ -z "$form_note" ] || note "$form_note"
if [ "$DRY_RUN" = 1 ]; then
  print_command "${phase1[@]}"
  print_command "${phase2[@]}"
  exit 0
fi

run_phase() {  # phase, global batch per GPU, then the command
  local phase=$1 batch=$2 log
  shift 2
  print_command "$@"
  if [ "$create_logfile" = true ]; then
    log="$RESULTS_DIR/$job_name.pyt_bert_pretraining_phase${phase}_${precision}_gbs$((10#$batch * 10#$num_gpus)).$(date +%y%m%d%H%M%S).log"
    echo "Logs written to $log"
    "$@" 2>&1 | tee "$log"
  else
    "$@"
  fi
}

mkdir -p "$CHECKPOINTS_DIR"
keep_aside "$RESULTS_DIR/dllogger.json"
keep_aside "$RESULTS_DIR/dllogger_phase1.json"
run_phase 1 "$train_batch_size" "${phase1[@]}"
[ -e "$RESULTS_DIR/dllogger.json" ] && mv -- "$RESULTS_DIR/dllogger.json" "$RESULTS_DIR/dllogger_phase1.json"
echo "phase 1 finished; its dllogger events are in $RESULTS_DIR/dllogger_phase1.json"
run_phase 2 "$train_batch_size_phase2" "${phase2[@]}"
echo "finished pre-training; checkpoints in $CHECKPOINTS_DIR, phase 2's events in $RESULTS_DIR/dllogger.json"
