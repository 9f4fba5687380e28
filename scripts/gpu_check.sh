#!/usr/bin/env bash
# The one prepared measurement for a single-GPU machine (PyTorch + CUDA, transformers, h5py,
# pytest; no internet), in one call of under 8 minutes on an H100, every stage under `timeout`:
#   1. environment report;
#   2. the GPU tests (pytest -m gpu);
#   3. the four workloads through the entry scripts with BERT-large, each in bf16, fp16 and (on
#      Hopper with torchao) fp8, on the eager path and on the fast path (--compile, the compiled
#      LAMB): run_pretraining.py phase 1 (seq 128, NVIDIA's dgxa100-80g preset on one GPU:
#      8192 sequences per step, accumulation 32, micro-batch 256) and phase 2 (seq 512, 4096 per
#      step, accumulation 128, micro-batch 32) on the bundled sample's shards; run_squad.py
#      training at seq 384, batch 32, on the bundled sample, and prediction on the real SQuAD
#      v1.1 dev set (10,570 questions), batch 256;
#   4. the harness against Hugging Face transformers (benchmarks/harness.py, pre-training rows,
#      with the compiled rows) with a torch.profiler table of one compiled phase-1 step, then
#      the attention backends on phase 2's padded batches and per length-bin width
#      (benchmarks/attention_backends.py: which kernel SDPA picks, each backend's time and error,
#      the first call per width apart), and phase 2 through run_pretraining.py with HEAD's
#      length bins of 64 (path "eager+bins");
#   5. ONE table: workload, precision, path, seq/s, MFU (model FLOP/s over the card's dense bf16
#      peak), peak memory, target, met/missed (benchmarks/gpu_table.py).
# Rates leave warm-up out: pre-training and fine-tuning take the median of the logged
# per-window training_sequences_per_second after the first window(s), prediction the rate over
# every batch but each width's first. Runs go in priority order (bf16 fast, bf16 eager, the
# harness, the attention backends, phase 2 with bins, fp16, fp8) within a time budget
# (BUDGET_S, default 470 s); a run that would start after it is listed as "not run: time
# budget" (BUDGET_S=3000 runs everything, ~20 minutes).
#
#   bash scripts/gpu_check.sh --prepare          # here, before the device call: copies the SQuAD
#                                                # dev set into results/gpu_inputs, builds shards
#   bash scripts/gpu_check.sh [OUT_DIR]          # on the GPU machine; default $OUT, else
#                                                # results/gpu_check; carry results/gpu_inputs
#                                                # and results/sample_shards (SAMPLE_SHARDS
#                                                # names another folder of those shards)
#   DRY_RUN=1 bash scripts/gpu_check.sh OUT_DIR  # the same stages on the CPU with the tiny
#                                                # config and a few steps (~2 min, 2 CPU cores)
# fp8 rows need torchao on the GPU machine: put its wheel (and nothing else) in .whl/ here and
# carry .whl; without it those rows say "skipped: fp8 needs the torchao package".
#
# Outputs in OUT_DIR (8 files, the most a device call brings back): table.txt, summary.json
# (rows with every window's rate), gpu_check.log (every stage's output, the attention table
# too), gpu_tests.txt, runs.txt (the entry scripts' dllogger lines), harness.json,
# profile_p1.txt, attention.json. Entry-script working folders go to $WORK (default
# results/gpu_check_work). Exit status: non-zero if a GPU test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
dry=${DRY_RUN:-0}
dev_copy=results/gpu_inputs/dev-v1.1.json
shards=${SAMPLE_SHARDS:-results/sample_shards}  # the bundled sample's (make_sample_shards.sh)

prepare() {  # the dry run reads the bundled SQuAD sample, so it needs no copy of the dev set
  local shared=../shared/data/squad/v1.1/dev-v1.1.json
  if [ "$dry" != 1 ] && [ -f "$shared" ] && [ ! -f "$dev_copy" ]; then
    mkdir -p results/gpu_inputs
    cp "$shared" "$dev_copy"
  fi
  [ -d "$shards/phase2" ] || bash scripts/make_sample_shards.sh "$shards" >/dev/null
}

