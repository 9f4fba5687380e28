"""Pre-training checkpoints: what one is made of, where it is written, which are kept, and
how a run resumes from one.

Owns the run's state (`RunState`, and `Training`: the pieces one run works with), writing
`ckpt_<step>.pt` atomically with every rank's data position and RNG state in a layout that
NVIDIA's 21.11 and HEAD resume code also reads, keeping the newest three of the phase, and
NVIDIA's resume rules (`--resume_from_checkpoint`, `--resume_step`, `--init_checkpoint`,
phase 2 from phase 1) with exact continuation of our own runs and a fallback past corrupt
files. `run_pretraining.py` decides when to save and runs the steps; the weight formats and
key map are `checkpoint.py`'s, the folder (local or s3://) is `checkpoint.CheckpointFolder`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import distributed
import storage
from checkpoint import (
    CheckpointError,
    CheckpointFolder,
    load_model_weights,
    load_state_dict_into,
    local_path,
    nvidia_state_dict,
    torch_load,
)
from errors import BertError, UsageError
from fileio import NotRegularFile, describe_os_error, os_error_in
from logger import MetricLogger
from modeling import BertForPreTraining
from optimization import load_lamb_state, master_params, nvidia_lamb_state_dict
from pretraining_data import PretrainingDataLoader
from schedulers import WarmupScheduler
from training import PrecisionStack, micro_batch_size

logger = logging.getLogger("run_pretraining")

#: Checkpoints kept in the output folder: the newest of the phase being trained (see
#: `prune_checkpoints`), as NVIDIA keeps three.
KEEP_CHECKPOINTS = 3


@dataclasses.dataclass(frozen=True)
class PretrainOptions:
    """The flags of run_pretraining.py as the run uses them, built once from the parsed flags
    (`from_args`) with the values derived from them, and never changed afterwards. What torchrun
    decides for a restarted worker is run state (`Restart`), not an option."""

    # data and model
    input_dir: str | None
    config_file: str
    vocab_file: str | None
    max_seq_length: int | None  # None: the shards' own
    max_predictions_per_seq: int | None
    dynamic_masking: bool
    whole_word_mask: bool
    data_sharding: str
    bin_size: int | None
    dense_sequence_output: bool
    trim_padding: bool
    checkpoint_activations: bool
    compile: bool
    seed: int
    # batches, optimizer and schedule
    train_batch_size: int  # per process per optimizer step, NVIDIA's meaning
    gradient_accumulation_steps: int
    micro_batch_size: int  # train_batch_size / gradient_accumulation_steps
    learning_rate: float
    warmup_proportion: float
    max_steps: int  # length of this phase's schedule
    steps_this_run: int  # -1: up to max_steps
    optimizer_impl: str
    allreduce_post_accumulation_fp16: bool
    initial_loss_scale: float  # --loss_scale when given, else --init_loss_scale
    log_freq: int
    progress_bar: bool
    # checkpoints, resume and phases
    output_dir: str | None
    init_checkpoint: str | None
    init_weights: str | None
    resume_from_checkpoint: bool
    resume_step: int
    resume_phase2: bool
    num_steps_per_checkpoint: int
    skip_checkpoint: bool
    phase2: bool
    phase1_end_step: int
    # what to do, and the held-out evaluation
    do_train: bool
    do_eval: bool
    eval_dir: str | None
    eval_every: int | None  # optimizer steps between evaluations; None: only at the end
    eval_max_samples: int
    eval_batch_size: int
    # the command line's flags as parsed, in their order: what a checkpoint records (`recorded`)
    flags: tuple[tuple[str, str | int | float | bool], ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PretrainOptions:
        """The options of parsed flags; a UsageError when the batch does not split into the
        accumulation steps."""
        micro_batch = micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
        return cls(
            input_dir=args.input_dir,
            config_file=args.config_file,
            vocab_file=args.vocab_file,
            max_seq_length=args.max_seq_length,
            max_predictions_per_seq=args.max_predictions_per_seq,
            dynamic_masking=args.dynamic_masking,
            whole_word_mask=args.do_whole_word_mask,
            data_sharding=args.data_sharding,
            bin_size=args.bin_size,
            dense_sequence_output=not args.no_dense_sequence_output,
            trim_padding=not args.no_trim_padding,
            checkpoint_activations=args.checkpoint_activations,
            compile=args.compile,
            seed=args.seed,
            train_batch_size=args.train_batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            micro_batch_size=micro_batch,
            learning_rate=args.learning_rate,
            warmup_proportion=args.warmup_proportion,
            max_steps=int(args.max_steps),
            steps_this_run=args.steps_this_run,
            optimizer_impl=args.optimizer_impl,
            allreduce_post_accumulation_fp16=args.allreduce_post_accumulation_fp16,
            initial_loss_scale=float(args.loss_scale or args.init_loss_scale),
            log_freq=max(int(args.log_freq), 1),
            progress_bar=not args.disable_progress_bar,
            output_dir=args.output_dir,
            init_checkpoint=args.init_checkpoint,
            init_weights=args.init_weights,
            resume_from_checkpoint=args.resume_from_checkpoint,
            resume_step=args.resume_step,
            resume_phase2=args.resume_phase2,
            num_steps_per_checkpoint=args.num_steps_per_checkpoint,
            skip_checkpoint=args.skip_checkpoint,
            phase2=args.phase2,
            phase1_end_step=args.phase1_end_step,
            do_train=args.do_train,
            do_eval=args.do_eval,
            eval_dir=args.eval_dir,
            eval_every=args.eval_every,
            eval_max_samples=args.eval_max_samples,
            eval_batch_size=args.eval_batch_size or micro_batch,
            flags=tuple(
                (key, value)
                for key, value in vars(args).items()
                if isinstance(value, (str, int, float, bool))
            ),
        )

    @property
    def step_target(self) -> int:
        """The phase step this run stops at: `max_steps`, or `steps_this_run` when sooner."""
        if self.steps_this_run > 0:
            return min(self.max_steps, self.steps_this_run)
        return self.max_steps

    @property
    def step_offset(self) -> int:
        """Added to the phase step in checkpoint names only (phase 2's files continue phase 1's;
        its logs count from 1, as NVIDIA's do)."""
        return self.phase1_end_step if self.phase2 else 0

    def recorded(self) -> dict[str, Any]:
        """What a checkpoint records of the options (its `args` entry): every flag of the command
        line whose value is a plain number, string or switch, as parsed."""
        return dict(self.flags)


@dataclasses.dataclass(frozen=True)
class Restart:
    """Whether torchrun restarted this worker after a failure (`--max-restarts N`).

    torchrun restarts every worker of the job with TORCHELASTIC_RESTART_COUNT > 0 and the same
    command line; such a worker behaves as if --resume_from_checkpoint were given and takes the
    newest checkpoint of --output_dir (not --resume_step's, nor --init_checkpoint's once the
    phase has checkpoints of its own). Checkpoints hold every rank's data position and RNG
    state, so the restarted job trains on exactly the samples the failed one had not
    checkpointed: none lost, none repeated. With --skip_checkpoint it starts over."""

    attempt: int = 0
    resume_implied: bool = False  # resuming although the command line did not ask for it

    @classmethod
    def from_environment(cls, options: PretrainOptions) -> Restart:
        text = os.environ.get("TORCHELASTIC_RESTART_COUNT", "").strip() or "0"
        if not text.isdigit():
            raise UsageError(
                f"TORCHELASTIC_RESTART_COUNT (set by torchrun) is not a number: {text!r}"
            )
        attempt = int(text)
        if attempt == 0 or options.skip_checkpoint:
            return cls(attempt)
        logger.warning(
            "torchrun restart %d: resuming from the newest checkpoint in %s",
            attempt,
            options.output_dir,
        )
        return cls(attempt, resume_implied=not options.resume_from_checkpoint)

    @property
    def restarted(self) -> bool:
        return self.attempt > 0


@dataclasses.dataclass
class RunState:
    """Counters of the run; `step` is the phase-local optimizer step."""

    step: int = 0
    skipped_steps: int = 0
    consecutive_skips: int = 0
    start_step: int = 0
    final_loss: float = float("nan")
    raw_train_time: float = 0.0
    stop_requested: str | None = None
    saved_step: int | None = None  # the phase step of this run's last checkpoint
    restart: Restart = dataclasses.field(default_factory=Restart)


@dataclasses.dataclass
class Training:
    """Everything one run works with (built once in main)."""

    options: PretrainOptions
    dist: distributed.DistState
    model: BertForPreTraining
    ddp_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: WarmupScheduler
    precision: PrecisionStack
    loader: PretrainingDataLoader | None
    metrics: MetricLogger
    state: RunState

    def log_step(self) -> tuple[int, int]:
        """The dllogger step of a per-step record: (epoch, phase step)."""
        return (self.loader.epoch if self.loader else 0, self.state.step)

    @property
    def resuming(self) -> bool:
        """--resume_from_checkpoint, given or implied by a torchrun restart."""
        return self.options.resume_from_checkpoint or self.state.restart.resume_implied

    @property
    def init_checkpoint(self) -> str | None:
        """--init_checkpoint, unless a torchrun restart implied the resume: the first attempt
        ignored it then (no --resume_from_checkpoint), so the restart does too."""
        return None if self.state.restart.resume_implied else self.options.init_checkpoint


def save_checkpoint(training: Training) -> str:
    """Write ckpt_<step>.pt atomically on rank 0 with every rank's data position and RNG state;
    returns where it went (a local path or an s3:// URL).

    The file is also one that NVIDIA's run_pretraining.py resumes (21.11 and HEAD): `model`
    (NVIDIA's names, fp32), `optimizer` (FusedLAMB / FusedLAMBAMP layout, `head_step_tensors`
    says which), `master params`,
    `files`, `epoch` and `grad_scaler` are what their resume code reads; the other keys are
    ours, for an exact resume here. Nothing in it needs unpickling of classes."""
    loader = training.loader
    mine = None
    if loader is not None:
        position = loader.state()
        mine = (position, [str(p.file) for p in loader.epoch_pieces(position["epoch"])])
    gathered = distributed.all_gather_object(mine)
    positions = [entry[0] if entry else None for entry in gathered]
    rngs = distributed.all_gather_object(distributed.rng_state())
    options = training.options
    folder = CheckpointFolder(options.output_dir)
    number = training.state.step + options.step_offset
    name = f"ckpt_{number}.pt"
    failure = None
    if training.dist.is_main_process:
        payload = {
            "model": nvidia_state_dict(training.model),
            "optimizer": nvidia_lamb_state_dict(
                training.optimizer,
                training.model,
                training.state.step,
                tensors=head_step_tensors(options, training.state.step),
            ),
            "master params": master_params(training.model),
            "grad_scaler": grad_scaler_state(training),
            "scheduler": training.scheduler.state_dict(),
            "epoch": positions[0]["epoch"] if positions[0] else 0,
            "files": nvidia_files(gathered),
            "data_position": positions,
            "rng_state": rngs,
            "phase": 2 if options.phase2 else 1,
            "global_step": training.state.step,
            "skipped_steps": training.state.skipped_steps,
            "world_size": training.dist.world_size,
            "precision": training.precision.precision,
            "config": training.model.config.to_dict(),
            "param_names": [name for name, _ in training.model.named_parameters()],
            "args": options.recorded()
            | {
                "elastic_restart": training.state.restart.attempt,
                "resume_implied": training.state.restart.resume_implied,
            },
        }
        failure = write_checkpoint(folder, payload, name)
        if failure is None:
            prune_checkpoints(folder, number, options.phase1_end_step if options.phase2 else None)
            training.metrics.log(
                "PARAMETER", {"checkpoint_step": training.state.step}
            )  # phase step, as NVIDIA
    failure = distributed.all_gather_object(failure)[0]  # every rank stops on a failed save
    if failure is not None:
        raise CheckpointError(failure)
    return folder.url(name)


def head_step_tensors(options: PretrainOptions, step: int) -> bool:
    """Whether the checkpoint of phase step `step` holds the LAMB groups' `lr` and `step` as
    HEAD's tensors (True) or as 21.11's numbers (False).

    No one layout serves every resume of NVIDIA's code. 21.11 continuing a phase computes its
    LR from the first group's `step` and logs it through dllogger's JSON writer, which cannot
    hold a tensor; HEAD starting phase 2 (or resuming `--init_checkpoint`) calls `zero_()` and
    `fill_()` on `step` and `lr`, which numbers lack. Every other resume of either version
    takes both (HEAD's scheduler and FusedLAMBAMP turn numbers into tensors at the first step;
    21.11 assigns numbers over tensors when it starts phase 2). So a checkpoint inside the
    schedule, which a run continues from, holds numbers, and the one at the end of the
    schedule, which the next phase starts from, holds tensors."""
    return step >= options.max_steps


def write_checkpoint(folder: CheckpointFolder, payload: dict, name: str) -> str | None:
    """Save one checkpoint; None, or why it could not be written (one line).

    The file is written under a temporary name and renamed only when complete, so a full,
    read-only or failing disk (ENOSPC, EDQUOT, EROFS, EIO) leaves no partial file and the older
    checkpoints as they were; the run then stops rather than train on without checkpoints."""
    kept = "the run stops here; the older checkpoints are kept"
    try:
        folder.save(payload, name)
    except CheckpointError as err:  # s3://: the upload failed
        return f"{err}; {kept}"
    except Exception as err:
        failure = os_error_in(err)  # torch.save reports a failed write as a RuntimeError
        if failure is None:
            raise
        detail = describe_os_error(failure)
        if folder.remote:
            detail += ", in its local scratch copy for the upload"
        return f"--output_dir {folder}: cannot write {name}: {detail}; {kept}"
    return None


def prune_checkpoints(folder: CheckpointFolder, written: int, phase1_end_step: int | None) -> None:
    """Delete all but the newest KEEP_CHECKPOINTS checkpoints of the phase, `written` included,
    after `written` is safely in place.

    Counted in the folder, not per process: NVIDIA kept the newest three its own process wrote,
    so every resumed run left three more behind. Phase 2 (`phase1_end_step` given) counts and
    deletes only its own checkpoints, numbered above phase1_end_step: phase 1's stay, the one
    phase 2 started from among them, as they stay after NVIDIA's two phases. Checkpoints
    numbered above `written` (left by a run rewound with --resume_step) are not touched; this
    run overwrites each when it reaches its step."""
    older = [
        n
        for n in folder.numbers()
        if n < written and (phase1_end_step is None or n > phase1_end_step)
    ]
    for number in older[: max(len(older) - (KEEP_CHECKPOINTS - 1), 0)]:
        try:
            folder.delete(f"ckpt_{number}.pt")
        except (OSError, CheckpointError) as err:
            logger.warning("%s: cannot delete ckpt_%d.pt (%s); kept", folder, number, err)


def grad_scaler_state(training: Training) -> dict[str, Any]:
    """The loss scaler's state; for bf16 and fp32 runs, that of a fresh fp16 scaler, because
    HEAD's fp16 resume loads whatever `grad_scaler` holds into its GradScaler (None or {} fail)."""
    if training.precision.scaler is not None:
        return training.precision.scaler.state_dict()
    initial = training.options.initial_loss_scale
    return torch.amp.GradScaler("cpu", init_scale=initial).state_dict()


def nvidia_files(gathered: list) -> list:
    """21.11's `files` entry, `[slot] + files`: this epoch's shards as paths in the order 21.11
    indexes them (rank r trains files[slot * W + r] at a slot), and the slot rank 0 is reading.

    `gathered` holds every rank's (loader position, its pieces this epoch). 21.11 restarts that
    slot's files from their beginning, so it repeats part of them (our own resume continues at
    the exact sample). With `--data_sharding interleaved` every rank walks one list, which
    21.11's slots cannot express: the list and slot are then rank 0's, an approximation."""
    if not gathered or gathered[0] is None:
        return []
    position, first = gathered[0]
    if position["sharding"] != "files":
        return [position["piece"], *first]
    lists = [entry[1] for entry in gathered]
    order = [
        lists[rank][slot]
        for slot in range(max(map(len, lists)))
        for rank in range(len(lists))
        if slot < len(lists[rank])
    ]
    return [position["piece"], *order]


@dataclasses.dataclass
class Resume:
    """What a checkpoint gives back beyond the weights."""

    step: int = 0
    full: bool = False  # optimizer step, scaler, schedule, data position and RNG restored
    data_position: dict | None = None
    rng: dict | None = None
    epoch: int = 0


def load_for_resume(training: Training) -> Resume:
    """Where training starts: NVIDIA's resume rules, with exact continuation of our own runs.

    - `--resume_from_checkpoint --init_checkpoint X`: the model and optimizer moments from X,
      phase step 0, step counts and schedule restarted (NVIDIA's meaning of the pair);
    - `--resume_from_checkpoint --resume_step N`: ckpt_N.pt of output_dir, which must load;
    - `--resume_from_checkpoint`: the newest ckpt_N.pt of output_dir that loads; a corrupt one
      is skipped with a warning naming it and why, and if none loads the error lists them all;
      phase 2 from a phase-1 checkpoint keeps the moments and restarts the step count and
      schedule, as NVIDIA's does; anything else continues exactly where the run stopped;
    - `--init_weights X` (ours): weights only, fresh optimizer and schedule, when there is
      nothing to resume. `--init_checkpoint` alone is ignored with a warning, as NVIDIA's
      script ignores it.

    A worker that torchrun restarted (`Restart`) takes the newest checkpoint even with
    --resume_step, and --init_checkpoint only while the phase has none of its own."""
    options, init_checkpoint = training.options, training.init_checkpoint
    if init_checkpoint and not training.resuming:
        logger.warning(
            "--init_checkpoint %s is ignored without --resume_from_checkpoint, as in NVIDIA's "
            "run_pretraining.py; to start from these weights pass --init_weights %s",
            init_checkpoint,
            init_checkpoint,
        )
    if not training.resuming:
        if options.phase2 and not options.init_weights:
            logger.warning(
                "--phase2 without --resume_from_checkpoint: phase 2 starts from random weights, "
                "as NVIDIA's script does, which is almost always a mistake; pass "
                "--resume_from_checkpoint to start from phase 1's newest checkpoint in %s",
                options.output_dir,
            )
        return start_from_weights(training)
    output = CheckpointFolder(options.output_dir)
    numbers = output.numbers()
    restarted = training.state.restart.restarted
    own = [n for n in numbers if not options.phase2 or n > options.phase1_end_step]
    if init_checkpoint and not (restarted and own):
        path = local_path(init_checkpoint)
        if not path.is_file():
            load_model_weights(training.model, path)  # a folder (Hugging Face, TF): weights only
            return Resume()
        return resume_from(
            training, read_checkpoint(training, path), path, 0, from_init_checkpoint=True
        )
    if options.resume_step >= 0 and not restarted:
        number = options.resume_step
        if number not in numbers:
            raise CheckpointError(f"{output}/ckpt_{number}.pt: --resume_step names no checkpoint")
        newer = [n for n in numbers if n > number]
        if newer and training.dist.is_main_process:
            logger.warning(
                "--resume_step %d: %s also holds newer checkpoints (up to ckpt_%d.pt), which a "
                "resume without --resume_step would take until this run overwrites them",
                number,
                output,
                newer[-1],
            )
        path = output.path(f"ckpt_{number}.pt")
        return resume_from(training, read_checkpoint(training, path), path, number)
    if not numbers:
        return start_without_checkpoint(training, output)
    number, path, checkpoint = newest_loadable(training, output, numbers)
    return resume_from(training, checkpoint, path, number)


def read_checkpoint(training: Training, path: Path) -> dict:
    """A training checkpoint whose weights are now in the model; a CheckpointError, before
    the model changes, if it is unreadable, has no 'model', or its weights do not fit or hold
    NaN or infinity."""
    checkpoint = torch_load(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry)")
    check_optimizer_types(checkpoint.get("optimizer"), str(path))
    load_state_dict_into(training.model, checkpoint["model"], str(path))
    return checkpoint


def _real_number(value: object) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_optimizer_types(state: object, source: str) -> None:
    """Refuse optimizer state of the wrong kind, naming the file and the entry: moments that are
    not floating tensors or hold NaN/infinity (`load_state_dict` would cast them into the
    moments without a word), and a group's `lr` or `step` that is not one real number. A state
    of another layout is left to `load_optimizer_state` (fresh moments, with a warning)."""
    if not isinstance(state, dict):
        return
    moments = state.get("state")
    for number, entries in moments.items() if isinstance(moments, dict) else ():
        for key, value in entries.items() if isinstance(entries, dict) else ():
            where = f"{source}: optimizer state {_one_line(number)} {_one_line(key)}"
            if key == "step":
                if not _real_number(value):
                    raise CheckpointError(f"{where} is not a number ({_describe(value)})")
            elif not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise CheckpointError(f"{where} is not a floating tensor ({_describe(value)})")
            elif not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{where} holds NaN or infinity")
    groups = state.get("param_groups")
    for index, group in enumerate(groups if isinstance(groups, list) else ()):
        for key in ("lr", "step"):
            value = group.get(key, 0) if isinstance(group, dict) else 0
            if not _real_number(value) or not math.isfinite(float(value)):
                raise CheckpointError(
                    f"{source}: optimizer param_groups[{index}] {key} is not a finite number "
                    f"({_describe(value)})"
                )


def _one_line(name: object) -> str:
    """A name from the file, escaped: a newline in it must not forge a second error line."""
    return str(name).encode("unicode_escape").decode("ascii")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)}"
    if isinstance(value, int | float):
        return repr(value)[:40]
    return f"a {type(value).__name__}"


