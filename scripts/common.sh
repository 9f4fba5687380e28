#!/usr/bin/env bash
# Helpers sourced by the launchers (run_pretraining.sh, run_squad.sh, run_glue.sh).

PYTHON=${PYTHON:-python3}

# The number of GPUs nvidia-smi lists, or 1 on a machine without one (CPU: one process).
default_gpus() {
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    nvidia-smi -L | wc -l
  else
    echo 1
  fi
}

# Sets the array PRECISION_FLAGS for a launcher precision: fp16, bf16, tf32 (fp32 with TF32
# matmuls, as NVIDIA's containers run it) or fp32 (exact fp32); exits on anything else.
set_precision_flags() {
  case "$1" in
    fp16) PRECISION_FLAGS=(--fp16) ;;
    bf16) PRECISION_FLAGS=(--bf16) ;;
    tf32) PRECISION_FLAGS=(--precision tf32) ;;
    fp32) PRECISION_FLAGS=(--precision fp32) ;;
    *) echo "$(basename "$0"): unknown precision '$1' (fp16, bf16, tf32 or fp32)" >&2; exit 1 ;;
  esac
}

# Sets the array LAUNCHER: plain python for one process, torchrun for several on this node.
set_launcher() {
  if [ "$1" -le 1 ]; then
    LAUNCHER=("$PYTHON")
  else
    LAUNCHER=("$PYTHON" -m torch.distributed.run --nproc_per_node="$1" --standalone)
  fi
}
