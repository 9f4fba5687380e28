"""BERT pre-training (masked LM + next sentence) on NVIDIA-layout shards, with LAMB.

    torchrun --nproc_per_node=8 run_pretraining.py --input_dir=<phase-1 shards> \\
        --output_dir=results/checkpoints --config_file=bert_configs/large.json \\
        --train_batch_size=8192 --gradient_accumulation_steps=128 --max_seq_length=128 \\
        --max_predictions_per_seq=20 --max_steps=7038 --warmup_proportion=0.2843 \\
        --learning_rate=6e-3 --num_steps_per_checkpoint=200 --seed=42 --fp16 --do_train

The entry script: NVIDIA's flags (and ours), their checks, and the flow of a run: set up, train
with checkpoints and held-out evaluations on the way, summarise; or, with `--do_eval` alone,
evaluate one checkpoint. `--train_batch_size` is per process per optimizer step and divided by
`--gradient_accumulation_steps`; `--max_steps` shapes the current phase's schedule; phase 2
(`--phase2 --resume_from_checkpoint`) starts from phase 1's newest checkpoint. Checkpoints and
resume are `pretraining_checkpoints.py`'s, the data `pretraining_data.py`'s, the evaluation
`pretraining_eval.py`'s; the README lists how this script differs from NVIDIA's.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

import cli
import distributed
import lddl_data
import runtime
from checkpoint import CheckpointFolder, load_model_weights
from errors import UsageError
from modeling import BertConfig, BertForPreTraining
from optimization import (
    LAMB_IMPLS,
    make_lamb,
    parameter_groups,
)
from output_lock import LOCK_NAME, claim_output
from pretraining_checkpoints import (
    PretrainOptions,
    Restart,
    Resume,
    RunState,
    Training,
    load_for_resume,
    save_checkpoint,
    signal_handlers,
    warn_if_short_of_space,
    what_was_saved,
)
from pretraining_data import (
    DynamicMasking,
    PretrainingBatch,
    PretrainingDataLoader,
    ShardChecks,
    check_first_shard_masked,
    training_files,
)
from pretraining_eval import (
    HeldOutSet,
    check_eval_dir,
    check_positions,
    evaluate,
    evaluate_held_out,
    load_held_out,
)
from schedulers import WarmupScheduler
from training import (
    PRETRAINING_ROW_FILLS,
    DivergenceError,
    LossWindow,
    StepOutcome,
    log_peak_memory,
    maybe_compile,
    maybe_float8,
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
    parser = cli.ArgumentParser(prog="run_pretraining.py", description=__doc__.split("\n\n")[0])
    runtime.add_runtime_arguments(parser, seed=42)
    add = parser.add_argument
    add("--input_dir", help="HDF5 shards ('training' in the name) or LDDL parquet; needed to train")
    add("--config_file", required=True, help="model config JSON")
    add("--output_dir", help="folder or s3://bucket/prefix for ckpt_<step>.pt; needed to train")
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
        type=cli.seq_length,
        help="must match the shards (default: theirs)",
    )
    add(
        "--max_predictions_per_seq",
        type=cli.seq_length,
        help="must match the shards (default: theirs)",
    )
    add("--num_train_epochs", type=cli.finite_float, default=3.0, help="accepted; unused")
    add(
        "--max_steps",
        type=cli.positive_steps,
        default=1000,
        help="optimizer steps of this phase's schedule",
    )
    add("--warmup_proportion", type=cli.proportion, default=0.01)
    add("--init_loss_scale", type=cli.positive_loss_scale, default=2**20)
    add("--log_freq", type=cli.positive_steps, default=1.0, help="log every N optimizer steps")
    add("--checkpoint_activations", action="store_true")
    add("--resume_from_checkpoint", action="store_true")
    add(
        "--resume_step",
        type=cli.step_or_minus_one,
        default=-1,
        help="-1: the newest ckpt_<N>.pt in output_dir",
    )
    add("--num_steps_per_checkpoint", type=cli.positive_int, default=100)
    add("--skip_checkpoint", action="store_true")
    add("--phase2", action="store_true")
    add("--resume_phase2", action="store_true", help="resume an interrupted phase 2 (HEAD flag)")
    # Gradients are always all-reduced once per optimizer step, after accumulation.
    add("--allreduce_post_accumulation", action="store_true", help="accepted; unused")
    add("--allreduce_post_accumulation_fp16", action="store_true")
    add("--phase1_end_step", type=cli.non_negative_int, default=7038)
    add(
        "--do_train",
        action="store_true",
        help="train (required, as in NVIDIA's script, unless "
        "--do_eval alone evaluates a checkpoint)",
    )
    add("--disable_progress_bar", action="store_true")
    add(
        "--steps_this_run",
        type=cli.positive_int_or_minus_one,
        default=-1,
        help="stop at this phase step (-1: max_steps)",
    )
    # Shards are read by one background thread, not DataLoader worker processes.
    add("--num_workers", type=cli.worker_count, default=4, help="accepted; unused")
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
        type=cli.seq_length,
        help="draw each batch from one bin of lengths (HEAD's LDDL bins)",
    )
    add(
        "--optimizer_impl",
        choices=LAMB_IMPLS,
        default="auto",
        help="LAMB: torch (multi-tensor), compiled (one torch.compile graph per step), apex "
        "(FusedLAMB); auto: apex on a GPU when installed, else torch",
    )
    add_head_only_arguments(parser)
    add_eval_arguments(parser)
    return parser.parse_args(argv)


def add_head_only_arguments(parser: argparse.ArgumentParser) -> None:
    """HEAD's flags for its own machinery: accepted where HEAD's meaning holds here too, refused
    with what to use instead where it cannot."""
    add = parser.add_argument
    add("--profile", action="store_true", help="accepted; unused (as at HEAD)")
    add(
        "--profile-start",
        "--profile_start",
        dest="profile_start",
        type=cli.non_negative_int,
        default=0,
        help="accepted; unused (as at HEAD)",
    )
    add(
        "--disable_jit_fusions",
        action="store_true",
        help="accepted; nothing to do: HEAD turned off its TorchScript/NVFuser fusions, and "
        "nothing here is scripted",
    )
    add(
        "--cuda_graphs",
        action=cli.RefusedFlag,
        instead="HEAD's capture of the training step in CUDA graphs is not implemented here; "
        "leave it out (--compile is the faster step here)",
        help="HEAD's CUDA-graph capture: refused; use --compile",
    )


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The held-out evaluation's flags (ours; Google's run_pretraining.py had --do_eval)."""
    add = parser.add_argument
    add(
        "--do_eval",
        action="store_true",
        help="without --do_train: evaluate --init_checkpoint (any weights format) on --eval_dir "
        "and print the metrics; with it: the same as --eval_dir",
    )
    add(
        "--eval_dir",
        help="held-out shards (HDF5 of any name, or LDDL parquet): masked-LM and next-sentence "
        "loss and accuracy every --eval_every steps and at the end",
    )
    add(
        "--eval_every",
        type=cli.positive_int,
        help="optimizer steps between evaluations (default: only at the end of the run)",
    )
    add(
        "--eval_max_samples",
        type=cli.positive_int,
        default=10000,
        help="evaluate the first N held-out samples (files in name order), the same every time",
    )
    add(
        "--eval_batch_size",
        type=cli.batch_size,
        help="samples per evaluation batch (default: the training micro-batch)",
    )


