#!/usr/bin/env bash
# Phase-1 (128/20) and phase-2 (512/80) HDF5 shards from the bundled sample corpus, for the CPU
# preset `cpu_sample_tiny` and the quick start: every tenth document is held out for evaluation
# (one test shard per phase, named `*_test_*` as NVIDIA's data preparation names them), the rest
# goes to four training shards by document; create_pretraining_data.py in two processes.
# Output: ${1:-results/sample_shards}/{phase1,phase2} and, held out, .../{phase1_test,phase2_test}.
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
held_out, training = documents[9::10], [d for i, d in enumerate(documents) if i % 10 != 9]
for name, shards in (("training", [training[i::4] for i in range(4)]), ("test", [held_out])):
    (out / name).mkdir(exist_ok=True)
    for i, part in enumerate(shards):
        text = "\n\n".join(part) + "\n"
        (out / name / f"sample_{name}_{i}.txt").write_text(text, encoding="utf-8")
PY
for shape in "phase1 128 20" "phase2 512 80"; do
  read -r name seq pred <<<"$shape"
  for part in training test; do
    folder=$out/$name
    [ "$part" = test ] && folder=${folder}_test
    "$PYTHON" "$repo/create_pretraining_data.py" --vocab_file "$repo/vocab/vocab" \
      --input_file "$out/text/$part" --output_dir "$folder" --max_seq_length "$seq" \
      --max_predictions_per_seq "$pred" --dupe_factor "$dupe" --processes 2 --disable_progress_bar
  done
done
