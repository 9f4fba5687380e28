#!/usr/bin/env bash
# Sourced by the preset files beside it: how presets echo paths.
#
# Presets are consumed as `bash scripts/run_X.sh $(source scripts/configs/X_config.sh && preset)`,
# and `$(...)` splits its output at whitespace. So presets echo paths relative to the repository
# root (the launchers look a relative path up in the current directory, then in the repository
# root), never the checkout's absolute path, which may hold spaces. A path from the environment
# (BERT_PREP_WORKING_DIR, INIT_CHECKPOINT, ...) is echoed relative when it lies in the
# repository, else as given; one that holds whitespace cannot survive `$(...)`, so the preset
# explains on stderr and echoes only --preset-failed, which every launcher refuses.

_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# One value as presets echo it; returns 1 after one line on stderr when it cannot be.
_preset_path() {
  local path=$1
  case "$path" in "$_repo") path=. ;; "$_repo"/*) path=${path#"$_repo"/} ;; esac
  if [[ $path =~ [[:space:]] ]]; then
    echo "preset: '$path' holds whitespace, which \$(...) would split; use a path without spaces or pass the launcher's arguments yourself" >&2
    return 1
  fi
  printf '%s' "$path"
}

# Echoes its arguments as presets do, or --preset-failed (see above).
_emit() {
  local value out=()
  for value in "$@"; do
    value=$(_preset_path "$value") || { echo --preset-failed; return 1; }
    out+=("$value")
  done
  echo "${out[@]}"
}

# $BERT_PREP_WORKING_DIR as NVIDIA's presets read it (default: data/ of this repository).
_prep() { printf '%s' "${BERT_PREP_WORKING_DIR:-$_repo/data}"; }