def newest_loadable(
    training: Training, output: CheckpointFolder, numbers: list[int]
) -> tuple[int, Path, dict]:
    """(N, path, checkpoint) of the newest ckpt_N.pt that loads, the model holding its weights.

    Each one skipped is one warning naming the file and why; if none loads, one error lists
    them. A download that fails (s3://) is an error, not a reason to take an older one. Every
    rank reads the same files, so all make the same choice (checked)."""
    skipped = []
    for number in reversed(numbers):
        name = f"ckpt_{number}.pt"
        loaded = try_checkpoint(training, output, name)
        if not isinstance(loaded, str):
            path, checkpoint = loaded
            break
        reason = loaded
        skipped.append(f"{name}: {reason}")
        if training.dist.is_main_process:
            logger.warning("%s: skipping %s, it cannot be resumed from: %s", output, name, reason)
    else:
        raise CheckpointError(
            f"--resume_from_checkpoint: no checkpoint in {output} can be resumed from: "
            + "; ".join(skipped)
        )
    chosen = distributed.all_gather_object(number)
    if len(set(chosen)) > 1:
        raise CheckpointError(
            f"ranks found different newest checkpoints in {output} ({sorted(set(chosen))}); "
            "do all nodes see the same folder?"
        )
    return number, path, checkpoint