def check_arguments(
    args: argparse.Namespace, options: PretrainOptions, restart: Restart
) -> CheckpointFolder | None:
    """NVIDIA's setup rules and our flag checks, each failing with one line naming the flag,
    before any data is read: the flags against each other, the model files against each other,
    the shards (listed, and each one's shape read from its metadata) against the model, and the
    output paths; returns the checkpoint folder (not created yet), None when not training."""
    check_flag_combinations(options)
    seq = options.max_seq_length
    config = cli.check_model_files(options.config_file, options.vocab_file, seq)
    weights = {"--init_weights": options.init_weights}
    if options.resume_from_checkpoint or not options.do_train:  # else NVIDIA ignores it
        weights["--init_checkpoint"] = options.init_checkpoint
    for flag, path in weights.items():
        if path:
            cli.check_weights_path(path, flag)
    if options.eval_dir is not None:
        check_eval_dir(options, config)
    inputs = {"--config_file": options.config_file, "--vocab_file": options.vocab_file, **weights}
    if not options.do_train:
        runtime.check_run_outputs(args, inputs)
        return None
    cli.check_input_dir(options.input_dir, "--input_dir")
    check_shards(options, config)
    output = CheckpointFolder(options.output_dir)
    if not output.remote:
        cli.check_output_dir(options.output_dir, "--output_dir")
        check_log_among_checkpoints(args.json_summary, options.output_dir)
    lock = None if output.remote else Path(options.output_dir) / LOCK_NAME
    runtime.check_run_outputs(args, inputs, {f"--output_dir's {LOCK_NAME}": lock})
    resuming = options.resume_from_checkpoint or restart.resume_implied
    existing = [name for name in output.names() if name.startswith("ckpt")]  # s3: the bucket's
    if existing and not resuming and not options.skip_checkpoint:
        raise UsageError(
            f"--output_dir {output} already holds checkpoints ({existing[0]}, ...); pass "
            "--resume_from_checkpoint to continue, or choose an empty folder"
        )
    init_checkpoint = None if restart.resume_implied else options.init_checkpoint
    chosen = options.resume_step if resuming and not init_checkpoint else -1
    if chosen >= 0 and not restart.restarted and chosen not in output.numbers():
        raise UsageError(f"--resume_step {chosen}: no ckpt_{chosen}.pt in --output_dir {output}")
    return output


