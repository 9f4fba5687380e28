"""The run layer of the training scripts: the runtime flags, precision, and `setup_run`.

Owns `add_runtime_arguments` (precision, TF32, rank, seed, device, logging, compile, debug) and
`add_batch_arguments`, declared once with NVIDIA's names and defaults; `choose_precision`
(NVIDIA's default is fp32 with TF32 matmuls allowed; `--precision auto` and `--no_tf32` are
ours); `setup_run`, which makes a `Run`: distributed init, seeding by global rank, precision and
TF32, then the rank-0 metrics logger, in that order; and `describe_run` for `--print_env`.
Flag types, path checks and the `main()` wrapper are `cli.py`'s; the precision stack itself is
`training.py`'s, the process group `distributed.py`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import cli
from errors import UsageError

if TYPE_CHECKING:
    import torch

    import distributed
    import environment
    from logger import MetricLogger
    from training import PrecisionStack


def env_local_rank() -> int:
    """LOCAL_RANK from the environment (torchrun), -1 when unset; a malformed value is refused."""
    text = os.environ.get("LOCAL_RANK", "").strip()
    if not text:
        return -1
    if not text.isdigit():
        raise UsageError(f"the environment variable LOCAL_RANK must be a rank number, got {text!r}")
    return int(text)


def add_runtime_arguments(parser: argparse.ArgumentParser, *, seed: int) -> None:
    """The runtime flags every training script takes, with NVIDIA's names and defaults (the
    batch flags too: `add_batch_arguments`)."""
    import environment
    from training import PRECISION_CHOICES

    add = parser.add_argument
    add(
        "--local_rank",
        type=cli.int_between(-1, cli.MAX_PROCESSES - 1, "processes on one machine"),
        default=None,
        help="rank on this node (torchrun sets LOCAL_RANK; kept for older launchers)",
    )
    add("--seed", type=cli.seed_value, default=seed, help="seeds python, numpy and torch (+ rank)")
    add("--no_cuda", action="store_true", help="run on the CPU even if a GPU is present")
    add("--fp16", "--amp", dest="fp16", action="store_true", help="fp16 autocast + loss scaling")
    add("--bf16", action="store_true", help="bf16 autocast (Ampere and newer GPUs, or CPU)")
    add(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="default (no flag): fp32 with TF32 matmuls allowed, as NVIDIA's scripts run; "
        "auto: bf16 on A100/H100-class GPUs, else the default; tf32: the default; "
        "fp32: exact fp32 (TF32 off); bf16; fp16 (= --fp16); fp8: the encoder's linear "
        "layers in float8 (H100/H200 with torchao), the rest bf16",
    )
    add("--no_tf32", action="store_true", help="exact fp32 matmuls (TF32 off)")
    add(
        "--loss_scale",
        type=cli.loss_scale,
        default=0.0,
        help="fp16: the initial loss scale when > 0 (dynamic scaling either way)",
    )
    add(
        "--json-summary",
        "--json_summary",
        dest="json_summary",
        default="results/dllogger.json",
        help="dllogger-format JSON log file",
    )
    add("--tensorboard", metavar="DIR", help="also write the logged scalars for TensorBoard here")
    add("--compile", action="store_true", help="torch.compile the model (optional fast path)")
    add("--use_env", action="store_true", help="accepted; unused")
    environment.add_print_env_argument(parser, describe_run)
    add(
        "--debug",
        action="store_true",
        help=f"print the full traceback of an unexpected error (or set {cli.DEBUG_ENV}=1)",
    )
    add_batch_arguments(parser)


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The batch and step-size flags every training script takes, with NVIDIA's defaults:
    `--train_batch_size` is per process per optimizer step and is split into
    `--gradient_accumulation_steps` micro-batches (`training.micro_batch_size`)."""
    add = parser.add_argument
    add(
        "--train_batch_size",
        type=cli.batch_size,
        default=32,
        help="per process per optimizer step",
    )
    add("--gradient_accumulation_steps", type=cli.batch_size, default=1)
    add("--learning_rate", type=cli.learning_rate, default=5e-5, help="peak learning rate")


