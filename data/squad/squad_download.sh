#!/usr/bin/env bash
# SQuAD v1.1 and v2.0 (train, dev and the official evaluate scripts), verified against published
# checksums, into <download_dir>/squad/v1.1 and v2.0 (the folders scripts/run_squad.sh reads).
#   bash data/squad/squad_download.sh [download_dir]   # default: $BERT_PREP_WORKING_DIR/download
# Resumable and idempotent: files already verified are not fetched again.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
exec "${PYTHON:-python3}" -m data.download --dataset squad \
  --download_dir "${1:-${BERT_PREP_WORKING_DIR:-$repo/data}/download}"