if [ "${1:-}" = "--prepare" ]; then
  prepare
  ls -la "$dev_copy" "$shards"
  exit 0
fi
if [ "${1:-}" = "--dry-run" ]; then
  dry=1
  shift
fi
out=${1:-${OUT:-results/gpu_check}}
work=${WORK:-results/gpu_check_work}
mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work"
log="$out/gpu_check.log"
manifest="$work/manifest.tsv"
: >"$log"
: >"$manifest"
started=$SECONDS
status=0
prepare
# fp8 needs torchao, which the GPU image lacks: wheels carried in .whl/ (downloaded beforehand
# with pip download --no-deps for the machine's Python) are installed for this run only.
if [ "$dry" != 1 ] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target /tmp/gpu_check_site .whl/*.whl >>"$log" 2>&1 \
    && export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi

if [ "$dry" = 1 ]; then  # CPU, tiny model, a few steps; compiled paths captured without codegen
  budget=${BUDGET_S:-600}
  config=bert_configs/tiny.json
  device_flags=(--no_cuda)
  export BERT_COMPILE_BACKEND=${BERT_COMPILE_BACKEND:-eager} CUDA_VISIBLE_DEVICES=""
  # The smallest batches that still accumulate: the dry run checks the stages and the table,
  # not the rates (bf16 matmuls are slow on most CPUs).
  p1=(--train_batch_size 4 --gradient_accumulation_steps 2)
  p2=(--train_batch_size 2 --gradient_accumulation_steps 2)
  steps_fast=3 steps_eager=2
  squad_train=(--train_batch_size 2 --max_steps 6 --log_freq 2)
  predict_batch=32
  # Prediction on the first 64 questions of the bundled dev sample, two batches (bf16 runs at
  # ~40 seq/s on a CPU: the 290 questions took 6 s of the eager row and 12 s of the compiled
  # one). The compiled row's widths are multiples of 64, so its second batch is warm; the eager
  # row's two widths differ, and its rate covers both batches ("all batches (none warm)").
  dev=$work/dev_head.json
  "$PYTHON" - data/sample/squad/v1.1/dev-v1.1.json "$dev" 64 <<'PY'
import json
import sys

source, target, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(source, encoding="utf-8") as f:
    dataset = json.load(f)
articles = []
for article in dataset["data"]:
    paragraphs = []
    for paragraph in article["paragraphs"]:
        if wanted > 0:
            paragraphs.append(paragraph | {"qas": paragraph["qas"][:wanted]})
            wanted -= len(paragraphs[-1]["qas"])
    if paragraphs:
        articles.append(article | {"paragraphs": paragraphs})
with open(target, "w", encoding="utf-8") as out:
    json.dump(dataset | {"data": articles}, out)
PY
  # The profile takes 3 batches. The harness in fp32: its 10 rows (the transformers ones padded
  # to full length) take 4x longer in bf16 on a CPU, and the entry-script rows above already run
  # the one bf16 precision path that the harness shares with them.
  harness_args=(--batch_p1 2 --batch_p2 1 --steps 2 --warmup 1 --dtype fp32)
  attention_args=(--batch 2 --seq 128 --heads 2 --head_size 16 --widths 64 128 --steps 2
                  --warmup 1 --lengths_from "$shards/phase1")
  tests_timeout=60
else
  budget=${BUDGET_S:-470}
  config=bert_configs/large.json
  device_flags=()
  p1=(--train_batch_size 8192 --gradient_accumulation_steps 32)
  p2=(--train_batch_size 4096 --gradient_accumulation_steps 128)
  steps_fast=${STEPS_FAST:-3} steps_eager=${STEPS_EAGER:-2}
  squad_train=(--train_batch_size 32 --max_steps 30 --log_freq 5)
  predict_batch=${PREDICT_BATCH:-256}
  dev=$dev_copy
  [ -f "$dev" ] || dev=data/sample/squad/v1.1/dev-v1.1.json
  harness_args=(--batch_p1 64 --batch_p2 16 --steps 5 --warmup 2 --dtype bf16)
  attention_args=(--batch 32 --seq 512 --lengths_from "$shards/phase2")
  tests_timeout=150
fi

left() { echo $((budget - (SECONDS - started))); }

say() { echo "$*" | tee -a "$log"; }

# run_stage NAME TIMEOUT CMD...: runs CMD under timeout (at most the budget left), its output in
# the log; sets stage_status to ok / failed (exit N) / timed out / not run: time budget.
run_stage() {
  local name=$1 limit=$2
  shift 2
  local remaining
  remaining=$(left)
  if [ "$remaining" -lt 20 ]; then
    stage_status="not run: time budget"
    say "== $name: $stage_status"
    return
  fi
  [ "$limit" -gt "$remaining" ] && limit=$remaining
  say "== $name (limit ${limit} s, $(left) s of the budget left)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  case $rc in
    0) stage_status=ok ;;
    124 | 137) stage_status="timed out after ${limit} s" ;;
    *) stage_status="failed (exit $rc)" ;;
  esac
  say "   $name: $stage_status in $((SECONDS - t0)) s"
}

# What this machine cannot run, by precision (empty: it can), the device's name and the library
# versions, asked of one interpreter (each start-up imports torch: seconds on a CPU).
fp16_refused="skipped: the precision probe failed" fp8_refused=$fp16_refused device_name=unknown
versions="versions: the probe failed"
eval "$("$PYTHON" - "$dry" <<'PY'
import importlib.metadata
import shlex
import sys

import torch

from training import fp8_unavailable

cuda = torch.cuda.is_available() and sys.argv[1] != "1"
device = torch.device("cuda" if cuda else "cpu")
reason = fp8_unavailable(device)


def installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


answers = {
    "fp16_refused": "" if cuda else "skipped: fp16 needs a CUDA GPU",
    "fp8_refused": f"skipped: fp8 {reason}" if reason else "",
    "device_name": torch.cuda.get_device_name() if cuda else "cpu",
    "versions": f"torch {torch.__version__} cuda {torch.version.cuda} transformers "
    f"{installed('transformers')} torchao {installed('torchao')}",
}
for name, value in answers.items():
    print(f"{name}={shlex.quote(value)}")
PY
)"

# entry NAME WORKLOAD PRECISION PATH LIMIT SCRIPT ARGS...: one entry-script run, into the manifest.
entry() {
  local name=$1 workload=$2 precision=$3 path=$4 limit=$5
  shift 5
  local json="$work/$name.json" refused=""
  [ "$precision" = fp16 ] && refused=$fp16_refused
  [ "$precision" = fp8 ] && refused=$fp8_refused
  if [ -n "$refused" ]; then
    stage_status=$refused
    say "== $name: $stage_status"
  else
    run_stage "$name" "$limit" "$PYTHON" "$@" --precision "$precision" "${device_flags[@]}" \
      --json-summary "$json" --output_dir "$work/$name"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$workload" "$precision" "$path" "$stage_status" \
    "$json" >>"$manifest"
}

pretrain() {  # precision path phase; path eager, fast or eager+bins (HEAD's bins of 64)
  local precision=$1 path=$2 phase=$3 flags=(--optimizer_impl torch) steps=$steps_eager
  local shape=(--max_seq_length 128 --max_predictions_per_seq 20 "${p1[@]}" --max_steps 7038
               --warmup_proportion 0.2843 --learning_rate 6e-3)
  if [ "$phase" = p2 ]; then
    shape=(--max_seq_length 512 --max_predictions_per_seq 80 "${p2[@]}" --max_steps 1563
           --warmup_proportion 0.128 --learning_rate 4e-3)
  fi
  if [ "$path" = fast ]; then flags=(--compile --optimizer_impl compiled); steps=$steps_fast; fi
  [ "$path" = eager+bins ] && flags+=(--bin_size 64)
  local input=$shards/phase1
  [ "$phase" = p2 ] && input=$shards/phase2
  entry "pretrain_${phase}_${precision}_$path" "pretrain_$phase" "$precision" "$path" 200 \
    run_pretraining.py --do_train --input_dir "$input" --config_file "$config" "${shape[@]}" \
    --steps_this_run "$steps" --log_freq 1 --skip_checkpoint --disable_progress_bar --seed 42 \
    "${flags[@]}"
}

squad() {  # precision path train|infer
  local precision=$1 path=$2 mode=$3 flags=()
  [ "$path" = fast ] && flags=(--compile)
  local common=(run_squad.py --vocab_file vocab/vocab --config_file "$config" --do_lower_case
                --max_seq_length 384 --skip_cache --skip_checkpoint --disable-progress-bar
                --seed 1 "${flags[@]}")
  if [ "$mode" = train ]; then
    entry "squad_train_${precision}_$path" squad_train "$precision" "$path" 200 "${common[@]}" \
      --do_train --train_file data/sample/squad/v1.1/train-v1.1.json --learning_rate 3e-5 \
      "${squad_train[@]}"
  else
    entry "squad_infer_${precision}_$path" squad_infer "$precision" "$path" 200 "${common[@]}" \
      --do_predict --predict_file "$dev" --predict_batch_size "$predict_batch" \
      --init_checkpoint "$qa_weights"
  fi
}

workloads() {  # precision path
  pretrain "$1" "$2" p1
  pretrain "$1" "$2" p2
  squad "$1" "$2" infer
  squad "$1" "$2" train
}

# 1. Environment.
say "== environment (dry run: $dry)"
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  echo "$versions; device $device_name"
  "$PYTHON" run_pretraining.py --print_env --precision auto --config_file bert_configs/large.json
  echo "fp16: ${fp16_refused:-available}; fp8: ${fp8_refused:-available}; budget ${budget} s"
} 2>&1 | tee -a "$log"

# 2. GPU tests, first, so that their verdict comes back even if a later stage runs out of time.
# Only the files that hold GPU tests: the GPU image lacks the CPU-only test peers (onnx, moto...).
mapfile -t gpu_test_files < <(grep -l "pytest.mark.gpu" tests/test_*.py)
run_stage "gpu tests" "$tests_timeout" "$PYTHON" -m pytest -q -p no:cacheprovider -m gpu \
  --no-requirements-check "${gpu_test_files[@]}" -o addopts="" --junit-xml="$work/gpu_tests.xml"
tests_status=$stage_status
grep -E "passed|failed|skipped|error" "$log" | tail -1 | tee "$out/gpu_tests.txt"
[ "$tests_status" = ok ] || status=1

# Random QA weights for the prediction rows (speed does not depend on the values; run_squad.py
# refuses to predict without a checkpoint, since random weights give random answers).
qa_weights=$work/random_qa_weights.pt
run_stage "random QA weights" 120 "$PYTHON" - "$config" "$qa_weights" <<'PY'
import sys

from checkpoint import save_nvidia_checkpoint
from modeling import BertConfig, BertForQuestionAnswering

config = BertConfig.from_json_file(sys.argv[1])
model = BertForQuestionAnswering(config)
save_nvidia_checkpoint(sys.argv[2], model.state_dict(), config)
PY

# 3-4. The workloads in priority order, the harness after the bf16 runs.
workloads bf16 fast
workloads bf16 eager
run_stage "harness" 150 "$PYTHON" -m benchmarks.harness --config "$config" \
  --sections pretrain --shards "$shards" --compile "${harness_args[@]}" \
  --json "$out/harness.json" --profile "$out/profile_p1.txt" \
  --profile_row "ours compiled + compiled LAMB"
run_stage "attention backends" 60 "$PYTHON" -m benchmarks.attention_backends --dtype bf16 \
  "${attention_args[@]}" --json "$out/attention.json"
pretrain bf16 eager+bins p2  # length bins measured slower in the loop; this row re-measures them
workloads fp16 fast
workloads fp16 eager
for kind in p1 p2; do pretrain fp8 fast "$kind"; done
squad fp8 fast infer
squad fp8 fast train

# 5. The table, and the entry scripts' logs in one file.
for name in $(cut -f1 "$manifest"); do
  [ -f "$work/$name.json" ] && sed "s/^/$name /" "$work/$name.json"
done >"$out/runs.txt"
say "== table ($((SECONDS - started)) s after the start)"
"$PYTHON" -m benchmarks.gpu_table --manifest "$manifest" --config "$config" \
  --device "$device_name" --table "$out/table.txt" --json "$out/summary.json" 2>&1 | tee -a "$log"
exit "$status"