def try_checkpoint(
    training: Training, output: CheckpointFolder, name: str
) -> tuple[Path, dict] | str:
    """(path, checkpoint) with its weights in the model, or why it cannot be resumed from."""
    gone = "deleted while this run started"
    try:
        path = output.path(name)  # s3://: a failed download raises; it is no reason to skip
    except FileNotFoundError:
        return gone
    try:
        return path, read_checkpoint(training, path)
    except FileNotFoundError:
        return gone
    except (CheckpointError, NotRegularFile) as err:  # a named pipe must not block the resume
        return str(err).removeprefix(f"{path}: ")


def start_without_checkpoint(training: Training, output: CheckpointFolder) -> Resume:
    """--resume_from_checkpoint and an output folder without checkpoints.

    Phase 2 is refused (unless --init_weights names its start): from random weights it is
    almost always a mistake, such as phase 1 writing to another folder; NVIDIA's script
    crashed there on max() of an empty list. Phase 1 starts fresh with a warning, and so does
    a torchrun restart of a run that had not written its first checkpoint yet."""
    options = training.options
    if training.state.restart.resume_implied:
        logger.info("torchrun restart: no checkpoint in %s yet; starting from the start", output)
        return start_from_weights(training)
    if options.phase2 and not options.init_weights:
        raise CheckpointError(
            f"--phase2 --resume_from_checkpoint: {output} holds no checkpoint to start phase 2 "
            "from, and phase 2 from random weights is almost always a mistake; point "
            "--output_dir at phase 1's folder, or name the weights with --init_checkpoint or "
            "--init_weights (or leave out --resume_from_checkpoint to start from random weights)"
        )
    logger.warning(
        "--resume_from_checkpoint: no checkpoint in %s; starting %s",
        output,
        f"from --init_weights {options.init_weights}" if options.init_weights else "fresh",
    )
    return start_from_weights(training)