def check_log_among_checkpoints(json_summary: str | None, output_dir: str) -> None:
    """A log named like a checkpoint in the checkpoint folder would be read on resume and
    deleted when the newest three are kept: refused."""
    if not json_summary:
        return
    log = Path(json_summary)
    if cli.same_path(log.parent, output_dir) and re.fullmatch(r"ckpt_\d+\.pt", log.name):
        raise UsageError(
            f"--json-summary {json_summary} is named like a checkpoint of --output_dir "
            f"{output_dir}, which the run reads, writes and deletes; choose another name"
        )


def check_flag_combinations(options: PretrainOptions) -> None:
    """The flags against each other (no file is read)."""
    if not options.do_train and not options.do_eval:
        raise UsageError(
            "--do_train is required (as in NVIDIA's run_pretraining.py), or --do_eval alone to "
            "evaluate --init_checkpoint on --eval_dir"
        )
    if options.do_train:
        for flag, value in (
            ("--input_dir", options.input_dir),
            ("--output_dir", options.output_dir),
        ):
            if value is None:  # an empty one is checked as a path, below
                raise UsageError(f"{flag} is required with --do_train")
    elif options.eval_dir is None or options.init_checkpoint is None:
        raise UsageError(
            "--do_eval without --do_train evaluates --init_checkpoint on --eval_dir: pass both"
        )
    if options.do_eval and options.eval_dir is None:
        raise UsageError("--do_eval needs --eval_dir, the held-out shards")
    if options.init_weights and options.init_checkpoint and options.resume_from_checkpoint:
        raise UsageError(
            "--init_weights and --resume_from_checkpoint --init_checkpoint both name the starting "
            "weights; pass one of them"
        )
    if options.dynamic_masking and not options.vocab_file:
        raise UsageError("--dynamic_masking needs --vocab_file")
    if options.whole_word_mask and not options.dynamic_masking:
        raise UsageError(
            "--do_whole_word_mask applies to --dynamic_masking; static shards keep the masks "
            "they were made with (create_pretraining_data.py --do_whole_word_mask)"
        )
    seq, predictions = options.max_seq_length, options.max_predictions_per_seq
    if seq is not None and predictions is not None and predictions > seq:
        raise UsageError(
            f"--max_predictions_per_seq {predictions} is more than --max_seq_length {seq}"
        )


def check_shards(options: PretrainOptions, config: BertConfig) -> None:
    """The shards before anything is created, as the loader will see them: HDF5 shards named
    with 'training' exist, each holds instances of one shape that matches the flags, none longer
    than the model's positions (LDDL parquet: the vocabulary is given). Only metadata is read."""
    if lddl_data.check_parquet_input(options.input_dir, "--input_dir", options.vocab_file):
        return
    shards = PretrainingDataLoader(  # a ShardError names the file at fault; nothing is read yet
        training_files(options.input_dir),
        1,
        max_seq_length=options.max_seq_length,
        max_predictions_per_seq=options.max_predictions_per_seq,
        prefetch=False,
    )
    check_positions(shards.seq_length, "--input_dir", options.input_dir, options, config)
    if not options.dynamic_masking:
        check_first_shard_masked(shards)


def build_model(options: PretrainOptions, device: torch.device) -> BertForPreTraining:
    config = BertConfig.from_json_file(options.config_file)  # vocab padded to a multiple of 8
    model = BertForPreTraining(config, sequence_output_is_dense=options.dense_sequence_output)
    if options.checkpoint_activations:
        set_activation_checkpointing(model, True)
    return model.to(device)


# ------------------------------------------------------------------------------- training


