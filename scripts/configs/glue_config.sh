#!/usr/bin/env bash
# GLUE presets (spec §3.5): {mrpc|sst-2}_{machine}_{1|2|4|8|16}gpu_{precision}, each echoing the
# first 14 positional arguments of scripts/run_glue.sh (mode and seed keep their defaults).
#   bash scripts/run_glue.sh $(source scripts/configs/glue_config.sh && mrpc_dgxa100_8gpu_fp16)
# The per-GPU batch is the global batch / GPUs; the accumulation starts at 1 and doubles while
# batch / accumulation exceeds the machine's capacity for that precision (NVIDIA's derivation).

_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
_prep=${BERT_PREP_WORKING_DIR:-$_repo/data}
_init=${INIT_CHECKPOINT:-$_repo/checkpoints/bert_uncased.pt}

# task global_batch lr warmup epochs gpus capacity precision
_glue() {
  local task=$1 global=$2 lr=$3 warmup=$4 epochs=$5 gpus=$6 capacity=$7 precision=$8
  local batch=$((global / gpus)) accumulation=1
  while [ $((batch / accumulation)) -gt "$capacity" ]; do accumulation=$((accumulation * 2)); done
  local folder
  folder=$(echo "$task" | tr '[:lower:]' '[:upper:]')
  echo "$_init" "$_prep/download/glue/$folder/" "$_repo/vocab/vocab" "$_repo/bert_configs/large.json" \
    "$_repo/results/$folder" "$task" "$gpus" "$batch" "$accumulation" "$lr" "$warmup" "$epochs" \
    -1.0 "$precision"
}

# Define every preset: machine precision capacity, for 1..16 (21.11) or 1..8 (HEAD) GPUs.
_define() {  # version machine precision capacity mrpc_lr mrpc_warmup sst_batch sst_lr
  local gpus_list="1 2 4 8"
  [ "$1" = "21.11" ] && gpus_list="1 2 4 8 16"
  for gpus in $gpus_list; do
    eval "mrpc_${2}_${gpus}gpu_${3}() { _glue mrpc 128 $5 $6 3 $gpus $4 $3; }"
    eval "sst-2_${2}_${gpus}gpu_${3}() { _glue sst-2 $7 $8 0.1 3 $gpus $4 $3; }"
  done
}
# NVIDIA 21.11
_define 21.11 dgxa100 fp16 128 2.4e-5 0.1 1024 3e-5
_define 21.11 dgxa100 tf32 64 2.4e-5 0.1 512 2e-5
_define 21.11 dgx2 fp16 128 2.4e-5 0.1 1024 3e-5
_define 21.11 dgx2 fp32 64 2.4e-5 0.1 1024 3e-5
# NVIDIA HEAD
_define HEAD dgxa100-80g fp16 256 1.8e-5 0.3 1024 1e-5
_define HEAD dgxa100-80g tf32 128 1.8e-5 0.3 1024 1e-5
_define HEAD dgx1-32g fp16 128 1.8e-5 0.3 1024 1e-5
_define HEAD dgx1-32g fp32 64 1.8e-5 0.3 512 1e-5
# Ours: H100 80GB in bf16
_define HEAD dgxh100 bf16 256 1.8e-5 0.3 1024 1e-5

# Ours: the bundled MRPC sample on a CPU with the tiny model pre-trained by the quick start.
cpu_sample_tiny() {
  local init=${INIT_CHECKPOINT:-$_repo/results/checkpoints/ckpt_70.pt}
  echo "$init" "$_repo/data/sample/glue/MRPC/" "$_repo/vocab/vocab" "$_repo/bert_configs/tiny.json" \
    "${OUT_DIR:-$_repo/results/MRPC_sample}" mrpc 1 16 1 1e-3 0.1 2 -1.0 fp32
}
