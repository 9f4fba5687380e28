#!/usr/bin/env bash
# Download and prepare everything pre-training and fine-tuning need, as NVIDIA's script of the
# same name does, through the stages of data/pipeline.py (each skipped when already done):
#
#   bash data/create_datasets_from_start.sh [wiki_only|wiki_books]
#
# wiki_only (default): English Wikipedia. wiki_books: Wikipedia + a local BookCorpus copy in
# $BOOKS_DIR (a folder of .txt books; it can no longer be downloaded). Also downloads SQuAD,
# GLUE and Google's pre-trained weights, then writes phase-1 (128/20) and phase-2 (512/80) HDF5
# shards and verifies them. Needs no root and no docker.
#
# Environment: BERT_PREP_WORKING_DIR (default: data/ of this repository), N_PROCESSES (default:
# all cores), WIKI_DATE (pinned dump date), WIKI_MIRROR (a mirror to try first), WIKI_DUMP (a
# local pages-articles dump: no Wikipedia download), BOOKS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
to_download=${1:-wiki_only}
case "$to_download" in
  wiki_only) dataset=wikicorpus_en ;;
  wiki_books) dataset=books_wiki_en_corpus ;;
  *) echo "create_datasets_from_start.sh: expected wiki_only or wiki_books, got '$to_download'" >&2
     exit 2 ;;
esac
export BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$PWD/data}
PYTHON=${PYTHON:-python3}
common=(--dataset "$dataset" --n_processes "${N_PROCESSES:-$(nproc)}")
wiki=()
[ -n "${WIKI_DATE:-}" ] && wiki+=(--wiki_date "$WIKI_DATE")
[ -n "${WIKI_MIRROR:-}" ] && wiki+=(--mirror "$WIKI_MIRROR")
[ -n "${WIKI_DUMP:-}" ] && wiki+=(--dump "$WIKI_DUMP")
[ -n "${BOOKS_DIR:-}" ] && common+=(--books_dir "$BOOKS_DIR")

"$PYTHON" -m data.pipeline download "${common[@]}" "${wiki[@]}" \
  --downloads wikicorpus_en squad glue google_pretrained_weights
"$PYTHON" -m data.pipeline extract format shard "${common[@]}" "${wiki[@]}"
for shape in "128 20" "512 80"; do
  read -r seq pred <<<"$shape"
  "$PYTHON" -m data.pipeline hdf5 verify "${common[@]}" --max_seq_length "$seq" \
    --max_predictions_per_seq "$pred" --do_lower_case 1 --vocab_file vocab/vocab
done
echo "Phase-1 shards: $BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/$dataset"
echo "Phase-2 shards: $BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_512_max_pred_80_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/$dataset"
