#!/usr/bin/env bash
# Helpers sourced by the launchers (run_pretraining.sh, run_squad.sh, run_glue.sh) and run.sub:
# argument checks, path resolution, precision flags, the process launcher, dry-run printing and
# keeping an earlier run's log aside.
#
# Every check reads its value as a plain string (regular expressions, never `$((...))` on
# unchecked input, which would run a command substitution hidden in an array index such as
# `a[$(cmd)]`) and stops with one line naming the argument (position and NVIDIA's name) and exit
# status 2, before any work starts. The caller sets `repo` (the repository root) and may set
# LAUNCHER_NAME (default: the script's file name) before sourcing this file.

PYTHON=${PYTHON:-python3}
LAUNCHER_NAME=${LAUNCHER_NAME:-$(basename "$0")}
declare -A ARG=() POS=()

die() { printf '%s: %s\n' "$LAUNCHER_NAME" "$*" >&2; exit 2; }
note() { printf '%s: note: %s\n' "$LAUNCHER_NAME" "$*" >&2; }

# bind_arguments NAME... -- "$@": ARG[NAME] is the NAME's positional value ("" when not given)
# and POS[NAME] its position, so that messages can say "argument 6 precision".
bind_arguments() {
  local names=() i
  while [ "$1" != "--" ]; do names+=("$1"); shift; done
  shift
  for i in "${!names[@]}"; do
    POS[${names[i]}]=$((i + 1))
    ARG[${names[i]}]=${*:i+1:1}
  done
}

# "argument 6 precision" for a bound positional argument, else the name itself (run.sub's
# environment variables).
where() {
  if [ -n "${POS[$1]:-}" ]; then printf 'argument %s %s' "${POS[$1]}" "$1"; else printf '%s' "$1"; fi
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_number() { [[ $1 =~ ^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$ ]]; }
is_precision() { [[ $1 =~ ^(fp16|fp32|tf32|bf16|fp32_strict)$ ]]; }

# Upper limits, the entry scripts' own: generous for any real run and far inside bash's 64-bit
# arithmetic, so a longer value is refused by its digits before any `$((...))` could wrap it.
LIMIT_COUNT="1099511627776 2**40"                       # steps, samples and other counts
LIMIT_BATCH="1048576 2**20 samples per process per step" # batch sizes, accumulation steps
LIMIT_PROCESSES="4096 2**12 processes on one machine"    # GPUs, workers
LIMIT_SHARDS="1048576 2**20 shard files"
LIMIT_SEED="4294963199 2**32 - 4097"                     # numpy's and torch's seeds, ranks added
LIMIT_EPOCHS="1048576 2**20 passes over the data"

# A refused value quoted back, cut short: a 5,000-digit argument stays a one-line message.
shown() {
  if [ "${#1}" -le 24 ]; then printf '%s' "$1"; else printf '%s... (%s characters)' "${1:0:24}" "${#1}"; fi
}

# not_above DIGITS MAXIMUM: compares digit strings by length then as text; no arithmetic.
not_above() {
  local value=${1#"${1%%[!0]*}"}  # leading zeros dropped
  [ "${#value}" -lt "${#2}" ] || { [ "${#value}" -eq "${#2}" ] && ! [[ $value > $2 ]]; }
}

# need_positive_int NAME VALUE [LIMIT]: 1 up to the LIMIT_* given (default LIMIT_COUNT).
need_positive_int() {
  { is_uint "$2" && [[ $2 =~ [1-9] ]]; } || die "$(where "$1"): '$(shown "$2")' is not a positive integer"
  need_at_most "$1" "$2" "${3:-$LIMIT_COUNT}"
}
need_uint() {  # NAME VALUE [LIMIT]: 0 up to the LIMIT_* given (default LIMIT_COUNT)
  is_uint "$2" || die "$(where "$1"): '$(shown "$2")' is not a non-negative integer"
  need_at_most "$1" "$2" "${3:-$LIMIT_COUNT}"
}
need_at_most() {  # NAME DIGITS "MAXIMUM WORDS..."
  local maximum=${3%% *}
  not_above "$2" "$maximum" || die "$(where "$1"): '$(shown "$2")' is more than $maximum (${3#* })"
}
# need_number NAME VALUE [LIMIT]: a decimal number, at most the LIMIT_* given when one is.
need_number() {
  is_number "$2" || die "$(where "$1"): '$(shown "$2")' is not a number"
  [ -z "${3:-}" ] || awk -v x="$2" -v m="${3%% *}" 'BEGIN { exit !(x + 0 <= m + 0) }' ||
    die "$(where "$1"): '$(shown "$2")' is more than ${3%% *} (${3#* })"
}
need_bool() {
  [[ $2 =~ ^(true|false)$ ]] || die "$(where "$1"): '$2' is not true or false"
}
need_choice() {  # name value choice...
  local name=$1 value=$2 choice
  shift 2
  for choice in "$@"; do [ "$value" = "$choice" ] && return 0; done
  die "$(where "$name"): '$value' is not one of: $*"
}

# NVIDIA's positional arguments never start with "--"; a flag among them is a mistake (or the
# marker a preset prints after explaining why it could not produce its arguments).
refuse_flag_arguments() {
  local i=0 value
  for value in "$@"; do
    i=$((i + 1))
    case "$value" in
      --*) die "argument $i '$value' looks like a flag: this launcher takes NVIDIA's positional arguments only" ;;
    esac
  done
}

# Precision words, as NVIDIA's launchers map them: fp16 adds --fp16; fp32 and tf32 add nothing,
# so the entry scripts run their default, fp32 with TF32 matmuls allowed (what NVIDIA's containers
# did with fp32: PyTorch allowed TF32 by default then). Ours: bf16 adds --bf16, and fp32_strict
# adds --precision=fp32 (TF32 off, exact fp32). Sets the array PRECISION_FLAGS.
set_precision_flags() {  # name value
  case "$2" in
    fp16) PRECISION_FLAGS=(--fp16) ;;
    fp32 | tf32) PRECISION_FLAGS=() ;;
    bf16) PRECISION_FLAGS=(--bf16) ;;
    fp32_strict) PRECISION_FLAGS=(--precision=fp32) ;;
    *) die "$(where "$1"): '$2' is not fp16, fp32, tf32, bf16 or fp32_strict" ;;
  esac
}

