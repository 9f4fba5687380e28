#!/usr/bin/env bash
# Phase-1 (128/20) and phase-2 (512/80) HDF5 shards from the bundled sample corpus, for the CPU
# preset `cpu_sample_tiny` and the quick start: four text shards by document, then
# create_pretraining_data.py in two processes. Output: ${1:-results/sample_shards}/{phase1,phase2}.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/results/sample_shards}
PYTHON=${PYTHON:-python3}
dupe=${DUPE_FACTOR:-2}
"$PYTHON" - "$repo/data/sample/wikitext2_valid_sentences.txt" "$out/text" <<'PY'
import sys
from pathlib import Path

source, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
documents = source.read_text(encoding="utf-8").strip().split("\n\n")
for i in range(4):
    (out / f"sample_training_{i}.txt").write_text("\n\n".join(documents[i::4]) + "\n", encoding="utf-8")
PY
for shape in "phase1 128 20" "phase2 512 80"; do
  read -r name seq pred <<<"$shape"
  "$PYTHON" "$repo/create_pretraining_data.py" --vocab_file "$repo/vocab/vocab" \
    --input_file "$out/text" --output_dir "$out/$name" --max_seq_length "$seq" \
    --max_predictions_per_seq "$pred" --dupe_factor "$dupe" --processes 2 --disable_progress_bar
done
