#!/usr/bin/env bash
# Quick start, the README's first command: the whole pipeline on the bundled sample, on a CPU,
# in a few minutes, through the same launchers as a real run.
#   1. install the CPU requirements (a no-op when they are already satisfied);
#   2. phase-1 (128/20) and phase-2 (512/80) HDF5 shards from the bundled WikiText-2 text;
#   3. pre-train a tiny BERT: scripts/run_pretraining.sh, phase 1 then phase 2 (preset
#      cpu_sample_tiny in scripts/configs/pretrain_config.sh);
#   4. fine-tune it on the bundled SQuAD v1.1 sample: scripts/run_squad.sh ... "train eval";
#   5. fine-tune it on the bundled MRPC sample: scripts/run_glue.sh;
#   6. print a summary table (final losses, EM/F1, accuracy, throughput) and write the loss
#      curves to results/quickstart/loss.png (scripts/plot_loss.py).
# Everything lands in results/quickstart/ (replaced on each run). The numbers are those of a
# 2-layer model trained for seconds: they show that the pipeline runs, not BERT's accuracy.
#
#   bash scripts/quickstart.sh            # QUICKSTART_DIR overrides results/quickstart
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
PYTHON=${PYTHON:-python3}
export PYTHON
out=${QUICKSTART_DIR:-$repo/results/quickstart}
started=$(date +%s)
step() { printf '\n=== [%ss] %s\n' "$(($(date +%s) - started))" "$*"; }

step "1/6 installing the CPU requirements"
bash scripts/install.sh

if [ -d "$out" ]; then
  echo "quickstart: replacing the previous run in $out"
  rm -rf "$out"
fi
mkdir -p "$out"

step "2/6 building phase-1 and phase-2 shards from data/sample/wikitext2_valid_sentences.txt"
bash scripts/make_sample_shards.sh "$out/shards"

step "3/6 pre-training a tiny BERT (phase 1: 50 steps at 128, phase 2: 20 steps at 512)"
read -r -a pretrain < <(source scripts/configs/pretrain_config.sh && SAMPLE_SHARDS="$out/shards" cpu_sample_tiny)
RESULTS_DIR="$out/pretraining" bash scripts/run_pretraining.sh "${pretrain[@]}"
checkpoint=$(ls -1v "$out"/pretraining/checkpoints/ckpt_*.pt | tail -n 1)
echo "quickstart: fine-tuning from $checkpoint"

step "4/6 fine-tuning on the SQuAD v1.1 sample (train, then predict and score the dev sample)"
read -r -a squad < <(source scripts/configs/squad_config.sh && INIT_CHECKPOINT="$checkpoint" \
  OUT_DIR="$out/squad" cpu_sample_tiny)
LOG_FREQ=5 bash scripts/run_squad.sh "${squad[@]:0:11}" "train eval" "${squad[@]:12}"

step "5/6 fine-tuning on the MRPC sample"
read -r -a glue < <(source scripts/configs/glue_config.sh && INIT_CHECKPOINT="$checkpoint" \
  OUT_DIR="$out/mrpc" cpu_sample_tiny)
LOG_FREQ=5 bash scripts/run_glue.sh "${glue[@]}"

step "6/6 summary"
"$PYTHON" -m scripts.plot_loss "$out/pretraining/dllogger.json" "$out/squad/dllogger.json" \
  "$out/mrpc/dllogger.json" --output "$out/loss.png"
"$PYTHON" -m scripts.summarize_runs --pretraining "$out/pretraining/dllogger.json" \
  --squad "$out/squad/dllogger.json" --glue "$out/mrpc/dllogger.json" \
  --seconds "$(($(date +%s) - started))" --output "$out/summary.md"