def resume_from(
    training: Training,
    checkpoint: dict,
    path: Path,
    number: int,
    from_init_checkpoint: bool = False,
) -> Resume:
    """Optimizer, step count and (for an exact resume) scaler, data position and RNG states
    from a checkpoint whose weights are already in the model."""
    options = training.options
    phase = checkpoint.get("phase") or (2 if number > options.phase1_end_step else 1)
    starting_phase2 = (
        options.phase2 and (from_init_checkpoint or phase == 1) and not options.resume_phase2
    )
    if from_init_checkpoint or starting_phase2:
        step, full = 0, False  # NVIDIA: moments kept, step count and schedule restart
    else:
        step = number - options.step_offset
        step, full = checkpoint.get("global_step", step), True
    load_optimizer_state(training, checkpoint, path, step)
    logger.info(
        "resumed from %s at phase step %d (%s)", path, step, "exact" if full else "new phase"
    )
    if not full:
        return Resume(step=step)
    # bf16 and fp32 runs save a fresh scaler's state, for NVIDIA's code only.
    scaler_state = checkpoint.get("grad_scaler")
    from_fp16 = checkpoint.get("precision", "fp16") == "fp16"
    if training.precision.scaler is not None and scaler_state and from_fp16:
        training.precision.scaler.load_state_dict(scaler_state)
    positions = checkpoint.get("data_position") or []
    rngs = checkpoint.get("rng_state") or []
    same_world = checkpoint.get("world_size") == training.dist.world_size
    training.state.skipped_steps = int(checkpoint.get("skipped_steps", 0))
    return Resume(
        step=step,
        full=True,
        data_position=positions[training.dist.rank] if same_world and positions else None,
        rng=rngs[training.dist.rank] if same_world and rngs else None,
        epoch=int(checkpoint.get("epoch", 0)),
    )


