#!/usr/bin/env bash
# Quick start, the README's first command: the whole pipeline on the bundled sample, on a CPU,
# in a few minutes, through the same launchers as a real run.
#   1. install the CPU requirements (a no-op when they are already satisfied);
#   2. phase-1 (128/20) and phase-2 (512/80) HDF5 shards from the bundled WikiText-2 text, with
#      every tenth document held out in test shards;
#   3. pre-train a tiny BERT: scripts/run_pretraining.sh, phase 1 then phase 2 (preset
#      cpu_sample_tiny in scripts/configs/pretrain_config.sh), with the held-out masked-LM and
#      next-sentence loss and accuracy every 25 steps and at each phase's end;
#   4. fine-tune it on the bundled SQuAD v1.1 sample: scripts/run_squad.sh ... "train eval";
#   5. fine-tune it on the bundled MRPC sample: scripts/run_glue.sh;
#   6. print a summary table (final losses, EM/F1, accuracy, throughput) and write the loss
#      curves to results/quickstart/loss.png (scripts/plot_loss.py).
# Everything lands in results/quickstart/ (replaced on each run). The numbers are those of a
# 2-layer model trained for seconds: they show that the pipeline runs, not BERT's accuracy.
#
#   bash scripts/quickstart.sh            # QUICKSTART_DIR overrides results/quickstart
#
# QUICKSTART_STOP_AFTER=N stops after stage N (a quick check of the first stages); with
# DRY_RUN=1 as well, which needs N <= 3 (later stages need stage 3's checkpoint), the launchers
# print their commands instead of running them. The presets' output is read into arrays, never
# re-parsed by the shell, and a preset that fails stops the quick start.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
PYTHON=${PYTHON:-python3}
export PYTHON
# Huge pages for PyTorch's large CPU buffers (Linux; ignored elsewhere): a CPU training step frees
# and reallocates the same large activations, and with 4 KB pages each one pays page faults. The
# pre-training steps ran about 25% faster with it on the 2-core development machine, with the
# same weights bit for bit. Unset it (THP_MEM_ALLOC_ENABLE=0) to compare.
export THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1}
out=${QUICKSTART_DIR:-$repo/results/quickstart}
stop_after=${QUICKSTART_STOP_AFTER:-6}
if [[ ! $stop_after =~ ^[1-6]$ ]]; then
  echo "quickstart: QUICKSTART_STOP_AFTER is '$stop_after', not a stage number from 1 to 6" >&2
  exit 2
fi
if [ "${DRY_RUN:-0}" != 0 ] && [ "$stop_after" -gt 3 ]; then
  echo "quickstart: DRY_RUN=1 needs QUICKSTART_STOP_AFTER=3 or less: stages 4-6 need stage 3's checkpoint" >&2
  exit 2
fi
started=$(date +%s)
step() { printf '\n=== [%ss] %s\n' "$(($(date +%s) - started))" "$*"; }
done_with() { [ "$stop_after" -gt "$1" ] || { echo "quickstart: stopped after stage $1"; exit 0; }; }
# preset FILE FUNCTION [VAR=VALUE ...]: the preset's arguments into the array PRESET.
preset() {
  local file=$1 name=$2 words
  shift 2
  words=$(env "$@" bash -c 'source "$1" && "$2"' preset "scripts/configs/$file" "$name")
  read -r -a PRESET <<<"$words"
}

step "1/6 installing the CPU requirements"
bash scripts/install.sh
done_with 1

if [ -d "$out" ]; then
  echo "quickstart: replacing the previous run in $out"
  rm -rf "$out"
fi
mkdir -p "$out"

step "2/6 building phase-1 and phase-2 shards from data/sample/wikitext2_valid_sentences.txt"
bash scripts/make_sample_shards.sh "$out/shards"
done_with 2

step "3/6 pre-training a tiny BERT (phase 1: 50 steps at 128, phase 2: 20 steps at 512)"
preset pretrain_config.sh cpu_sample_tiny SAMPLE_SHARDS="$out/shards"
# held out: every tenth document of the sample, scored every 25 steps and at each phase's end
EVAL_DIR_PHASE1="$out/shards/phase1_test" EVAL_DIR_PHASE2="$out/shards/phase2_test" EVAL_EVERY=25 \
  RESULTS_DIR="$out/pretraining" bash scripts/run_pretraining.sh "${PRESET[@]}"
done_with 3
checkpoint=$(ls -1v "$out"/pretraining/checkpoints/ckpt_*.pt | tail -n 1)
echo "quickstart: fine-tuning from $checkpoint"

step "4/6 fine-tuning on the SQuAD v1.1 sample (train, then predict and score the dev sample)"
preset squad_config.sh cpu_sample_tiny INIT_CHECKPOINT="$checkpoint" OUT_DIR="$out/squad"
LOG_FREQ=5 bash scripts/run_squad.sh "${PRESET[@]:0:11}" "train eval" "${PRESET[@]:12}"
done_with 4

step "5/6 fine-tuning on the MRPC sample"
preset glue_config.sh cpu_sample_tiny INIT_CHECKPOINT="$checkpoint" OUT_DIR="$out/mrpc"
LOG_FREQ=5 bash scripts/run_glue.sh "${PRESET[@]}"
done_with 5

step "6/6 summary"
# run_pretraining.sh leaves phase 1's events in dllogger_phase1.json and phase 2's in dllogger.json.
pretraining_logs=("$out/pretraining/dllogger_phase1.json" "$out/pretraining/dllogger.json")
"$PYTHON" -m scripts.plot_loss "${pretraining_logs[@]}" "$out/squad/dllogger.json" \
  "$out/mrpc/dllogger.json" --output "$out/loss.png"
"$PYTHON" -m scripts.summarize_runs --pretraining "${pretraining_logs[@]}" \
  --squad "$out/squad/dllogger.json" --glue "$out/mrpc/dllogger.json" \
  --seconds "$(($(date +%s) - started))" --output "$out/summary.md"
