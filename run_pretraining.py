"""BERT pre-training (masked LM + next sentence) on NVIDIA-layout HDF5 shards, with LAMB.

    torchrun --nproc_per_node=8 run_pretraining.py --input_dir=<phase-1 shards> \\
        --output_dir=results/checkpoints --config_file=bert_configs/large.json \\
        --train_batch_size=8192 --gradient_accumulation_steps=128 --max_seq_length=128 \\
        --max_predictions_per_seq=20 --max_steps=7038 --warmup_proportion=0.2843 \\
        --learning_rate=6e-3 --num_steps_per_checkpoint=200 --seed=42 --fp16 --do_train

NVIDIA's flags and phase semantics: `--train_batch_size` is per process per optimizer step and
is divided by `--gradient_accumulation_steps`; `--max_steps` shapes the LR schedule of the
current phase; phase 2 (`--phase2 --resume_from_checkpoint`) starts from the newest phase-1
checkpoint in `--output_dir`, keeps the optimizer moments and restarts the step count and
schedule; its checkpoints are named `ckpt_<phase1_end_step + step>.pt`, its logs count its own
steps. `--init_checkpoint` is used only with `--resume_from_checkpoint` (resume the model and
moments from that file, step count and schedule restarted) and ignored otherwise, with a
warning. Checkpoints carry what 21.11's and HEAD's run_pretraining.py read when they resume.

Differences from NVIDIA's script, on purpose:
- plain PyTorch: native AMP (`--fp16`, or `--bf16`), our LAMB (multi-tensor, or one compiled
  graph per step with `--optimizer_impl compiled`; apex FusedLAMB when installed and chosen),
  DDP through torchrun with `no_sync` accumulation, and the loss divided by the accumulation
  steps (HEAD never divided it); `--allreduce_post_accumulation` is therefore always the
  behaviour, and `--allreduce_post_accumulation_fp16` compresses the all-reduce to 16 bits
  (fp16; bf16 in bf16 runs, which have no loss scale to keep small gradients in fp16's range);
- resume is exact: optimizer, scaler, schedule, RNG states and every rank's data position are in
  the checkpoint, and an interrupted phase 2 resumes its schedule (HEAD reset it unless
  `--resume_phase2`, which is still accepted); a missing checkpoint starts fresh with a warning;
- checkpoints are atomic; the newest three of the phase on disk are kept (NVIDIA: the newest
  three this process wrote, so every resumed run left three more), deleted only once the new
  one is in place; a run locks its output folder against a second run (also on Lustre/NFS),
  clears what a killed run left there, and tests a write before training; a checkpoint that
  cannot be written (full or read-only disk) ends the run with one line, older ones kept;
- resume takes the newest checkpoint that loads: a corrupt one (truncated, unreadable, without
  `model`, non-finite weights) is skipped with a warning; `--resume_step N` never falls back;
  `--phase2 --resume_from_checkpoint` with no checkpoint to start from is an error (NVIDIA's
  crashed on `max()` of nothing); workers restarted by `torchrun --max-restarts` resume by
  themselves;
- SIGTERM/SIGUSR1 save a checkpoint and exit 0 at the next optimizer step; a persistent
  non-finite loss stops the run with a clear message and writes no checkpoint of broken weights;
- `--init_weights` (new) starts from weights in any format (NGC, ours, Hugging Face, Google TF,
  s3://) with a fresh optimizer and schedule;
- logs: dllogger's JSON lines and stdout lines (dllogger itself not required) with NVIDIA's keys
  (`average_loss`, `step_loss`, `learning_rate`, `skipped_steps`) plus the MLM/NSP parts,
  gradient norm, loss scale and sequences/s every `--log_freq` steps; `average_loss` is averaged
  over ranks; no host synchronisation between logging steps.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from tqdm import tqdm

import distributed
import lddl_data
import runtime
import storage
from checkpoint import CheckpointFolder
from errors import BertError, UsageError
from modeling import BertConfig, BertForPreTraining
from optimization import (
    LAMB_IMPLS,
    make_lamb,
    parameter_groups,
)
from output_lock import claim_output
from pretraining_checkpoints import (
    Resume,
    RunState,
    Training,
    is_restarted_worker,
    load_for_resume,
    save_checkpoint,
)
from pretraining_data import (
    DynamicMasking,
    PretrainingBatch,
    PretrainingDataLoader,
    ShardChecks,
    training_files,
)
from schedulers import WarmupScheduler
from training import (
    PRETRAINING_ROW_FILLS,
    DivergenceError,
    log_peak_memory,
    maybe_compile,
    maybe_float8,
    micro_batch_size,
    no_sync_unless,
    optimizer_step,
    pad_rows,
    set_activation_checkpointing,
    trim_multiple,
    trim_padding,
)

logger = logging.getLogger("run_pretraining")

#: Consecutive fp16 overflow steps after which the run is declared diverged.
MAX_CONSECUTIVE_SKIPS = 64


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = runtime.ArgumentParser(prog="run_pretraining.py", description=__doc__.split("\n\n")[0])
    runtime.add_runtime_arguments(parser, seed=42)
    add = parser.add_argument
    add("--input_dir", required=True, help="HDF5 shards ('training' in the name) or LDDL parquet")
    add("--config_file", required=True, help="model config JSON")
    add("--output_dir", required=True, help="folder or s3://bucket/prefix for ckpt_<step>.pt")
    add("--vocab_file", help="vocabulary; needed for --dynamic_masking, recorded otherwise")
    add("--bert_model", default="bert-large-uncased", help="accepted; unused")
    add(
        "--init_checkpoint",
        help="with --resume_from_checkpoint: resume the model and optimizer moments from this "
        "file (or s3://) instead of output_dir, with the step count and schedule restarted; "
        "ignored without it, as in NVIDIA's script",
    )
    add(
        "--init_weights",
        metavar="PATH",
        help="start from these weights (any format: NGC/NVIDIA .pt, ours, Hugging Face folder, "
        "Google TF, s3://) with a fresh optimizer and schedule",
    )
    add(
        "--max_seq_length",
        type=runtime.positive_int,
        help="must match the shards (default: theirs)",
    )
    add(
        "--max_predictions_per_seq",
        type=runtime.positive_int,
        help="must match the shards (default: theirs)",
    )
    add("--num_train_epochs", type=runtime.finite_float, default=3.0, help="accepted; unused")
    add(
        "--max_steps",
        type=runtime.positive_steps,
        default=1000,
        help="optimizer steps of this phase's schedule",
    )
    add("--warmup_proportion", type=runtime.proportion, default=0.01)
    add("--init_loss_scale", type=runtime.positive_float, default=2**20)
    add("--log_freq", type=runtime.positive_steps, default=1.0, help="log every N optimizer steps")
    add("--checkpoint_activations", action="store_true")
    add("--resume_from_checkpoint", action="store_true")
    add(
        "--resume_step",
        type=runtime.step_or_minus_one,
        default=-1,
        help="-1: the newest ckpt_<N>.pt in output_dir",
    )
    add("--num_steps_per_checkpoint", type=runtime.positive_int, default=100)
    add("--skip_checkpoint", action="store_true")
    add("--phase2", action="store_true")
    add("--resume_phase2", action="store_true", help="resume an interrupted phase 2 (HEAD flag)")
    # Gradients are always all-reduced once per optimizer step, after accumulation.
    add("--allreduce_post_accumulation", action="store_true", help="accepted; unused")
    add("--allreduce_post_accumulation_fp16", action="store_true")
    add("--phase1_end_step", type=runtime.non_negative_int, default=7038)
    add("--do_train", action="store_true", help="required, as in NVIDIA's script")
    add("--disable_progress_bar", action="store_true")
    add(
        "--steps_this_run",
        type=runtime.positive_int_or_minus_one,
        default=-1,
        help="stop at this phase step (-1: max_steps)",
    )
    # Shards are read by one background thread, not DataLoader worker processes.
    add("--num_workers", type=runtime.non_negative_int, default=4, help="accepted; unused")
    add("--no_dense_sequence_output", action="store_true", help="score every position")
    add(
        "--no_trim_padding",
        "--no_trim",
        dest="no_trim_padding",
        action="store_true",
        help="train on full-width batches (the plain path); default: cut each batch to its "
        "longest sequence",
    )
    add("--dynamic_masking", action="store_true", help="re-mask every batch (needs --vocab_file)")
    add(
        "--do_whole_word_mask",
        action="store_true",
        help="with --dynamic_masking: mask every WordPiece of a word together",
    )
    add("--data_sharding", choices=("files", "interleaved"), default="files")
    add(
        "--bin_size",
        type=runtime.positive_int,
        help="draw each batch from one bin of lengths (HEAD's LDDL bins)",
    )
    add(
        "--optimizer_impl",
        choices=LAMB_IMPLS,
        default="auto",
        help="LAMB: torch (multi-tensor), compiled (one torch.compile graph per step), apex "
        "(FusedLAMB); auto: apex on a GPU when installed, else torch",
    )
    add("--profile", action="store_true", help="accepted; unused")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> CheckpointFolder:
    """NVIDIA's setup rules and our flag checks, each failing with one line naming the flag,
    before any data is read: the flags against each other, the model files against each other,
    the shards (listed, and each one's shape read from its metadata) against the model, and the
    output paths; returns the checkpoint folder (not created yet)."""
    if not args.do_train:
        raise UsageError("--do_train is required (as in NVIDIA's run_pretraining.py)")
    micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    if args.init_weights and args.init_checkpoint and args.resume_from_checkpoint:
        raise UsageError(
            "--init_weights and --resume_from_checkpoint --init_checkpoint both name the starting "
            "weights; pass one of them"
        )
    if args.dynamic_masking and not args.vocab_file:
        raise UsageError("--dynamic_masking needs --vocab_file")
    if args.do_whole_word_mask and not args.dynamic_masking:
        raise UsageError(
            "--do_whole_word_mask applies to --dynamic_masking; static shards keep the masks "
            "they were made with (create_pretraining_data.py --do_whole_word_mask)"
        )
    seq, predictions = args.max_seq_length, args.max_predictions_per_seq
    if seq is not None and predictions is not None and predictions > seq:
        raise UsageError(
            f"--max_predictions_per_seq {predictions} is more than --max_seq_length {seq}"
        )
    runtime.check_input_dir(args.input_dir, "--input_dir")
    config = runtime.check_model_files(args.config_file, args.vocab_file, seq)
    weights = {"--init_weights": args.init_weights}
    if args.resume_from_checkpoint:  # NVIDIA's script ignores --init_checkpoint without it
        weights["--init_checkpoint"] = args.init_checkpoint
    for flag, path in weights.items():
        if path:
            runtime.check_weights_path(path, flag)
    check_shards(args, config)
    output = CheckpointFolder(args.output_dir)
    if not output.remote:
        runtime.check_output_dir(args.output_dir, "--output_dir")
    inputs = {"--config_file": args.config_file, "--vocab_file": args.vocab_file, **weights}
    runtime.check_run_outputs(args, inputs)
    existing = [name for name in output.names() if name.startswith("ckpt")]  # s3: the bucket's
    if existing and not args.resume_from_checkpoint and not args.skip_checkpoint:
        raise UsageError(
            f"--output_dir {output} already holds checkpoints ({existing[0]}, ...); pass "
            "--resume_from_checkpoint to continue, or choose an empty folder"
        )
    chosen = args.resume_step if args.resume_from_checkpoint and not args.init_checkpoint else -1
    restarted = is_restarted_worker(args)  # takes the newest, not --resume_step's
    if chosen >= 0 and not restarted and chosen not in output.numbers():
        raise UsageError(f"--resume_step {chosen}: no ckpt_{chosen}.pt in --output_dir {output}")
    return output


def check_shards(args: argparse.Namespace, config: BertConfig) -> None:
    """The shards before anything is created, as the loader will see them: HDF5 shards named
    with 'training' exist, each holds instances of one shape that matches the flags, none longer
    than the model's positions (LDDL parquet: the vocabulary is given). Only metadata is read."""
    if lddl_data.is_parquet_folder(args.input_dir):
        if not args.vocab_file:
            raise UsageError(
                f"--input_dir {args.input_dir} holds LDDL parquet shards, whose samples are "
                "WordPiece strings: pass --vocab_file"
            )
        return
    shards = PretrainingDataLoader(  # a ShardError names the file at fault; nothing is read yet
        training_files(args.input_dir),
        1,
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        prefetch=False,
    )
    if shards.seq_length > config.max_position_embeddings:
        raise UsageError(
            f"--input_dir {args.input_dir} holds sequences of {shards.seq_length} tokens, more "
            f"than the model's {config.max_position_embeddings} positions "
            f"(max_position_embeddings of --config_file {args.config_file})"
        )


def build_model(args: argparse.Namespace, device: torch.device) -> BertForPreTraining:
    config = BertConfig.from_json_file(args.config_file)  # vocab padded to a multiple of 8
    model = BertForPreTraining(config, sequence_output_is_dense=not args.no_dense_sequence_output)
    if args.checkpoint_activations:
        set_activation_checkpointing(model, True)
    return model.to(device)


# ------------------------------------------------------------------------------- training


class Terminated(BertError):
    """A second SIGTERM/SIGUSR1 arrived before the run could stop at an optimizer step."""

    exit_code = 128 + signal.SIGTERM


@contextlib.contextmanager
def signal_handlers(state: RunState) -> Iterator[None]:
    """SIGTERM/SIGUSR1 (SLURM pre-emption) ask for a checkpoint at the next optimizer step and a
    clean exit (status 0); a second one stops the run at once, so a signal always ends it. The
    previous handlers come back when the block ends (`main(argv)` can run inside a larger
    program, whose later children must not inherit these)."""

    def request(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if state.stop_requested is not None:
            raise Terminated(f"{name} received again: stopping now, without a new checkpoint")
        state.stop_requested = name

    signals = [getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)]
    previous = {number: signal.signal(number, request) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def step_target(args: argparse.Namespace) -> int:
    target = int(args.max_steps)
    if args.steps_this_run > 0:
        target = min(target, args.steps_this_run)
    return target


class Window:
    """Loss sums of the current logging window, kept on the device until logged."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(3, device=self.device)  # total, MLM, NSP
        self.last = torch.zeros((), device=self.device)  # the last micro-batch's total loss
        self.micro_steps = 0

    def add(self, total: torch.Tensor, mlm: torch.Tensor, nsp: torch.Tensor) -> None:
        self.sums += torch.stack([total.detach(), mlm.detach(), nsp.detach()]).float()
        self.last = total.detach().float()
        self.micro_steps += 1

    def means(self) -> tuple[list[float], float]:
        """Mean losses over the window averaged over ranks, and this rank's last micro-batch
        loss (one host sync)."""
        means = distributed.all_reduce_mean(self.sums / max(self.micro_steps, 1))
        values = torch.cat([means, self.last.reshape(1)]).tolist()
        return values[:3], values[3]


def log_progress(
    training: Training, window: Window, grad_norm: torch.Tensor | None, rate: float
) -> None:
    """One per-step record at (epoch, phase step), NVIDIA's keys first.

    21.11 logged `average_loss`, `step_loss` and `learning_rate`, HEAD `skipped_steps` too; the
    step counts within the phase, as both did. `step_loss` is the last micro-batch's loss before
    division by the accumulation steps (what 21.11's `loss * GA / divisor` comes to) on this
    rank; `average_loss` is averaged over the window's micro-batches and over ranks."""
    (average, mlm, nsp), last = window.means()
    training.state.final_loss = average
    data = {
        "average_loss": average,
        "step_loss": last,
        "learning_rate": training.scheduler.lr_at(training.state.step),
        "skipped_steps": training.state.skipped_steps,
        "mlm_loss": mlm,
        "nsp_loss": nsp,
        "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
        "training_sequences_per_second": rate,
    }
    if training.precision.scaler is not None:
        data["loss_scale"] = training.precision.loss_scale
    training.metrics.log(
        (training.loader.epoch if training.loader else 0, training.state.step), data
    )
    check_finite(training, torch.tensor(average), grad_norm)


def check_finite(training: Training, values: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
    """Stop on non-finite losses, weights or gradient norm, so no checkpoint holds them."""
    values = [values.detach().float().flatten().cpu()]
    if grad_norm is not None:
        values.append(grad_norm.detach().float().flatten().cpu())
    if not torch.isfinite(torch.cat(values)).all():
        raise DivergenceError(
            f"the loss, weights or gradient norm became non-finite at step "
            f"{training.state.step}{' of phase 2' if training.args.phase2 else ''}; "
            "stopping without a checkpoint of these weights (the last good one is kept). "
            "Try a lower --learning_rate, --bf16, or a smaller --init_loss_scale"
        )


def train(training: Training) -> None:
    args, state = training.args, training.state
    grad_accum_steps = args.gradient_accumulation_steps
    micro_batch = micro_batch_size(args.train_batch_size, grad_accum_steps)
    target = step_target(args)
    parameters = [p for group in training.optimizer.param_groups for p in group["params"]]
    log_freq = max(int(args.log_freq), 1)
    window = Window(training.dist.device)
    state.start_step = state.step
    raw_start = time.perf_counter()
    window_start, window_rows = raw_start, 0
    progress = tqdm(
        total=target,
        initial=state.step,
        desc="pre-training",
        unit="step",
        disable=args.disable_progress_bar or not training.dist.is_main_process,
    )
    training.ddp_model.train()
    multiple = trim_multiple(training.dist.device, args.compile)
    micro_step = 0
    batches = iter(training.loader)

    def to_device(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(training.dist.device, non_blocking=True)

    while state.step < target and state.stop_requested is None:
        cpu_batch: PretrainingBatch = next(batches)
        window_rows += len(cpu_batch.input_ids)  # real rows: a short last batch counts less
        if not args.no_trim_padding:  # the fast path: no work on padding
            cpu_batch = PretrainingBatch(*trim_padding(cpu_batch, cpu_batch.input_mask, multiple))
        if args.compile:  # a shard's short last batch keeps the compiled layers' shape
            cpu_batch = PretrainingBatch(*pad_rows(cpu_batch, micro_batch, PRETRAINING_ROW_FILLS))
        # Counted on the host, so the masked-only head needs no device sync.
        num_masked = int((cpu_batch.masked_lm_labels != -1).sum())
        batch = cpu_batch.map(to_device)
        micro_step += 1
        last = micro_step % grad_accum_steps == 0
        with no_sync_unless(training.ddp_model, sync=last):
            with training.precision.autocast():
                total, mlm, nsp = training.ddp_model(*batch, num_masked=num_masked)
            training.precision.backward(total / grad_accum_steps)
        window.add(total, mlm, nsp)
        if not last:
            continue
        outcome = optimizer_step(training.optimizer, training.precision, parameters)
        if outcome.skipped:
            state.skipped_steps += 1
            state.consecutive_skips += 1
            if state.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                raise DivergenceError(
                    f"{MAX_CONSECUTIVE_SKIPS} consecutive fp16 steps overflowed (loss scale now "
                    f"{training.precision.loss_scale:g}); the run is diverging. Stopping; the "
                    "last good checkpoint is kept. Try --bf16 or a lower --learning_rate"
                )
            training.metrics.log(
                "PARAMETER", {"loss_scale": training.precision.loss_scale}, verbose=False
            )
            continue
        state.consecutive_skips = 0
        state.step += 1
        training.scheduler.step()
        progress.update()
        if state.step % log_freq == 0 or state.step == target or state.stop_requested:
            rate = window_rows * training.dist.world_size / (time.perf_counter() - window_start)
            log_progress(training, window, outcome.grad_norm, rate)
            window.reset()
            window_start, window_rows = time.perf_counter(), 0
        due = state.step % args.num_steps_per_checkpoint == 0 or state.step == target
        if not args.skip_checkpoint and (due or state.stop_requested):
            norms = torch.stack(torch._foreach_norm(parameters))  # the weights to be saved
            check_finite(training, norms, outcome.grad_norm)
            save_checkpoint(training)
    state.raw_train_time = time.perf_counter() - raw_start
    # NVIDIA's last per-step record, before the summary at step ().
    training.metrics.log((training.loader.epoch, state.step), {"final_loss": state.final_loss})
    if state.stop_requested and not args.skip_checkpoint:
        logger.info("%s received: checkpoint written, exiting", state.stop_requested)
    progress.close()


def summarise(training: Training, started: float) -> None:
    """The final summary; `e2e_train_time` counts from `started` (NVIDIA's: from process start)."""
    steps = training.state.step - training.state.start_step + training.state.skipped_steps
    micro_batch = micro_batch_size(
        training.args.train_batch_size, training.args.gradient_accumulation_steps
    )
    sequences = (
        micro_batch * training.args.gradient_accumulation_steps * training.dist.world_size * steps
    )
    raw = training.state.raw_train_time
    training.metrics.log(
        (),
        {
            "e2e_train_time": time.time() - started,
            "training_sequences_per_second": sequences / raw if raw > 0 else 0.0,
            "final_loss": training.state.final_loss,
            "raw_train_time": raw,
        },
    )


# ------------------------------------------------------------------------------- main


def setup(args: argparse.Namespace, state: RunState, resources: contextlib.ExitStack) -> Training:
    """The steps before training: flag checks, the shared run setup (ranks, seed, precision,
    logger), the output folder held for this run (released by `resources`), the model, LAMB
    and its schedule, the weights to resume from, DDP, the data."""
    output = check_arguments(args)
    run = runtime.setup_run(
        args,
        init_loss_scale=args.init_loss_scale,
        tensorboard_step_offset=args.phase1_end_step if args.phase2 else 0,
    )
    if args.skip_checkpoint:  # nothing is written there: no lock, so benchmarks may share it
        if run.dist.is_main_process:
            output.create()
        distributed.barrier()
    else:  # locked, cleared of what a killed run left, and tested for a write
        main = run.dist.is_main_process
        resources.enter_context(claim_output(args.output_dir, "run_pretraining.py", is_main=main))
    model = build_model(args, run.device)
    optimizer = make_lamb(parameter_groups(model, 0.01), args.learning_rate, args.optimizer_impl)
    scheduler = WarmupScheduler(
        optimizer, args.learning_rate, int(args.max_steps), args.warmup_proportion, "poly"
    )
    training = Training(
        args, run.dist, model, model, optimizer, scheduler, run.precision, None, run.metrics, state
    )
    resume = load_for_resume(training)
    training.state.step = resume.step
    compiled = maybe_compile(maybe_float8(model, run.precision.precision), args.compile)
    compression = distributed.allreduce_compression(
        run.precision.precision, args.allreduce_post_accumulation_fp16
    )
    training.ddp_model = distributed.wrap_ddp(compiled, run.dist, compression=compression)
    training.loader = build_loader(args, run.dist, resume)
    if resume.rng is not None:
        distributed.set_rng_state(resume.rng)
    log_configuration(training, run.precision.precision)
    warn_if_short_of_space(training)
    return training


def warn_if_short_of_space(training: Training) -> None:
    """Warn before training when the output folder has less room than one checkpoint (fp32
    weights, master copy and two moments: 16 bytes a parameter); a full disk would otherwise
    show only at the first checkpoint, perhaps hours in."""
    if (
        training.args.skip_checkpoint
        or not training.dist.is_main_process
        or storage.is_remote(training.args.output_dir)
    ):
        return
    needed = 16 * sum(p.numel() for p in training.model.parameters())
    free = shutil.disk_usage(training.args.output_dir).free
    if free < needed:
        logger.warning(
            "--output_dir %s: %.2f GB free, but a checkpoint takes about %.2f GB; saving it will "
            "fail and stop the run (the older checkpoints are kept)",
            training.args.output_dir,
            free / 1e9,
            needed / 1e9,
        )


def apply_elastic_restart(args: argparse.Namespace) -> None:
    """Workers that `torchrun --max-restarts N` restarted after a failure resume by themselves.

    torchrun restarts every worker of the job with TORCHELASTIC_RESTART_COUNT > 0 and the same
    command line; such a worker behaves as if --resume_from_checkpoint were given and takes the
    newest checkpoint of --output_dir (not --resume_step's, nor --init_checkpoint's once the
    phase has checkpoints of its own). Checkpoints hold every rank's data position and RNG
    state, so the restarted job trains on exactly the samples the failed one had not
    checkpointed: none lost, none repeated. With --skip_checkpoint it starts over."""
    text = os.environ.get("TORCHELASTIC_RESTART_COUNT", "").strip() or "0"
    if not text.isdigit():
        raise UsageError(f"TORCHELASTIC_RESTART_COUNT (set by torchrun) is not a number: {text!r}")
    args.elastic_restart = int(text)
    args.resume_implied = False
    if args.elastic_restart == 0 or args.skip_checkpoint:
        return
    if not args.resume_from_checkpoint:
        args.resume_implied = True
        args.resume_from_checkpoint = True
        args.init_checkpoint = None  # the first attempt ignored it (no --resume_from_checkpoint)
    logger.warning(
        "torchrun restart %d: resuming from the newest checkpoint in %s",
        args.elastic_restart,
        args.output_dir,
    )


def build_loader(
    args: argparse.Namespace, dist: distributed.DistState, resume: Resume
) -> PretrainingDataLoader:
    masking = None
    if args.dynamic_masking:
        masking = DynamicMasking.from_vocab_file(args.vocab_file, args.do_whole_word_mask)
    position = resume.data_position
    if position is None and resume.full:
        position = {"epoch": resume.epoch}
    micro_batch = micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    model_vocab = BertConfig.from_json_file(args.config_file).vocab_size
    options = {
        "rank": dist.rank,
        "world_size": dist.world_size,
        "seed": args.seed,
        "sharding": args.data_sharding,
        "position": position,
        "dynamic_masking": masking,
        "pin_memory": dist.device.type == "cuda",
        "bin_size": args.bin_size,
        "checks": ShardChecks.for_run(args.vocab_file, model_vocab),  # shards checked at load
    }
    if lddl_data.is_parquet_folder(args.input_dir):  # NVIDIA HEAD's data: LDDL parquet shards
        return lddl_data.parquet_loader(
            args.input_dir,
            micro_batch,
            args.vocab_file,
            max_seq_length=args.max_seq_length,
            **options,
        )
    return PretrainingDataLoader(
        training_files(args.input_dir),
        micro_batch,
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        **options,
    )


def log_configuration(training: Training, precision: str) -> None:
    """The effective configuration, printed and logged before training, so that no batch or LR
    scaling happens silently."""
    args = training.args
    micro_batch = micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    training.metrics.log("PARAMETER", {"Config": [str(args)], "SEED": args.seed})
    training.metrics.log(
        "PARAMETER",
        {
            "train_start": True,
            "batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "global_batch_size": args.train_batch_size * training.dist.world_size,
            "world_size": training.dist.world_size,
            "precision": precision,
            "learning_rate": args.learning_rate,
            "device": str(training.dist.device),
            "shards": len(training.loader.files),
            "seq_length": training.loader.seq_length,
        },
    )


def execute(args: argparse.Namespace) -> None:
    """The steps of a run: set up, train (checkpoints on the way), log the summary."""
    started = time.time()  # e2e_train_time counts from here, as NVIDIA's from process start
    state = RunState()
    apply_elastic_restart(args)
    with contextlib.ExitStack() as resources:  # the output folder's lock, however the run ends
        resources.enter_context(signal_handlers(state))  # before the set-up, which can be long
        training = setup(args, state, resources)
        train(training)
        summarise(training, started)
        log_peak_memory(training.metrics, training.dist.device)
        training.metrics.close()


def main(argv: Sequence[str] | None = None) -> int:
    return runtime.run_main("run_pretraining.py", parse_arguments, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