def start_from_weights(training: Training) -> Resume:
    """A fresh start, from `--init_weights` (any format our loader reads) when given."""
    if training.options.init_weights:
        load_model_weights(training.model, training.options.init_weights)
    return Resume()


def load_optimizer_state(training: Training, checkpoint: dict, path: Path, step: int) -> None:
    """Moments from the checkpoint (ours, 21.11's or HEAD's layout) when they fit our
    parameters; the step count set to `step`."""
    state = checkpoint.get("optimizer")
    names = checkpoint.get("param_names")
    ours = [name for name, _ in training.model.named_parameters()]
    if state and (names is None or names == ours):
        try:
            load_lamb_state(training.optimizer, state)
        except (ValueError, KeyError, RuntimeError) as err:
            logger.warning("%s: optimizer state not usable (%s); fresh moments", path, err)
    elif state:
        logger.warning("%s: optimizer state is for other parameters; fresh moments", path)
    for group in training.optimizer.param_groups:
        group["step"] = step
    training.scheduler.load_state_dict({"last_step": step})  # also writes the LR of the next step


# ------------------------------------------------------------------------------- stopping


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


def what_was_saved(training: Training) -> str:
    """What a run stopped by a signal leaves, in words: a checkpoint of its last step, or why
    there is none (a signal before this run's first optimizer step leaves nothing new)."""
    state = training.state
    if training.options.skip_checkpoint:
        return "no checkpoint (--skip_checkpoint)"
    if state.saved_step == state.step:
        return f"checkpoint of step {state.step} written"
    return "no optimizer step since the run started, so no new checkpoint was written"


def warn_if_short_of_space(training: Training) -> None:
    """Warn before training when the output folder has less room than one checkpoint (fp32
    weights, master copy and two moments: 16 bytes a parameter); a full disk would otherwise
    show only at the first checkpoint, perhaps hours in."""
    output_dir = training.options.output_dir
    if (
        training.options.skip_checkpoint
        or not training.dist.is_main_process
        or storage.is_remote(output_dir)
    ):
        return
    needed = 16 * sum(p.numel() for p in training.model.parameters())
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        logger.warning(
            "--output_dir %s: %.2f GB free, but a checkpoint takes about %.2f GB; saving it will "
            "fail and stop the run (the older checkpoints are kept)",
            output_dir,
            free / 1e9,
            needed / 1e9,
        )
