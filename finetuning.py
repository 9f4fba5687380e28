"""The fine-tuning loop and the prediction loop shared by run_squad.py and run_glue.py.

Owns: the flags both scripts take (NVIDIA's names), the setup (ranks, seeds, precision, logger),
loading `--init_checkpoint` in any format, AdamW with NVIDIA's no-decay rule and a linear
warm-up over the true number of optimizer steps, the epoch loop (accumulation with `no_sync`,
loss divided by the accumulation steps, one global clip at 1.0 per optimizer step through
`training.optimizer_step`, exact `--max_steps`), and prediction over length-sorted batches
trimmed to their longest sequence, split across ranks. Task data and metrics stay in the task
modules; the scripts pass a loss function and a forward function.

Differences from NVIDIA's scripts: one loop instead of two drifting copies; the schedule counts
features (SQuAD counted examples, so the LR reached 0 early: weak spot 26) and the optimizer
steps actually taken; `--max_steps` stops exactly there (the reference ran one more); clipping
happens once per optimizer step on the accumulated gradient (SQuAD clipped and synced after every
micro-step; GLUE never clipped: weak spot 27); prediction runs on every rank, not only rank 0.
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

import distributed
import storage
from checkpoint import load_model_weights, save_nvidia_checkpoint
from fileio import atomic_write_text
from logger import MetricLogger
from optimization import make_adamw, parameter_groups
from schedulers import WarmupScheduler
from training import (
    PRECISION_CHOICES,
    PrecisionStack,
    configure_tf32,
    evaluating,
    make_precision,
    maybe_compile,
    micro_batch_size,
    no_sync_unless,
    optimizer_step,
    padding_multiple,
    resolve_precision,
    trim_padding,
    trimmed_width,
)

logger = logging.getLogger("finetuning")

Batch = dict[str, torch.Tensor]


def add_common_arguments(parser: argparse.ArgumentParser, seed: int, log_freq: int) -> None:
    """The flags run_squad.py and run_glue.py share, with NVIDIA's names and defaults."""
    add = parser.add_argument
    add("--bert_model", default="bert-large-uncased", help="used only in cache names, as NVIDIA")
    add("--output_dir", required=True)
    add("--init_checkpoint", help="NGC/NVIDIA .pt, ours, Hugging Face folder, Google TF; or s3://")
    add("--vocab_file", required=True)
    add("--config_file", required=True)
    add("--do_lower_case", action="store_true", help="lower-case the text (uncased models)")
    add("--train_batch_size", type=int, default=32, help="per process per optimizer step")
    add("--learning_rate", type=float, default=5e-5)
    add("--num_train_epochs", type=float, default=3.0)
    add("--max_steps", type=float, default=-1.0, help="> 0: stop after this many optimizer steps")
    add("--warmup_proportion", type=float, default=0.1)
    add("--no_cuda", action="store_true")
    add("--local_rank", type=int, default=int(os.environ.get("LOCAL_RANK", -1)))
    add("--seed", type=int, default=seed)
    add("--gradient_accumulation_steps", type=int, default=1)
    add("--fp16", "--amp", dest="fp16", action="store_true")
    add("--bf16", action="store_true")
    add("--loss_scale", type=float, default=0.0, help="fp16: initial loss scale if > 0")
    add("--skip_checkpoint", action="store_true", help="do not save the fine-tuned weights")
    add("--log_freq", type=int, default=log_freq, help="log every N optimizer steps")
    add("--json-summary", "--json_summary", dest="json_summary", default="results/dllogger.json")
    add("--tensorboard", metavar="DIR", help="also write the logged scalars for TensorBoard here")
    add("--max_grad_norm", type=float, default=1.0, help="global gradient clipping (0: off)")
    add("--precision", choices=PRECISION_CHOICES, default="auto",
        help="auto: bf16 on A100/H100-class GPUs, else fp32 with TF32; tf32; fp32 (exact); "
             "bf16; fp16 (= --fp16)")  # fmt: skip
    add("--no_tf32", action="store_true", help="the same as --precision fp32")
    add("--compile", action="store_true", help="torch.compile the model for training")
    add("--use_env", action="store_true", help="accepted; unused")


class FinetuneError(ValueError):
    """A flag value or combination that cannot work; the message names the flag."""


def check_common_arguments(args: argparse.Namespace) -> None:
    try:
        micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    except ValueError as err:
        raise FinetuneError(str(err)) from None
    for name in ("vocab_file", "config_file"):
        if not os.path.isfile(getattr(args, name)):
            raise FinetuneError(f"--{name} {getattr(args, name)}: no such file")
    remote = storage.is_remote(args.init_checkpoint)  # s3://: checked when it is fetched
    if args.init_checkpoint and not remote and not os.path.exists(args.init_checkpoint):
        raise FinetuneError(f"--init_checkpoint {args.init_checkpoint}: no such file or folder")


