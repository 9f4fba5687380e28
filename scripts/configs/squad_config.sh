#!/usr/bin/env bash
# SQuAD presets: each function echoes positional arguments of scripts/run_squad.sh in order,
# NVIDIA's values preset by preset:
#   bash scripts/run_squad.sh $(source scripts/configs/squad_config.sh && dgxa100_8gpu_fp16)
#
# NVIDIA 21.11's presets echo 10 arguments in 21.11's order (init_checkpoint epochs batch_size
# learning_rate precision num_gpu seed squad_dir vocab_file OUT_DIR), HEAD's 11 in HEAD's order
# (warmup_proportion after the learning rate); mode, config and max_steps keep the launcher's
# defaults. Paths are echoed relative to the repository root, as preset_paths.sh explains:
# checkpoints/bert_uncased.pt (or $INIT_CHECKPOINT), $BERT_PREP_WORKING_DIR/download/squad/v1.1,
# vocab/vocab (NVIDIA's presets name Google's uncased vocab.txt, the same file) and results/SQuAD.

source "$(dirname "${BASH_SOURCE[0]}")/preset_paths.sh"

_squad_21_11() {  # batch lr precision gpus
  _emit "${INIT_CHECKPOINT:-$_repo/checkpoints/bert_uncased.pt}" 2.0 "$1" "$2" "$3" "$4" 1 \
    "$(_prep)/download/squad/v1.1" vocab/vocab results/SQuAD
}

_squad_head() {  # batch lr warmup precision gpus
  _emit "${INIT_CHECKPOINT:-$_repo/checkpoints/bert_uncased.pt}" 2.0 "$1" "$2" "$3" "$4" "$5" 1 \
    "$(_prep)/download/squad/v1.1" vocab/vocab results/SQuAD
}

# NVIDIA 21.11 presets
dgx1_8gpu_fp16() { _squad_21_11 10 3e-5 fp16 8; }
dgx1_8gpu_fp32() { _squad_21_11 4 3e-5 fp32 8; }
dgx2_16gpu_fp16() { _squad_21_11 16 3e-5 fp16 16; }
# NVIDIA's preset of this name passed fp16, contradicting its name and its fp32 batch size; this
# one runs what the name says.
dgx2_16gpu_fp32() { _squad_21_11 8 3e-5 fp32 16; }
dgxa100_8gpu_fp16() { _squad_21_11 32 3e-5 fp16 8; }
dgxa100_8gpu_tf32() { _squad_21_11 16 3e-5 tf32 8; }
# NVIDIA HEAD presets
dgxa100-80g_8gpu_fp16() { _squad_head 32 4.6e-5 0.2 fp16 8; }
dgxa100-80g_8gpu_tf32() { _squad_head 32 4.6e-5 0.2 tf32 8; }
dgx1-32g_8gpu_fp16() { _squad_head 32 4.6e-5 0.2 fp16 8; }
dgx1-32g_8gpu_fp32() { _squad_head 16 4.6e-5 0.2 fp32 8; }
# Ours: 8x H100 in bf16, HEAD's order.
dgxh100_8gpu_bf16() { _squad_head 32 4.6e-5 0.2 bf16 8; }

# Ours: the bundled SQuAD sample on a CPU with the tiny model pre-trained by the quick start
# (INIT_CHECKPOINT, default results/checkpoints/ckpt_70.pt; OUT_DIR, default
# results/SQuAD_sample); all 14 arguments, HEAD's order.
cpu_sample_tiny() {
  _emit "${INIT_CHECKPOINT:-$_repo/results/checkpoints/ckpt_70.pt}" 2.0 16 1e-3 0.1 fp32 1 1 \
    data/sample/squad/v1.1 vocab/vocab "${OUT_DIR:-$_repo/results/SQuAD_sample}" train+eval \
    bert_configs/tiny.json -1
}