# Paths. An absolute path or a URL (s3://...) is used as given. A relative path is looked up in
# the current directory first, then in the repository root (presets echo repository-relative
# paths: `$(...)` splits at spaces, so they must not echo a checkout path that holds some); a
# relative path found in neither place is taken from the current directory, where an output
# folder is then created.
resolve_path() {
  case "$1" in
    "" | /* | *://*) printf '%s' "$1" ;;
    *)
      if [ -e "$PWD/$1" ]; then
        printf '%s' "$PWD/$1"
      elif [ -e "$repo/$1" ]; then
        printf '%s' "$repo/$1"
      else
        printf '%s' "$PWD/$1"
      fi
      ;;
  esac
}

# The number of GPUs nvidia-smi lists, or 1 on a machine without one (CPU: one process).
default_gpus() {
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    nvidia-smi -L | wc -l
  else
    echo 1
  fi
}

# Sets the array LAUNCHER: plain python for one process, torchrun (which replaces NVIDIA's
# torch.distributed.launch) for several on this node. The count must be checked already.
set_launcher() {
  if [ "$((10#$1))" -le 1 ]; then
    LAUNCHER=("$PYTHON")
  else
    LAUNCHER=("$PYTHON" -m torch.distributed.run --nproc_per_node="$((10#$1))" --standalone)
  fi
}

# DRY_RUN=1: check everything, print the commands that would run, run and create nothing.
check_dry_run() {
  case "${DRY_RUN:-0}" in
    0 | "") DRY_RUN=0 ;;
    1) ;;
    *) die "DRY_RUN is '$DRY_RUN': 1 prints the commands without running them, 0 runs them" ;;
  esac
}

# One command on one line, each argument quoted so that the shell (or Python's shlex.split)
# reads back exactly the same arguments.
print_command() {
  local line
  printf -v line '%q ' "$@"
  printf '%s\n' "${line% }"
}

# Prints the command to run; with DRY_RUN=1 stops the launcher there, else creates the output
# folder that the command's log goes to.
announce_command() {  # out_dir command...
  local out_dir=$1
  shift
  print_command "$@"
  [ "$DRY_RUN" = 1 ] && exit 0
  mkdir -p "$out_dir" || die "cannot create the output folder '$out_dir'"
}

# Renames FILE to FILE's name with a time stamp before ".json", never replacing a file, so that
# a log left by an earlier run is kept rather than overwritten.
keep_aside() {
  local file=$1 base target stamp n=1
  [ -e "$file" ] || return 0
  stamp=$(date +%y%m%d%H%M%S)
  base=${file%.json}
  target=$base.$stamp.json
  while [ -e "$target" ]; do target=$base.$stamp-$n.json && n=$((n + 1)); done
  mv -- "$file" "$target"
  note "kept the earlier $(basename "$file") as $(basename "$target")"
}
