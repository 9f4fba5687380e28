#!/usr/bin/env bash
# SQuAD presets: each function echoes positional arguments of scripts/run_squad.sh in order
# (spec §3.5): init_checkpoint epochs batch lr warmup precision num_gpu seed squad_dir vocab OUT_DIR,
# so mode, config and max_steps keep the launcher's defaults (the CPU preset echoes all 14).
#   bash scripts/run_squad.sh $(source scripts/configs/squad_config.sh && dgxa100-80g_8gpu_fp16)

_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_prep=${BERT_PREP_WORKING_DIR:-$_repo/data}
_init=${INIT_CHECKPOINT:-$_repo/checkpoints/bert_uncased.pt}

_squad() {  # batch lr warmup precision gpus
  echo "$_init" 2.0 "$1" "$2" "$3" "$4" "$5" 1 "$_prep/download/squad/v1.1" "$_repo/vocab/vocab" \
    "$_repo/results/SQuAD"
}

# NVIDIA 21.11 presets (21.11 had no warm-up argument: its default, 0.1, is used)
dgx1_8gpu_fp16() { _squad 10 3e-5 0.1 fp16 8; }
dgx1_8gpu_fp32() { _squad 4 3e-5 0.1 fp32 8; }
dgx2_16gpu_fp16() { _squad 16 3e-5 0.1 fp16 16; }
dgx2_16gpu_fp32() { _squad 8 3e-5 0.1 fp32 16; }  # NVIDIA's said fp16 here (weak spot 10)
dgxa100_8gpu_fp16() { _squad 32 3e-5 0.1 fp16 8; }
dgxa100_8gpu_tf32() { _squad 16 3e-5 0.1 tf32 8; }
# NVIDIA HEAD presets
dgxa100-80g_8gpu_fp16() { _squad 32 4.6e-5 0.2 fp16 8; }
dgxa100-80g_8gpu_tf32() { _squad 32 4.6e-5 0.2 tf32 8; }
dgx1-32g_8gpu_fp16() { _squad 32 4.6e-5 0.2 fp16 8; }
dgx1-32g_8gpu_fp32() { _squad 16 4.6e-5 0.2 fp32 8; }
# Ours: 8x H100 in bf16.
dgxh100_8gpu_bf16() { _squad 32 4.6e-5 0.2 bf16 8; }

# Ours: the bundled SQuAD sample on a CPU with the tiny model pre-trained by the quick start
# (INIT_CHECKPOINT, default results/checkpoints/ckpt_70.pt); all 14 arguments.
cpu_sample_tiny() {
  local init=${INIT_CHECKPOINT:-$_repo/results/checkpoints/ckpt_70.pt}
  echo "$init" 2.0 16 1e-3 0.1 fp32 1 1 "$_repo/data/sample/squad/v1.1" "$_repo/vocab/vocab" \
    "${OUT_DIR:-$_repo/results/SQuAD_sample}" train+eval "$_repo/bert_configs/tiny.json" -1
}