def log_progress(training: Training, window: LossWindow, grad_norm: torch.Tensor | None) -> None:
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
        "training_sequences_per_second": window.rate(training.dist.world_size),
    }
    if training.precision.scaler is not None:
        data["loss_scale"] = training.precision.loss_scale
    training.metrics.log(training.log_step(), data)
    check_finite(training, torch.tensor(average), grad_norm)


def check_finite(training: Training, values: torch.Tensor, grad_norm: torch.Tensor | None) -> None:
    """Stop on non-finite losses, weights or gradient norm, so no checkpoint holds them."""
    values = [values.detach().float().flatten().cpu()]
    if grad_norm is not None:
        values.append(grad_norm.detach().float().flatten().cpu())
    if not torch.isfinite(torch.cat(values)).all():
        raise DivergenceError(
            f"the loss, weights or gradient norm became non-finite at step "
            f"{training.state.step}{' of phase 2' if training.options.phase2 else ''}; "
            "stopping without a checkpoint of these weights (the last good one is kept). "
            "Try a lower --learning_rate, --bf16, or a smaller --init_loss_scale"
        )


def timed(function: Callable[..., object], *args: object) -> float:
    """Seconds `function(*args)` took."""
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def train(training: Training, held_out: HeldOutSet | None = None) -> None:
    """Optimizer steps up to the target, each followed by its logging, evaluation and
    checkpoint when due; a held-out evaluation at the end unless a signal stopped the run."""
    options, state = training.options, training.state
    parameters = [p for group in training.optimizer.param_groups for p in group["params"]]
    window = LossWindow(training.dist.device, losses=3)  # total, MLM, NSP
    state.start_step = state.step
    raw_start = time.perf_counter()
    progress = tqdm(
        total=options.step_target,
        initial=state.step,
        desc="pre-training",
        unit="step",
        disable=not options.progress_bar or not training.dist.is_main_process,
    )
    training.ddp_model.train()
    batches = device_batches(training)
    evaluated, eval_seconds = -1, 0.0
    while state.step < options.step_target and state.stop_requested is None:
        outcome = accumulate_and_step(training, batches, window, parameters)
        if outcome is None:  # an fp16 overflow: the step was skipped
            continue
        state.step += 1
        training.scheduler.step()
        progress.update()
        last = state.step == options.step_target or state.stop_requested
        if state.step % options.log_freq == 0 or last:
            log_progress(training, window, outcome.grad_norm)
            window.reset()
        if options.eval_every and state.step % options.eval_every == 0:
            seconds = timed(evaluate_held_out, training, held_out)
            eval_seconds += seconds
            window.started += seconds  # the next window's rate counts training only
            evaluated = state.step
        save_if_due(training, outcome, parameters)
    state.raw_train_time = time.perf_counter() - raw_start - eval_seconds
    if state.stop_requested is None and evaluated != state.step:
        evaluate_held_out(training, held_out)
    # NVIDIA's last per-step record, before the summary at step ().
    training.metrics.log(training.log_step(), {"final_loss": state.final_loss})
    if state.stop_requested:
        logger.info("%s received: %s; exiting", state.stop_requested, what_was_saved(training))
    progress.close()


def device_batches(training: Training) -> Iterator[tuple[PretrainingBatch, int, int]]:
    """(batch on the device, its masked tokens, its real rows) for each loader batch, trimmed
    to its longest sequence (the default fast path) and, under --compile, padded to a full
    micro-batch so that a shard's short last batch keeps the compiled layers' shape."""
    options, device = training.options, training.dist.device
    multiple = trim_multiple(device, options.compile)
    for cpu_batch in training.loader:
        rows = len(cpu_batch.input_ids)  # real rows: a short last batch counts less
        if options.trim_padding:
            cpu_batch = PretrainingBatch(*trim_padding(cpu_batch, cpu_batch.input_mask, multiple))
        if options.compile:
            fills = PRETRAINING_ROW_FILLS
            cpu_batch = PretrainingBatch(*pad_rows(cpu_batch, options.micro_batch_size, fills))
        # Counted on the host, so the masked-only head needs no device sync.
        num_masked = int((cpu_batch.masked_lm_labels != -1).sum())
        yield cpu_batch.map(lambda t: t.to(device, non_blocking=True)), num_masked, rows


