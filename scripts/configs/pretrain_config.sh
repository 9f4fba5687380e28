#!/usr/bin/env bash
# Pre-training presets: each function echoes the positional arguments of
# scripts/run_pretraining.sh in order (spec §3.5). Use:
#   bash scripts/run_pretraining.sh $(source scripts/configs/pretrain_config.sh && dgxa100_8gpu_fp16)
# The data folders follow $BERT_PREP_WORKING_DIR (default: data/ of this repository).

_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_prep=${BERT_PREP_WORKING_DIR:-$_repo/data}
_p1=$_prep/hdf5_lower_case_1_seq_len_128_max_pred_20_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/wikicorpus_en/
_p2=$_prep/hdf5_lower_case_1_seq_len_512_max_pred_80_masked_lm_prob_0.15_random_seed_12345_dupe_factor_5/wikicorpus_en/

# $1 batch, $2 precision, $3 gpus, $4 phase-1 GA, $5 batch phase 2, $6 phase-2 GA, $7 AR16
_preset() {
  echo "$1" 6e-3 "$2" "$3" 0.2843 7038 200 false true true "$4" 42 bert_lamb_pretraining true "$7" \
    "$5" 4e-3 0.128 1563 "$6" "$_p1" "$_p2" "$_repo" None
}

# NVIDIA 21.11 presets
dgxa100_8gpu_fp16() { _preset 8192 fp16 8 128 4096 256 true; }
dgxa100_8gpu_tf32() { _preset 8192 tf32 8 128 4096 512 false; }
dgx2_16gpu_fp16() { _preset 4096 fp16 16 64 2048 128 true; }
dgx2_16gpu_fp32() { _preset 4096 fp32 16 128 2048 256 false; }
dgx1_8gpu_fp16() { _preset 8192 fp16 8 512 4096 512 true; }
dgx1_8gpu_fp32() { _preset 8192 fp32 8 1024 4096 1024 false; }
# NVIDIA HEAD presets (the same launcher arguments)
dgxa100-80g_8gpu_fp16() { _preset 8192 fp16 8 32 4096 128 true; }
dgxa100-80g_8gpu_tf32() { _preset 8192 tf32 8 64 4096 256 false; }
dgx1-32g_8gpu_fp16() { _preset 8192 fp16 8 64 4096 256 true; }
dgx1-32g_8gpu_fp32() { _preset 8192 fp32 8 128 4096 512 false; }
# Ours: 8x H100 80GB in bf16 (no loss scaling); micro-batch 256 (phase 1) and 32 (phase 2).
dgxh100_8gpu_bf16() { _preset 8192 bf16 8 32 4096 128 false; }

# Ours: the bundled sample on a CPU with the tiny model, in minutes. Shards come from
# scripts/make_sample_shards.sh (default folder results/sample_shards/{phase1,phase2}).
cpu_sample_tiny() {
  local shards=${SAMPLE_SHARDS:-$_repo/results/sample_shards}
  echo 32 2e-2 fp32 1 0.1 50 25 false true true 1 42 bert_sample_tiny true false \
    8 1e-2 0.1 20 1 "$shards/phase1" "$shards/phase2" "$_repo" None \
    none 0 0 0 0 none static "$_repo/bert_configs/tiny.json"
}
