"""The fine-tuning loop and the prediction loop shared by run_squad.py and run_glue.py.

Owns: the flags both scripts take (NVIDIA's names), the setup (ranks, seeds, precision, logger),
loading `--init_checkpoint` in any format, AdamW with NVIDIA's no-decay rule and a linear
warm-up over the optimizer steps counted from the features, the epoch loop (accumulation with
`no_sync`, loss divided by the accumulation steps, one global clip at 1.0 per optimizer step
through `training.optimizer_step`, exact `--max_steps`), and prediction over length-sorted
batches trimmed to their longest sequence, split across ranks; the fine-tuned model's files,
saved all or none, after a check before any work that `--output_dir` has room for them. Task
data and metrics stay in the task modules; the scripts pass a loss function and a forward
function. The README lists how this loop differs from NVIDIA's two copies.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import cli
import distributed
import runtime
from checkpoint import load_model_weights, nvidia_checkpoint_payload
from errors import UsageError
from fileio import WriteError, atomic_paths, check_room
from logger import MetricLogger
from modeling import BertConfig
from optimization import make_adamw, parameter_groups
from output_lock import LOCK_NAME
from runtime import Run
from schedulers import WarmupScheduler
from training import (
    DivergenceError,
    LossWindow,
    evaluating,
    maybe_compile,
    maybe_float8,
    micro_batch_size,
    no_sync_unless,
    optimizer_step,
    pad_rows,
    trim_multiple,
    trim_padding,
    trimmed_width,
)

logger = logging.getLogger("finetuning")

Batch = dict[str, torch.Tensor]


def add_common_arguments(parser: argparse.ArgumentParser, seed: int, log_freq: int) -> None:
    """The flags run_squad.py and run_glue.py share, with NVIDIA's names and defaults (the
    runtime flags come from `runtime.add_runtime_arguments`)."""
    runtime.add_runtime_arguments(parser, seed=seed)
    add = parser.add_argument
    add("--bert_model", default="bert-large-uncased", help="accepted; unused")
    add("--output_dir", required=True)
    add("--init_checkpoint", help="NGC/NVIDIA .pt, ours, Hugging Face folder, Google TF; or s3://")
    add("--vocab_file", required=True)
    add("--config_file", required=True)
    add("--do_lower_case", action="store_true", help="lower-case the text (uncased models)")
    add("--num_train_epochs", type=cli.epoch_count, default=3.0)
    add(
        "--max_steps",
        type=cli.steps_or_minus_one,
        default=-1.0,
        help="> 0: stop after this many optimizer steps",
    )
    add("--warmup_proportion", type=cli.proportion, default=0.1)
    add("--skip_checkpoint", action="store_true", help="do not save the fine-tuned weights")
    add(
        "--log_freq",
        type=cli.positive_int,
        default=log_freq,
        help="log every N optimizer steps",
    )
    add(
        "--max_grad_norm",
        type=cli.non_negative_float,
        default=1.0,
        help="global gradient clipping (0: off)",
    )


#: What training writes in --output_dir (unless --skip_checkpoint).
MODEL_FILES = ("pytorch_model.bin", "config.json", "bert_config.json")


def check_common_arguments(
    args: argparse.Namespace, inputs: Mapping[str, str | None], outputs: Sequence[str]
) -> BertConfig:
    """The shared flags before any data is read: the batch split, the model files against each
    other and `--max_seq_length`, `--init_checkpoint`, and the output paths. `inputs` are the
    script's data files (label -> path) and `outputs` the names it writes in `--output_dir`
    besides the model files; no output may be one of the inputs. Returns the model config."""
    micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    if not args.do_train and not args.init_checkpoint:  # NVIDIA's scripts required it always
        raise UsageError(
            "evaluating or predicting without --do_train needs --init_checkpoint (fine-tuned "
            "weights): random weights give random answers"
        )
    config = cli.check_model_files(args.config_file, args.vocab_file, args.max_seq_length)
    if args.init_checkpoint:
        cli.check_weights_path(args.init_checkpoint, "--init_checkpoint")
    cli.check_output_dir(args.output_dir, "--output_dir")
    output = Path(args.output_dir)
    saves_model = args.do_train and not args.skip_checkpoint
    weights = output / MODEL_FILES[0]
    if saves_model and args.init_checkpoint and cli.same_path(weights, args.init_checkpoint):
        raise UsageError(
            f"--output_dir {args.output_dir}: training writes {weights}, which is "
            f"--init_checkpoint {args.init_checkpoint}; it would overwrite the weights it starts "
            "from, so choose another --output_dir"
        )
    inputs = {
        "--init_checkpoint": args.init_checkpoint,
        "--config_file": args.config_file,
        "--vocab_file": args.vocab_file,
        **inputs,
    }
    names = [*(MODEL_FILES if saves_model else ()), *outputs, LOCK_NAME]
    written = {f"--output_dir's {name}": output / name for name in names}
    runtime.check_run_outputs(args, inputs, written)
    for name in names[:-1]:
        cli.check_not_overwriting(inputs, {"--output_dir": output / name})
    if saves_model:
        check_room_for_model(config, output)
    return config


def model_bytes(config: BertConfig) -> int:
    """Bytes of the saved fine-tuned weights, fp32: the encoder's parameters counted from the
    config, plus 1 MiB for the task head, the pickle's framing and the two config files."""
    hidden, inner = config.hidden_size, config.intermediate_size
    embeddings = (
        config.padded_vocab_size + config.max_position_embeddings + config.type_vocab_size + 2
    ) * hidden
    layer = 4 * (hidden + 1) * hidden + (hidden + 1) * inner + (inner + 1) * hidden + 4 * hidden
    pooler = (hidden + 1) * hidden
    return 4 * (embeddings + config.num_hidden_layers * layer + pooler) + (1 << 20)


