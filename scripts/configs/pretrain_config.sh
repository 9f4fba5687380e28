#!/usr/bin/env bash
# Pre-training presets: each function echoes positional arguments of scripts/run_pretraining.sh
# in order, NVIDIA's values preset by preset:
#   bash scripts/run_pretraining.sh $(source scripts/configs/pretrain_config.sh && dgxa100_8gpu_fp16)
#
# NVIDIA 21.11's presets echo arguments 1-23 (the launcher's 21.11 form: HDF5 shards, no length
# bins); HEAD's echo all 32 (HEAD's form: LDDL parquet folders, phase-2 bins of 64, static
# masking, bert_configs/large.json). Paths are echoed relative to the repository root (CODEDIR
# is "."), as preset_paths.sh explains.
#
# Data folders: 21.11's presets named .../hdf5_..._dupe_factor_5_shard_1472_test_split_10/
# books_wiki_en_corpus/training, a folder NVIDIA's own data scripts never wrote; these presets
# name the folders data/create_datasets_from_start.sh writes: books_wiki_en_corpus (wiki_books)
# when those shards exist, else wikicorpus_en (wiki_only).

source "$(dirname "${BASH_SOURCE[0]}")/preset_paths.sh"

_hdf5_folder() {  # seq pred
  local base dataset=wikicorpus_en
  base=$(_prep)/hdf5_lower_case_1_seq_len_$1_max_pred_$2_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5
  [ -d "$base/books_wiki_en_corpus" ] && dataset=books_wiki_en_corpus
  printf '%s' "$base/$dataset/"
}

# 21.11: arguments 1-23. $1 batch, $2 precision, $3 GPUs, $4 phase-1 accumulation, $5 phase-2
# batch, $6 phase-2 accumulation, $7 allreduce_post_accumulation_fp16.
_preset_21_11() {
  _emit "$1" 6e-3 "$2" "$3" 0.2843 7038 200 false true true "$4" 42 bert_lamb_pretraining true \
    "$7" "$5" 4e-3 0.128 1563 "$6" "$(_hdf5_folder 128 20)" "$(_hdf5_folder 512 80)" "$_repo"
}

# HEAD: all 32 arguments, the same parameters as above.
_preset_head() {
  local prep
  prep=$(_prep)
  _emit "$1" 6e-3 "$2" "$3" 0.2843 7038 200 false true true "$4" 42 bert_lamb_pretraining true \
    "$7" "$5" 4e-3 0.128 1563 "$6" "$prep/pretrain/phase1/unbinned/parquet/" \
    "$prep/pretrain/phase2/bin_size_64/parquet/" "$_repo" None "$prep/wikipedia/source/" 128 128 4 \
    0.9 64 static bert_configs/large.json
}

# NVIDIA 21.11 presets
dgxa100_8gpu_fp16() { _preset_21_11 8192 fp16 8 128 4096 256 true; }
dgxa100_8gpu_tf32() { _preset_21_11 8192 tf32 8 128 4096 512 false; }
dgx2_16gpu_fp16() { _preset_21_11 4096 fp16 16 64 2048 128 true; }
dgx2_16gpu_fp32() { _preset_21_11 4096 fp32 16 128 2048 256 false; }
dgx1_8gpu_fp16() { _preset_21_11 8192 fp16 8 512 4096 512 true; }
dgx1_8gpu_fp32() { _preset_21_11 8192 fp32 8 1024 4096 1024 false; }
# NVIDIA HEAD presets
dgxa100-80g_8gpu_fp16() { _preset_head 8192 fp16 8 32 4096 128 true; }
dgxa100-80g_8gpu_tf32() { _preset_head 8192 tf32 8 64 4096 256 false; }
dgx1-32g_8gpu_fp16() { _preset_head 8192 fp16 8 64 4096 256 true; }
dgx1-32g_8gpu_fp32() { _preset_head 8192 fp32 8 128 4096 512 false; }
# Ours: 8x H100 80GB in bf16 (no loss scaling), 21.11's form on the HDF5 shards of the data
# pipeline; micro-batch 256 (phase 1) and 32 (phase 2).
dgxh100_8gpu_bf16() { _preset_21_11 8192 bf16 8 32 4096 128 false; }

# Ours: the bundled sample on a CPU with the tiny model, in about a minute: HEAD's form for the
# tiny model config (32), without length bins. Shards come from scripts/make_sample_shards.sh
# (default folder results/sample_shards/{phase1,phase2}; SAMPLE_SHARDS names another).
cpu_sample_tiny() {
  local shards=${SAMPLE_SHARDS:-$_repo/results/sample_shards} prep
  prep=$(_prep)
  _emit 32 2e-2 fp32 1 0.1 50 25 false true true 1 42 bert_sample_tiny true false \
    8 1e-2 0.1 20 1 "$shards/phase1" "$shards/phase2" "$_repo" None "$prep/wikipedia/source/" \
    "$(nproc 2>/dev/null || echo 1)" 128 0 0.9 none static bert_configs/tiny.json
}