def check_run_outputs(
    args: argparse.Namespace,
    inputs: Mapping[str, cli.PathArg],
    outputs: Mapping[str, cli.PathArg] | None = None,
) -> None:
    """The outputs `add_runtime_arguments` declares: `--json-summary` (a log, appended to) and
    `--tensorboard` (a folder) can be written, the log is none of the run's `inputs`, and the
    two are none of the script's other `outputs` (label -> file) nor each other."""
    if args.json_summary:
        cli.check_output_file(args.json_summary, "--json-summary", append=True)
    if args.tensorboard:
        cli.check_output_dir(args.tensorboard, "--tensorboard")
    cli.check_not_overwriting(inputs, {"--json-summary": args.json_summary})
    files = {**(outputs or {}), "--json-summary": args.json_summary}
    cli.check_distinct_outputs(files, {"--tensorboard": args.tensorboard})


@dataclasses.dataclass
class Run:
    """What every run starts with: who this process is, its precision and its logger."""

    dist: distributed.DistState
    precision: PrecisionStack
    metrics: MetricLogger

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @classmethod
    def offline(cls, device: torch.device, precision: str = "fp32") -> Run:
        """One process, no log file: a tool's run that uses the training and prediction loops
        (inference, benchmarks)."""
        import distributed
        from logger import MetricLogger
        from training import make_precision

        return cls(
            distributed.DistState(device=device),
            make_precision(precision, device),
            MetricLogger(None, False),
        )


def choose_precision(args: argparse.Namespace, device: torch.device) -> tuple[str, bool]:
    """(autocast precision, TF32 allowed) from the precision flags; a UsageError on conflicts,
    on fp16 without a GPU and on fp8 without a Hopper-class GPU and torchao."""
    from training import fp8_unavailable, resolve_precision

    try:
        name, tf32 = resolve_precision(args.fp16, args.bf16, args.precision, device)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if name == "fp16":
        check_fp16_device(device)
    if name == "fp8" and (reason := fp8_unavailable(device)):
        raise UsageError(f"--precision fp8 {reason}; use --bf16 instead")
    return name, tf32 and not args.no_tf32


def check_fp16_device(
    device: torch.device, hint: str = "use --bf16 or fp32 on a CPU", flag: str = "--fp16"
) -> None:
    """fp16 runs only on a CUDA GPU (CPUs have no fp16 kernels for most of the model)."""
    if device.type != "cuda":
        raise UsageError(f"{flag} needs a CUDA GPU and none is in use here; {hint}")


def setup_run(
    args: argparse.Namespace, *, init_loss_scale: float, tensorboard_step_offset: int = 0
) -> Run:
    """Distributed init, seeding by global rank, precision and TF32, then the rank-0 logger,
    whose first record is the environment report."""
    import distributed
    import environment
    from logger import MetricLogger
    from training import configure_tf32, make_precision

    local_rank = env_local_rank() if args.local_rank is None else args.local_rank
    dist = distributed.init_distributed(local_rank, use_cuda=not args.no_cuda)
    distributed.seed_everything(args.seed, dist.rank)
    name, tf32 = choose_precision(args, dist.device)
    configure_tf32(tf32)
    precision = make_precision(name, dist.device, args.loss_scale or init_loss_scale)
    metrics = MetricLogger(
        args.json_summary,
        dist.is_main_process,
        tensorboard_dir=args.tensorboard,
        tensorboard_step_offset=tensorboard_step_offset,
        hold_as=Path(sys.argv[0]).name or "a run",  # the log is held until metrics.close()
    )
    if dist.is_main_process:
        backend = distributed.backend_name()
        choices = environment.training_choices(
            args, dist.device, name, tf32, dist.world_size, backend
        )
        environment.log_environment(choices, metrics)
    return Run(dist, precision, metrics)


def describe_run(args: argparse.Namespace) -> environment.RunChoices:
    """What `setup_run` would choose for these flags, found without starting anything (the
    report of `--print_env`)."""
    import distributed
    import environment

    device = environment.default_device(args.no_cuda)
    name, tf32 = choose_precision(args, device)
    world_size = distributed.launch_environment()[0]
    backend = distributed.backend_for(device) if world_size > 1 else "none"
    return environment.training_choices(args, device, name, tf32, world_size, backend)