@dataclasses.dataclass
class Setup:
    """What every fine-tuning run starts with."""

    dist: distributed.DistState
    stack: PrecisionStack
    metrics: MetricLogger

    @property
    def device(self) -> torch.device:
        return self.dist.device


def setup(args: argparse.Namespace) -> Setup:
    """Ranks, seeds (global rank offset), TF32, precision and the rank-0 logger."""
    check_common_arguments(args)
    dist = distributed.init_distributed(args.local_rank, use_cuda=not args.no_cuda)
    distributed.seed_everything(args.seed, dist.rank)
    try:
        precision, tf32 = resolve_precision(
            args.fp16, args.bf16, "fp32" if args.no_tf32 else args.precision, dist.device
        )
    except ValueError as err:
        raise FinetuneError(str(err)) from None
    configure_tf32(tf32)
    stack = make_precision(precision, dist.device, args.loss_scale or 2**16)
    if dist.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    metrics = MetricLogger(
        args.json_summary, dist.is_main_process, tensorboard_dir=args.tensorboard
    )
    metrics.log("PARAMETER", {"Config": [str(args)], "SEED": args.seed})
    return Setup(dist, stack, metrics)


def load_init_checkpoint(model: nn.Module, path: str | None, metrics: MetricLogger) -> None:
    """Weights from any supported format; missing task heads start from their initialisation."""
    if not path:
        logger.warning("no --init_checkpoint: fine-tuning from random weights")
        return
    metrics.log("PARAMETER", {"loading_checkpoint": True})
    report = load_model_weights(model, path)
    metrics.log("PARAMETER", {
        "loaded_checkpoint": True,
        "missing_keys": len(report.missing),
        "unexpected_keys": len(report.unexpected),
    })  # fmt: skip


def save_fine_tuned(model: nn.Module, output_dir: str | os.PathLike) -> None:
    """`pytorch_model.bin` ({'model': state_dict}, as NVIDIA's) and the model config under both
    names NVIDIA used for it: `bert_config.json` (21.11) and `config.json` (HEAD); each file is
    written atomically."""
    output = Path(output_dir)
    save_nvidia_checkpoint(output / "pytorch_model.bin", model.state_dict(), model.config)
    for name in ("config.json", "bert_config.json"):
        atomic_write_text(output / name, model.config.to_json_string())


# ------------------------------------------------------------------------------- training


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


def total_optimizer_steps(batches_per_epoch: int, args: argparse.Namespace) -> int:
    """Optimizer steps of the run: from the batches (features), or `--max_steps` when set."""
    per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    total = math.ceil(per_epoch * args.num_train_epochs)
    if args.max_steps > 0:
        total = min(total, int(args.max_steps)) if total > 0 else int(args.max_steps)
    return max(total, 1)


def wrap_for_training(model: nn.Module, args: argparse.Namespace, run: Setup) -> nn.Module:
    """The order every script uses: compile (optional), then DDP."""
    return distributed.wrap_ddp(maybe_compile(model, args.compile), run.dist)


