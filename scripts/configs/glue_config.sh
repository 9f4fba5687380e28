#!/usr/bin/env bash
# GLUE presets: {mrpc|sst-2}_{machine}_{N}gpu_{precision}, each echoing the first 14 positional
# arguments of scripts/run_glue.sh (seed and mode keep the launcher's defaults):
#   bash scripts/run_glue.sh $(source scripts/configs/glue_config.sh && mrpc_dgxa100_8gpu_fp16)
#
# Machines: NVIDIA 21.11's dgxa100 (fp16, tf32; 1-8 GPUs) and dgx2 (fp16, fp32; 1-16 GPUs) with
# 21.11's config bert_config.json; NVIDIA HEAD's dgxa100-80g (fp16, tf32) and dgx1-32g (fp16,
# fp32), 1-8 GPUs, with bert_configs/large.json; ours: dgxh100 (bf16), 1-8 GPUs. The per-GPU batch
# is the global batch / GPUs; the accumulation starts at 1 and doubles while batch / accumulation
# exceeds the machine's capacity for that precision (NVIDIA's derivation). Paths are echoed
# relative to the repository root, as preset_paths.sh explains: checkpoints/bert_uncased.pt (or
# $INIT_CHECKPOINT), $BERT_PREP_WORKING_DIR/download/glue/<TASK>/, vocab/vocab (NVIDIA's presets
# name Google's uncased vocab.txt, the same file) and results/<TASK>.

source "$(dirname "${BASH_SOURCE[0]}")/preset_paths.sh"

# config task global_batch lr warmup epochs gpus capacity precision
_glue() {
  local config=$1 task=$2 global=$3 lr=$4 warmup=$5 epochs=$6 gpus=$7 capacity=$8 precision=$9
  local batch=$((global / gpus)) accumulation=1 folder
  while [ $((batch / accumulation)) -gt "$capacity" ]; do accumulation=$((accumulation * 2)); done
  folder=$(echo "$task" | tr '[:lower:]' '[:upper:]')
  _emit "${INIT_CHECKPOINT:-$_repo/checkpoints/bert_uncased.pt}" "$(_prep)/download/glue/$folder/" \
    vocab/vocab "$config" "results/$folder" "$task" "$gpus" "$batch" "$accumulation" "$lr" \
    "$warmup" "$epochs" -1.0 "$precision"
}

# Defines the presets of one machine and precision: config "gpu counts" machine precision
# capacity mrpc_lr mrpc_warmup sst_global_batch sst_lr
_define() {
  local gpus
  for gpus in $2; do
    eval "mrpc_${3}_${gpus}gpu_${4}() { _glue $1 mrpc 128 $6 $7 3 $gpus $5 $4; }"
    eval "sst-2_${3}_${gpus}gpu_${4}() { _glue $1 sst-2 $8 $9 0.1 3 $gpus $5 $4; }"
  done
}
# NVIDIA 21.11
_define bert_config.json "1 2 4 8" dgxa100 fp16 128 2.4e-5 0.1 1024 3e-5
_define bert_config.json "1 2 4 8" dgxa100 tf32 64 2.4e-5 0.1 512 2e-5
_define bert_config.json "1 2 4 8 16" dgx2 fp16 128 2.4e-5 0.1 1024 3e-5
_define bert_config.json "1 2 4 8 16" dgx2 fp32 64 2.4e-5 0.1 1024 3e-5
# NVIDIA HEAD
_define bert_configs/large.json "1 2 4 8" dgxa100-80g fp16 256 1.8e-5 0.3 1024 1e-5
_define bert_configs/large.json "1 2 4 8" dgxa100-80g tf32 128 1.8e-5 0.3 1024 1e-5
_define bert_configs/large.json "1 2 4 8" dgx1-32g fp16 128 1.8e-5 0.3 1024 1e-5
_define bert_configs/large.json "1 2 4 8" dgx1-32g fp32 64 1.8e-5 0.3 512 1e-5
# Ours: H100 80GB in bf16
_define bert_configs/large.json "1 2 4 8" dgxh100 bf16 256 1.8e-5 0.3 1024 1e-5

# Ours: the bundled MRPC sample on a CPU with the tiny model pre-trained by the quick start
# (INIT_CHECKPOINT, default results/checkpoints/ckpt_70.pt; OUT_DIR, default results/MRPC_sample).
cpu_sample_tiny() {
  _emit "${INIT_CHECKPOINT:-$_repo/results/checkpoints/ckpt_70.pt}" data/sample/glue/MRPC/ \
    vocab/vocab bert_configs/tiny.json "${OUT_DIR:-$_repo/results/MRPC_sample}" mrpc 1 16 1 1e-3 \
    0.1 2 -1.0 fp32
}
