#!/usr/bin/env bash
# Download and prepare everything pre-training and fine-tuning need, with the bertPrep.py steps of
# NVIDIA 21.11's script of the same name (each step is skipped when already done):
#
#   bash data/create_datasets_from_start.sh [wiki_only|wiki_books]
#
# wiki_only (default): English Wikipedia. wiki_books: Wikipedia + BookCorpus, read from a local
# copy (.txt books in $BOOKS_DIR, else $BERT_PREP_WORKING_DIR/download/bookscorpus), since it can
# no longer be downloaded. Downloads Wikipedia, Google's pre-trained weights (whose uncased vocab
# the shards use), SQuAD, MRPC and SST-2; formats and shards the text; writes phase-1 (128/20)
# and phase-2 (512/80) HDF5 shards with --do_lower_case 1 and checks them. No root, no docker.
#
# Environment: BERT_PREP_WORKING_DIR (default: data/ of this repository), N_PROCESSES (default:
# all cores; bertPrep.py's own default is NVIDIA's 4), WIKI_DATE (pinned dump date), WIKI_MIRROR
# (a mirror to try first), WIKI_DUMP (a local pages-articles dump: no Wikipedia download),
# BOOKS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
to_download=${1:-wiki_only}
case "$to_download" in
  wiki_only) DATASET=wikicorpus_en ;;
  wiki_books) DATASET=books_wiki_en_corpus ;;
  *) echo "create_datasets_from_start.sh: expected wiki_only or wiki_books, got '$to_download'" >&2
     exit 2 ;;
esac
export BERT_PREP_WORKING_DIR=${BERT_PREP_WORKING_DIR:-$PWD/data}
PYTHON=${PYTHON:-python3}
books=${BOOKS_DIR:-$BERT_PREP_WORKING_DIR/download/bookscorpus}
if [ "$to_download" = wiki_books ] && ! compgen -G "$books/*.txt" >/dev/null; then
  echo "create_datasets_from_start.sh: wiki_books needs BookCorpus as .txt books in $books" \
       "(or set BOOKS_DIR); it can no longer be downloaded" >&2
  exit 2
fi
prep() { "$PYTHON" data/bertPrep.py --n_processes "${N_PROCESSES:-$(nproc)}" "$@"; }
wiki=()
[ -n "${WIKI_DATE:-}" ] && wiki+=(--wiki_date "$WIKI_DATE")
[ -n "${WIKI_MIRROR:-}" ] && wiki+=(--mirror "$WIKI_MIRROR")
[ -n "${WIKI_DUMP:-}" ] && wiki+=(--dump "$WIKI_DUMP")

# Download (NVIDIA's also downloaded BookCorpus here for wiki_books)
prep --action download --dataset wikicorpus_en "${wiki[@]}"
prep --action download --dataset google_pretrained_weights  # includes the vocabulary
prep --action download --dataset squad
prep --action download --dataset mrpc
prep --action download --dataset sst-2

# Format the text files: one article (or book) per line
if [ "$to_download" = wiki_books ]; then
  prep --action text_formatting --dataset bookscorpus
fi
prep --action text_formatting --dataset wikicorpus_en "${wiki[@]}"

# Shard the text files
prep --action sharding --dataset "$DATASET"

# HDF5 shards for phase 1 and phase 2 (each checked after it is written)
vocab=$BERT_PREP_WORKING_DIR/download/google_pretrained_weights/uncased_L-24_H-1024_A-16/vocab.txt
prep --action create_hdf5_files --dataset "$DATASET" --max_seq_length 128 \
  --max_predictions_per_seq 20 --vocab_file "$vocab" --do_lower_case 1
prep --action create_hdf5_files --dataset "$DATASET" --max_seq_length 512 \
  --max_predictions_per_seq 80 --vocab_file "$vocab" --do_lower_case 1

echo "Phase-1 shards: $BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/$DATASET"
echo "Phase-2 shards: $BERT_PREP_WORKING_DIR/hdf5_lower_case_1_seq_len_512_max_pred_80_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/$DATASET"