def check_room_for_model(config: BertConfig, output_dir: Path) -> None:
    """Refuse, before any work, an --output_dir without room for the weights training saves at
    its end: a run would train for hours and only then fail. An error, not a warning, because
    the size is known to the byte and the weights are the run's one result."""
    advice = (
        "training would end unable to save them (free some space, choose another --output_dir, "
        "or pass --skip_checkpoint)"
    )
    label = f"--output_dir {output_dir}"
    check_room(output_dir, model_bytes(config), label, "the fine-tuned weights", advice)


def setup(args: argparse.Namespace) -> Run:
    """The shared run setup (ranks, seeds, precision, logger); the flags are checked first
    (`check_common_arguments`)."""
    run = runtime.setup_run(args, init_loss_scale=2**16)
    if run.dist.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    run.metrics.log("PARAMETER", {"Config": [str(args)], "SEED": args.seed})
    return run


def load_init_checkpoint(model: nn.Module, path: str | None, metrics: MetricLogger) -> None:
    """Weights from any supported format; missing task heads start from their initialisation."""
    if not path:
        logger.warning("no --init_checkpoint: fine-tuning from random weights")
        return
    metrics.log("PARAMETER", {"loading_checkpoint": True})
    report = load_model_weights(model, path)
    metrics.log(
        "PARAMETER",
        {
            "loaded_checkpoint": True,
            "missing_keys": len(report.missing),
            "unexpected_keys": len(report.unexpected),
        },
    )


def save_fine_tuned(model: nn.Module, output_dir: str | os.PathLike) -> None:
    """`pytorch_model.bin` ({'model': state_dict}, as NVIDIA's) and the model config under both
    names NVIDIA used for it: `bert_config.json` (21.11) and `config.json` (HEAD); the three
    files are renamed into place together once all are written, or none is. A failed write
    says that the trained weights are lost, so it is never mistaken for a stale file."""
    output = Path(output_dir)
    payload = nvidia_checkpoint_payload(model.state_dict(), model.config)
    config_bytes = model.config.to_json_string().encode("utf-8")
    try:
        with atomic_paths([output / name for name in MODEL_FILES], writes_only=True) as temps:
            with open(temps[0], "wb") as handle:
                torch.save(payload, handle)
            for config_file in temps[1:]:
                config_file.write_bytes(config_bytes)
    except WriteError as err:
        raise WriteError(f"{err}: the fine-tuned weights were NOT saved") from err