def accumulate_and_step(
    training: Training,
    batches: Iterator[tuple[PretrainingBatch, int, int]],
    window: LossWindow,
    parameters: list[torch.Tensor],
) -> StepOutcome | None:
    """One optimizer step: forward and backward over `gradient_accumulation_steps`
    micro-batches (gradients all-reduced after the last one only), then the step. Returns the
    step's outcome, None when fp16 overflowed and the step was skipped."""
    grad_accum_steps = training.options.gradient_accumulation_steps
    for micro_step in range(1, grad_accum_steps + 1):
        batch, num_masked, rows = next(batches)
        with no_sync_unless(training.ddp_model, sync=micro_step == grad_accum_steps):
            with training.precision.autocast():
                total, mlm, nsp = training.ddp_model(*batch, num_masked=num_masked)
            training.precision.backward(total / grad_accum_steps)
        window.add(total, mlm, nsp, rows=rows)
    outcome = optimizer_step(training.optimizer, training.precision, parameters)
    if not outcome.skipped:
        training.state.consecutive_skips = 0
        return outcome
    state = training.state
    state.skipped_steps += 1
    state.consecutive_skips += 1
    if state.consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
        raise DivergenceError(
            f"{MAX_CONSECUTIVE_SKIPS} consecutive fp16 steps overflowed (loss scale now "
            f"{training.precision.loss_scale:g}); the run is diverging. Stopping; the "
            "last good checkpoint is kept. Try --bf16 or a lower --learning_rate"
        )
    training.metrics.log("PARAMETER", {"loss_scale": training.precision.loss_scale}, verbose=False)
    return None


def save_if_due(training: Training, outcome: StepOutcome, parameters: list[torch.Tensor]) -> None:
    """A checkpoint every --num_steps_per_checkpoint steps, at the last step and when a signal
    asked for one; never of non-finite weights."""
    options, state = training.options, training.state
    due = state.step % options.num_steps_per_checkpoint == 0 or state.step == options.step_target
    if options.skip_checkpoint or not (due or state.stop_requested):
        return
    norms = torch.stack(torch._foreach_norm(parameters))  # the weights to be saved
    check_finite(training, norms, outcome.grad_norm)
    save_checkpoint(training)
    state.saved_step = state.step


def summarise(training: Training, started: float) -> None:
    """The final summary; `e2e_train_time` counts from `started` (NVIDIA's: from process start)."""
    state, options = training.state, training.options
    steps = state.step - state.start_step + state.skipped_steps
    sequences = options.train_batch_size * training.dist.world_size * steps
    raw = state.raw_train_time
    training.metrics.log(
        (),
        {
            "e2e_train_time": time.time() - started,
            "training_sequences_per_second": sequences / raw if raw > 0 else 0.0,
            "final_loss": state.final_loss,
            "raw_train_time": raw,
        },
    )


# ------------------------------------------------------------------------------- main


def setup(
    args: argparse.Namespace,
    options: PretrainOptions,
    state: RunState,
    resources: contextlib.ExitStack,
) -> Training:
    """The steps before training: flag checks, the shared run setup (ranks, seed, precision,
    logger), the output folder held for this run (released by `resources`), the model, LAMB
    and its schedule, the weights to resume from, DDP, the data."""
    output = check_arguments(args, options, state.restart)
    run = runtime.setup_run(
        args, init_loss_scale=args.init_loss_scale, tensorboard_step_offset=options.step_offset
    )
    resources.enter_context(run.metrics)  # the log's lock, however the run ends
    if options.skip_checkpoint:  # nothing is written there: no lock, so benchmarks may share it
        if run.dist.is_main_process:
            output.create()
        distributed.barrier()
    else:  # locked, cleared of what a killed run left, and tested for a write
        is_main = run.dist.is_main_process
        claim = claim_output(options.output_dir, "run_pretraining.py", is_main=is_main)
        resources.enter_context(claim)
    model = build_model(options, run.device)
    optimizer = make_lamb(
        parameter_groups(model, 0.01), options.learning_rate, options.optimizer_impl
    )
    scheduler = WarmupScheduler(
        optimizer, options.learning_rate, options.max_steps, options.warmup_proportion, "poly"
    )
    training = Training(
        options,
        run.dist,
        model,
        model,
        optimizer,
        scheduler,
        run.precision,
        None,
        run.metrics,
        state,
    )
    resume = load_for_resume(training)
    state.step = resume.step
    compiled = maybe_compile(maybe_float8(model, run.precision.precision), options.compile)
    compression = distributed.allreduce_compression(
        run.precision.precision, options.allreduce_post_accumulation_fp16
    )
    training.ddp_model = distributed.wrap_ddp(compiled, run.dist, compression=compression)
    training.loader = build_loader(options, run.dist, resume)
    if resume.rng is not None:
        distributed.set_rng_state(resume.rng)
    log_configuration(training, args, run.precision.precision)
    warn_if_short_of_space(training)
    return training


