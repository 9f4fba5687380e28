#!/usr/bin/env bash
# GLUE tasks, verified against published checksums, into <download_dir>/glue/<TASK> (the folders
# scripts/run_glue.sh reads); MRPC is built from the MSR files as GLUE's own script does.
#   bash data/glue/download_glue.sh [download_dir] [task ...]   # default: all nine tasks
# Resumable and idempotent: files already verified are not fetched again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
download_dir=${1:-${BERT_PREP_WORKING_DIR:-$repo/data}/download}
shift || true
exec "${PYTHON:-python3}" -m data.download --dataset glue --download_dir "$download_dir" \
  --tasks "${@:-all}"