# ------------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """How `train` runs: the schedule and step flags of the fine-tuning scripts."""

    learning_rate: float
    num_train_epochs: float = 3.0
    max_steps: float = -1.0  # > 0: stop after this many optimizer steps
    warmup_proportion: float = 0.1
    grad_accum_steps: int = 1
    max_grad_norm: float = 1.0  # 0: no clipping
    log_freq: int = 50
    compile: bool = False
    trim: bool = False  # cut each batch to its longest sequence first
    exclude: tuple[str, ...] = ()  # parameter names left out of the optimizer
    # (key, value) filling the rows a short last batch lacks under `compile`, values that carry
    # no label; without them such a batch compiles its own graph
    row_fills: tuple[tuple[str, int], ...] = ()

    @classmethod
    def from_args(cls, args: argparse.Namespace, **changes: Any) -> TrainOptions:
        return cls(
            learning_rate=args.learning_rate,
            num_train_epochs=args.num_train_epochs,
            max_steps=args.max_steps,
            warmup_proportion=args.warmup_proportion,
            grad_accum_steps=args.gradient_accumulation_steps,
            max_grad_norm=args.max_grad_norm,
            log_freq=args.log_freq,
            compile=args.compile,
        ).replace(**changes)

    def replace(self, **changes: Any) -> TrainOptions:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass
class TrainResult:
    """What training did. `final_loss` is the mean of the last logging window (all ranks);
    the `last_epoch_*` and `samples_per_rank` counts are this rank's, as NVIDIA's GLUE
    `results.txt` reports them."""

    steps: int
    final_loss: float
    seconds: float
    sequences: int  # on all ranks
    samples_per_rank: int = 0  # every epoch
    last_epoch_loss: float = float("nan")  # mean micro-batch loss of the last epoch
    last_epoch_micro_steps: int = 0

    @property
    def sequences_per_second(self) -> float:
        return self.sequences / self.seconds if self.seconds > 0 else 0.0


def total_optimizer_steps(batches_per_epoch: int, options: TrainOptions) -> int:
    """Optimizer steps of the run: from the batches (features), or `max_steps` when set."""
    per_epoch = math.ceil(batches_per_epoch / options.grad_accum_steps)
    total = math.ceil(per_epoch * options.num_train_epochs)
    if options.max_steps > 0:
        total = min(total, int(options.max_steps)) if total > 0 else int(options.max_steps)
    return max(total, 1)


def wrap_for_training(model: nn.Module, options: TrainOptions, run: Run) -> nn.Module:
    """The order every script uses: float8 layers (fp8 only), compile (optional), then DDP."""
    model = maybe_float8(model, run.precision.precision)
    return distributed.wrap_ddp(maybe_compile(model, options.compile), run.dist)