def shard_checks(options: PretrainOptions) -> ShardChecks:
    """The content checks every shard of the run gets when it is read (training and held out)."""
    model_vocab = BertConfig.from_json_file(options.config_file).vocab_size
    return ShardChecks.for_run(options.vocab_file, model_vocab)


def build_loader(
    options: PretrainOptions, dist: distributed.DistState, resume: Resume
) -> PretrainingDataLoader:
    masking = None
    if options.dynamic_masking:
        masking = DynamicMasking.from_vocab_file(options.vocab_file, options.whole_word_mask)
    position = resume.data_position
    if position is None and resume.full:
        position = {"epoch": resume.epoch}
    loader_options = {
        "rank": dist.rank,
        "world_size": dist.world_size,
        "seed": options.seed,
        "sharding": options.data_sharding,
        "position": position,
        "dynamic_masking": masking,
        "pin_memory": dist.device.type == "cuda",
        "bin_size": options.bin_size,
        "checks": shard_checks(options),  # shards checked at load
    }
    if lddl_data.is_parquet_folder(options.input_dir):  # NVIDIA HEAD's data: LDDL parquet
        return lddl_data.parquet_loader(
            options.input_dir,
            options.micro_batch_size,
            options.vocab_file,
            max_seq_length=options.max_seq_length,
            **loader_options,
        )
    return PretrainingDataLoader(
        training_files(options.input_dir),
        options.micro_batch_size,
        max_seq_length=options.max_seq_length,
        max_predictions_per_seq=options.max_predictions_per_seq,
        **loader_options,
    )


def log_configuration(training: Training, args: argparse.Namespace, precision: str) -> None:
    """The effective configuration, printed and logged before training, so that no batch or LR
    scaling happens silently."""
    options = training.options
    training.metrics.log("PARAMETER", {"Config": [str(args)], "SEED": options.seed})
    training.metrics.log(
        "PARAMETER",
        {
            "train_start": True,
            "batch_size_per_gpu": options.micro_batch_size,
            "gradient_accumulation_steps": options.gradient_accumulation_steps,
            "global_batch_size": options.train_batch_size * training.dist.world_size,
            "world_size": training.dist.world_size,
            "precision": precision,
            "learning_rate": options.learning_rate,
            "device": str(training.dist.device),
            "shards": len(training.loader.files),
            "seq_length": training.loader.seq_length,
        },
    )


def evaluate_checkpoint(args: argparse.Namespace, options: PretrainOptions) -> None:
    """--do_eval without --do_train: the held-out metrics of --init_checkpoint (any format the
    project loads), logged at the summary step () and printed."""
    check_arguments(args, options, Restart())
    run = runtime.setup_run(args, init_loss_scale=args.init_loss_scale)
    with run.metrics:  # closed, and the log's lock released, however the evaluation ends
        model = build_model(options, run.device)
        load_model_weights(model, options.init_checkpoint)
        held_out = load_held_out(options, run.dist, shard_checks(options))
        multiple = trim_multiple(run.device, compiled=False)
        metrics = evaluate(
            model,
            held_out,
            run.device,
            run.precision,
            trim_multiple=multiple,
            reduce=distributed.all_reduce_sum,
        )
        run.metrics.log((), metrics)


def execute(args: argparse.Namespace) -> None:
    """The steps of a run: set up, train (checkpoints and evaluations on the way), log the
    summary; or, with --do_eval alone, evaluate one checkpoint."""
    started = time.time()  # e2e_train_time counts from here, as NVIDIA's from process start
    options = PretrainOptions.from_args(args)
    if not options.do_train:
        evaluate_checkpoint(args, options)
        return
    state = RunState(restart=Restart.from_environment(options))
    with contextlib.ExitStack() as resources:  # the output folder's lock, however the run ends
        resources.enter_context(signal_handlers(state))  # before the set-up, which can be long
        training = setup(args, options, state, resources)
        held_out = load_held_out(options, training.dist, shard_checks(options))
        train(training, held_out)
        summarise(training, started)
        log_peak_memory(training.metrics, training.dist.device)
        training.metrics.close()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("run_pretraining.py", parse_arguments, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