def train(
    model: nn.Module,
    ddp_model: nn.Module,
    loader: torch.utils.data.DataLoader,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    args: argparse.Namespace,
    run: Setup,
    exclude: Sequence[str] = (),
    trim: bool = False,
) -> TrainResult:
    """Epochs of AdamW steps; `loss_fn(model, batch)` returns the mean loss of a micro-batch.

    With `trim`, each batch is cut to its longest sequence first (the loss must not depend on
    padding, as the QA and classification losses do not)."""
    ga = args.gradient_accumulation_steps
    total_steps = total_optimizer_steps(len(loader), args)
    groups = parameter_groups(model, 0.01, exclude=exclude)
    optimizer = make_adamw(groups, args.learning_rate, run.device)
    scheduler = WarmupScheduler(optimizer, args.learning_rate, total_steps,
                                args.warmup_proportion, "linear")  # fmt: skip
    parameters = [p for group in groups for p in group["params"]]
    run.metrics.log("PARAMETER", {"train_batch_size": args.train_batch_size, "steps": total_steps})
    step, sequences, final_loss = 0, 0, float("nan")
    window = torch.zeros((), device=run.device)
    window_count = 0
    epoch_loss = torch.zeros((), device=run.device)
    epoch_micro_steps = samples = 0
    started = time.perf_counter()
    ddp_model.train()
    multiple = padding_multiple(run.device)
    epoch = 0
    while step < total_steps:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        epoch_loss.zero_()
        epoch_micro_steps = 0
        for index, batch in enumerate(loader):
            if trim:
                keys = list(batch)
                values = trim_padding([batch[k] for k in keys], batch["input_mask"], multiple)
                batch = dict(zip(keys, values, strict=True))
            batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
            last = (index + 1) % ga == 0 or index + 1 == len(loader)
            with no_sync_unless(ddp_model, sync=last):
                with run.stack.autocast():
                    loss = loss_fn(ddp_model, batch)
                run.stack.backward(loss / ga)
            window += loss.detach().float()
            window_count += 1
            epoch_loss += loss.detach().float()
            epoch_micro_steps += 1
            samples += len(batch["input_ids"])
            sequences += len(batch["input_ids"]) * run.dist.world_size
            if not last:
                continue
            clip = args.max_grad_norm if args.max_grad_norm > 0 else None
            if optimizer_step(optimizer, run.stack, parameters, clip).skipped:
                continue
            step += 1
            scheduler.step()
            if step % args.log_freq == 0 or step == total_steps:
                final_loss = distributed.all_reduce_mean(window / max(window_count, 1)).item()
                if not math.isfinite(final_loss):
                    raise FloatingPointError(
                        f"non-finite loss at step {step}; try a lower --learning_rate or --bf16"
                    )
                run.metrics.log((epoch, step), {
                    "step_loss": final_loss,
                    "learning_rate": scheduler.lr_at(step),
                })  # fmt: skip
                window.zero_()
                window_count = 0
            if step >= total_steps:
                break
        epoch += 1
    seconds = time.perf_counter() - started
    last_epoch_loss = (epoch_loss / max(epoch_micro_steps, 1)).item()
    return TrainResult(
        step, final_loss, seconds, sequences, samples, last_epoch_loss, epoch_micro_steps
    )


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
    run: Setup,
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
        dataset, batch_size=micro_batch, sampler=sampler, collate_fn=collate_fn,
        pin_memory=run.device.type == "cuda",
    )  # fmt: skip


# ------------------------------------------------------------------------------- prediction


@dataclasses.dataclass
class PredictResult:
    outputs: list[Any]  # one entry per input row, in input order (gathered on every rank)
    seconds: float
    batch_seconds: list[float] = dataclasses.field(default_factory=list)  # this rank's batches
    rows_here: int = 0  # rows this rank predicted


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predict(
    model: nn.Module,
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    forward: Callable[[nn.Module, Batch], list[Any]],
    run: Setup,
    trim: bool = True,
) -> PredictResult:
    """Run `forward` over all rows, length-sorted and trimmed to each batch's longest sequence.

    `arrays` hold [N, S] `input_ids`, `segment_ids`/`token_type_ids`, `input_mask` (and any
    [N] columns); `forward(model, batch)` returns one output per row. Rows are split across
    ranks and the outputs gathered back in input order on every rank. With `trim=False` every
    batch keeps the full width S (the plain path). Each batch's `forward` is timed between two
    device synchronisations (`batch_seconds`): the device time that NVIDIA's CUDA events around
    the forward measure, plus the copy of its outputs to the host, which syncs anyway.
    """
    lengths = arrays["input_mask"].sum(axis=1)
    full_width = arrays["input_mask"].shape[1]
    multiple = padding_multiple(run.device)
    order = np.argsort(-lengths, kind="stable")  # longest first: memory peaks early
    mine = order[run.dist.rank :: run.dist.world_size]
    outputs: dict[int, Any] = {}
    batch_seconds = []
    started = time.perf_counter()
    with evaluating(model):
        for start in range(0, len(mine), batch_size):
            rows = mine[start : start + batch_size]
            width = full_width
            if trim:
                width = trimmed_width(int(lengths[rows].max()), full_width, multiple)
            batch = {
                key: torch.from_numpy(value[rows][:, :width] if value.ndim == 2 else value[rows])
                for key, value in arrays.items()
            }
            batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
            _synchronize(run.device)
            begin = time.perf_counter()
            with run.stack.autocast():
                results = forward(model, batch)
            _synchronize(run.device)
            batch_seconds.append(time.perf_counter() - begin)
            outputs.update(zip(rows.tolist(), results, strict=True))
    seconds = time.perf_counter() - started
    gathered: dict[int, Any] = {}
    for part in distributed.all_gather_object(outputs):
        gathered.update(part)
    outputs_in_order = [gathered[i] for i in range(len(lengths))]
    return PredictResult(outputs_in_order, seconds, batch_seconds, len(mine))