def train(
    model: nn.Module,
    ddp_model: nn.Module,
    loader: torch.utils.data.DataLoader,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    options: TrainOptions,
    run: Run,
) -> TrainResult:
    """Epochs of AdamW steps; `loss_fn(model, batch)` returns the mean loss of a micro-batch.

    With `options.trim`, each batch is cut to its longest sequence first (the loss must not
    depend on padding, as the QA and classification losses do not); with `options.compile` to
    a multiple of 64, and a short last batch is filled up with `options.row_fills`, so the
    compiled layers see a fixed set of shapes. Each logged window reports its own
    `training_sequences_per_second`."""
    grad_accum_steps = options.grad_accum_steps
    total_steps = total_optimizer_steps(len(loader), options)
    groups = parameter_groups(model, 0.01, exclude=options.exclude)
    optimizer = make_adamw(groups, options.learning_rate, run.device)
    scheduler = WarmupScheduler(
        optimizer, options.learning_rate, total_steps, options.warmup_proportion, "linear"
    )
    parameters = [p for group in groups for p in group["params"]]
    micro_batch = loader.batch_size or 0
    run.metrics.log(
        "PARAMETER",
        {
            "train_batch_size": micro_batch * grad_accum_steps,
            "steps": total_steps,
        },
    )
    clip = options.max_grad_norm if options.max_grad_norm > 0 else None
    step, sequences, samples, final_loss = 0, 0, 0, float("nan")
    window = LossWindow(run.device)  # the logging window
    epoch = LossWindow(run.device)  # this rank's last epoch, for NVIDIA's GLUE results.txt
    started = time.perf_counter()
    ddp_model.train()
    epoch_number = 0
    while step < total_steps:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch_number)
        epoch.reset()
        for index, batch in enumerate(loader):
            rows = len(batch["input_ids"])  # before any filler rows are added
            batch = prepared_batch(batch, options, micro_batch, run.device)
            last = (index + 1) % grad_accum_steps == 0 or index + 1 == len(loader)
            with no_sync_unless(ddp_model, sync=last):
                with run.precision.autocast():
                    loss = loss_fn(ddp_model, batch)
                run.precision.backward(loss / grad_accum_steps)
            window.add(loss, rows=rows)
            epoch.add(loss, rows=rows)
            samples += rows
            sequences += rows * run.dist.world_size
            if not last:
                continue
            if optimizer_step(optimizer, run.precision, parameters, clip).skipped:
                continue
            step += 1
            scheduler.step()
            if step % options.log_freq == 0 or step == total_steps:
                final_loss = log_window(run, window, (epoch_number, step), scheduler.lr_at(step))
            if step >= total_steps:
                break
        epoch_number += 1
    seconds = time.perf_counter() - started
    return TrainResult(
        step, final_loss, seconds, sequences, samples, epoch.local_mean(), epoch.micro_steps
    )


def prepared_batch(
    batch: Batch, options: TrainOptions, micro_batch: int, device: torch.device
) -> Batch:
    """A loader batch on the device: cut to its longest sequence (`options.trim`) and, under
    `options.compile`, a short last batch filled up to `micro_batch` rows with
    `options.row_fills`, so that the compiled layers see a fixed set of shapes."""
    fills = dict(options.row_fills) if options.compile else {}
    if options.trim or fills:
        keys = list(batch)
        values = [batch[k] for k in keys]
        if options.trim:
            values = trim_padding(
                values, batch["input_mask"], trim_multiple(device, options.compile)
            )
        if fills:
            values = pad_rows(values, micro_batch, [fills[k] for k in keys])
        batch = dict(zip(keys, values, strict=True))
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def log_window(run: Run, window: LossWindow, step: tuple[int, int], learning_rate: float) -> float:
    """One per-step record (NVIDIA's `step_loss`: the window's mean loss over ranks), then a new
    window; the loss, or a DivergenceError when it is not finite."""
    (loss,), _ = window.means()
    if not math.isfinite(loss):
        raise DivergenceError(
            f"non-finite loss at step {step[1]}; try a lower --learning_rate or --bf16"
        )
    run.metrics.log(
        step,
        {
            "step_loss": loss,
            "learning_rate": learning_rate,
            "training_sequences_per_second": window.rate(run.dist.world_size),
        },
    )
    window.reset()
    return loss


class ArrayDataset(torch.utils.data.Dataset):
    """Rows of equally long numpy arrays, as tensors (training features of SQuAD and GLUE)."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        self.length = len(next(iter(self.arrays.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Batch:
        return {k: v[index] for k, v in self.arrays.items()}


def train_loader(
    dataset: torch.utils.data.Dataset,
    micro_batch: int,
    run: Run,
    seed: int,
    collate_fn: Callable | None = None,
) -> torch.utils.data.DataLoader:
    """Shuffled batches; each rank takes its part (DistributedSampler) when distributed."""
    if run.dist.is_distributed:
        sampler = torch.utils.data.DistributedSampler(
            dataset, run.dist.world_size, run.dist.rank, shuffle=True, seed=seed
        )
    else:
        generator = torch.Generator().manual_seed(seed)
        sampler = torch.utils.data.RandomSampler(dataset, generator=generator)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=micro_batch,
        sampler=sampler,
        collate_fn=collate_fn,
        pin_memory=run.device.type == "cuda",
    )


# ------------------------------------------------------------------------------- prediction


@dataclasses.dataclass
class PredictResult:
    outputs: list[Any]  # one entry per input row, in input order (gathered on every rank)
    seconds: float
    batch_seconds: list[float] = dataclasses.field(default_factory=list)  # this rank's batches
    rows_here: int = 0  # rows this rank predicted
    # rows (over all ranks) and seconds of the batches after the first of each width:
    # compilation, kernel selection and allocation happen at a width's first batch
    warm_rows: int = 0
    warm_seconds: float = 0.0

    @property
    def warm_sequences_per_second(self) -> float:
        """Rows per second over the warm batches (0 when no batch was warm)."""
        return self.warm_rows / self.warm_seconds if self.warm_seconds > 0 else 0.0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict(
    model: nn.Module,
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    forward: Callable[[nn.Module, Batch], list[Any]],
    run: Run,
    trim: bool = True,
    compile: bool = False,
) -> PredictResult:
    """Run `forward` over all rows, length-sorted and trimmed to each batch's longest sequence.

    `arrays` hold [N, S] `input_ids`, `segment_ids`/`token_type_ids`, `input_mask` (and any
    [N] columns); `forward(model, batch)` returns one output per row. Rows are split across
    ranks and the outputs gathered back in input order on every rank. With `trim=False` every
    batch keeps the full width S (the plain path). Each batch's `forward` is timed between two
    device synchronisations (`batch_seconds`): the device time that NVIDIA's CUDA events around
    the forward measure, plus the copy of its outputs to the host, which syncs anyway. With
    `compile`, the encoder layers are compiled (`maybe_compile`), widths are multiples of 64
    and the last batch is filled up with rows of zeros whose outputs are dropped, so each width
    compiles once. In fp8 the float8 layers are used here too.
    """
    model = maybe_compile(maybe_float8(model, run.precision.precision), compile)
    lengths = arrays["input_mask"].sum(axis=1)
    full_width = arrays["input_mask"].shape[1]
    multiple = trim_multiple(run.device, compile)
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
    mine = order[run.dist.rank :: run.dist.world_size]
    outputs: dict[int, Any] = {}
    batch_seconds = []
    widths_seen: set[int] = set()
    warm_rows, warm_seconds = 0, 0.0
    started = time.perf_counter()
    with evaluating(model):
        for start in range(0, len(mine), batch_size):
            batch_started = time.perf_counter()
            rows = mine[start : start + batch_size]
            width = full_width
            if trim:
                width = trimmed_width(int(lengths[rows].max()), full_width, multiple)
            batch = {
                key: torch.from_numpy(value[rows][:, :width] if value.ndim == 2 else value[rows])
                for key, value in arrays.items()
            }
            if compile:
                keys = list(batch)
                filled = pad_rows([batch[k] for k in keys], batch_size, [0] * len(keys))
                batch = dict(zip(keys, filled, strict=True))
            batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
            _synchronize(run.device)
            begin = time.perf_counter()
            with run.precision.autocast():
                results = forward(model, batch)[: len(rows)]
            _synchronize(run.device)
            batch_seconds.append(time.perf_counter() - begin)
            outputs.update(zip(rows.tolist(), results, strict=True))
            if width in widths_seen:  # `forward` returns host values: the batch has finished
                warm_rows += len(rows)
                warm_seconds += time.perf_counter() - batch_started
            widths_seen.add(width)
    seconds = time.perf_counter() - started
    gathered: dict[int, Any] = {}
    for part in distributed.all_gather_object(outputs):
        gathered.update(part)
    return PredictResult(
        [gathered[i] for i in range(len(lengths))],
        seconds,
        batch_seconds,
        len(mine),
        warm_rows * run.dist.world_size,
        warm_seconds,
    )
