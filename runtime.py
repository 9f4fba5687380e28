"""One run setup for every entry script: shared flags, checked flag types, setup and `main()`.

Owns what run_pretraining.py, run_squad.py and run_glue.py (and the smaller CLIs) would
otherwise each write again:
- `ArgumentParser`: argparse that reports a bad flag in one line (`prog: error: ...`, exit 2)
  instead of the usage block, and the flag types that refuse impossible values while parsing
  (`positive_int`, `proportion`, `finite_float`, ...), so no data is read and no step is taken
  with them;
- `add_runtime_arguments`: the runtime flags the training scripts share (precision, TF32, rank,
  seed, device, logging, compile, debug), declared once with NVIDIA's names and defaults;
- `setup_run`: distributed init, seeding by global rank, precision and TF32, the rank-0 metrics
  logger, in that order;
- `run_main`: the `main()` wrapper: an expected error (`errors.BertError`) becomes one line and
  exit status 1 (2 for a `UsageError`); any other exception one line too, with a pointer to
  `--debug` / `BERT_DEBUG=1` for the traceback; the process group is always torn down.

Precision without a flag is NVIDIA's: fp32 with TF32 matmuls allowed (their containers allow
TF32); `--precision auto` (bf16 on A100/H100-class GPUs) and `--no_tf32` (exact fp32) are ours.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

import torch

import distributed
from errors import BertError, UsageError
from logger import MetricLogger
from training import (
    PRECISION_CHOICES,
    PrecisionStack,
    configure_tf32,
    fp8_unavailable,
    make_precision,
    resolve_precision,
)

DEBUG_ENV = "BERT_DEBUG"


# ------------------------------------------------------------------------------- parsing


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the flag, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(text: str, kind: type) -> int | float:
    try:
        value = kind(text)
    except (TypeError, ValueError):
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {name}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """Any finite number (NaN and infinities refused)."""
    return _number(text, float)


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def proportion(text: str) -> float:
    """A fraction in [0, 1] (warm-up proportions, probabilities)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def steps_or_minus_one(text: str) -> float:
    """NVIDIA's float step counts where -1 (or any value <= 0) means "not set"; a positive value
    must be a whole number of steps."""
    value = _number(text, float)
    if value > 0 and value != int(value):
        raise argparse.ArgumentTypeError(f"must be a whole number of steps, got {text!r}")
    return value


def positive_steps(text: str) -> float:
    """A whole, positive number of steps given as a float (NVIDIA's `--max_steps 7038`)."""
    value = _number(text, float)
    if value < 1 or value != int(value):
        raise argparse.ArgumentTypeError(f"must be a whole number of steps >= 1, got {text!r}")
    return value


def positive_int_or_minus_one(text: str) -> int:
    """A positive integer, or -1 for "not set" (NVIDIA's `--resume_step`, `--steps_this_run`)."""
    value = _number(text, int)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or -1, got {text!r}")
    return value


def step_or_minus_one(text: str) -> int:
    """A step number (0 or more), or -1 for "the newest" (NVIDIA's `--resume_step`)."""
    value = _number(text, int)
    if value < -1:
        raise argparse.ArgumentTypeError(f"must be a step number or -1, got {text!r}")
    return value


def seed_value(text: str) -> int:
    """A seed numpy and torch accept: 0 <= seed < 2**32 (ranks are added to it)."""
    value = _number(text, int)
    if not 0 <= value < 2**32 - 4096:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 4097, got {text!r}")
    return value


def env_local_rank() -> int:
    """LOCAL_RANK from the environment (torchrun), -1 when unset; a malformed value is refused."""
    text = os.environ.get("LOCAL_RANK", "").strip()
    if not text:
        return -1
    if not text.isdigit():
        raise UsageError(f"the environment variable LOCAL_RANK must be a rank number, got {text!r}")
    return int(text)


def add_runtime_arguments(parser: argparse.ArgumentParser, *, seed: int) -> None:
    """The runtime flags every training script takes, with NVIDIA's names and defaults."""
    add = parser.add_argument
    add("--local_rank", type=int, default=None,
        help="rank on this node (torchrun sets LOCAL_RANK; kept for older launchers)")  # fmt: skip
    add("--seed", type=seed_value, default=seed, help="seeds python, numpy and torch (+ rank)")
    add("--no_cuda", action="store_true", help="run on the CPU even if a GPU is present")
    add("--fp16", "--amp", dest="fp16", action="store_true", help="fp16 autocast + loss scaling")
    add("--bf16", action="store_true", help="bf16 autocast (Ampere and newer GPUs, or CPU)")
    add("--precision", choices=PRECISION_CHOICES, default=None,
        help="default (no flag): fp32 with TF32 matmuls allowed, as NVIDIA's scripts run; "
             "auto: bf16 on A100/H100-class GPUs, else the default; tf32: the default; "
             "fp32: exact fp32 (TF32 off); bf16; fp16 (= --fp16); fp8: the encoder's linear "
             "layers in float8 (H100/H200 with torchao), the rest bf16")  # fmt: skip
    add("--no_tf32", action="store_true", help="exact fp32 matmuls (TF32 off)")
    add("--loss_scale", type=non_negative_float, default=0.0,
        help="fp16: the initial loss scale when > 0 (dynamic scaling either way)")  # fmt: skip
    add("--json-summary", "--json_summary", dest="json_summary", default="results/dllogger.json",
        help="dllogger-format JSON log file")  # fmt: skip
    add("--tensorboard", metavar="DIR", help="also write the logged scalars for TensorBoard here")
    add("--compile", action="store_true", help="torch.compile the model (optional fast path)")
    add("--use_env", action="store_true", help="accepted; unused")
    add("--debug", action="store_true",
        help=f"print the full traceback of an unexpected error (or set {DEBUG_ENV}=1)")  # fmt: skip


# ------------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Run:
    """What every run starts with: who this process is, its precision and its logger."""

    dist: distributed.DistState
    precision: PrecisionStack
    metrics: MetricLogger

    @property
    def device(self) -> torch.device:
        return self.dist.device


def choose_precision(args: argparse.Namespace, device: torch.device) -> tuple[str, bool]:
    """(autocast precision, TF32 allowed) from the precision flags; a UsageError on conflicts,
    on fp16 without a GPU and on fp8 without a Hopper-class GPU and torchao."""
    try:
        name, tf32 = resolve_precision(args.fp16, args.bf16, args.precision, device)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if name == "fp16" and device.type != "cuda":
        raise UsageError(
            "--fp16 needs a CUDA GPU and none is in use here; use --bf16 or fp32 on a CPU"
        )
    if name == "fp8" and (reason := fp8_unavailable(device)):
        raise UsageError(f"--precision fp8 {reason}; use --bf16 instead")
    return name, tf32 and not args.no_tf32


def setup_run(
    args: argparse.Namespace, *, init_loss_scale: float, tensorboard_step_offset: int = 0
) -> Run:
    """Distributed init, seeding by global rank, precision and TF32, then the rank-0 logger."""
    local_rank = env_local_rank() if args.local_rank is None else args.local_rank
    dist = distributed.init_distributed(local_rank, use_cuda=not args.no_cuda)
    distributed.seed_everything(args.seed, dist.rank)
    name, tf32 = choose_precision(args, dist.device)
    configure_tf32(tf32)
    precision = make_precision(name, dist.device, args.loss_scale or init_loss_scale)
    metrics = MetricLogger(
        args.json_summary, dist.is_main_process, tensorboard_dir=args.tensorboard,
        tensorboard_step_offset=tensorboard_step_offset,
    )  # fmt: skip
    return Run(dist, precision, metrics)


# ------------------------------------------------------------------------------- main


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def describe(err: BaseException) -> str:
    """An unexpected exception in one line: its type and message (an OSError with its file)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else 'no message'}"


def run_main(
    prog: str,
    parse: Callable[[Sequence[str] | None], argparse.Namespace],
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, run `body(args)`, and turn whatever ends it into an exit status.

    0 on success (or what `body` returns); 2 for a bad flag (argparse or `UsageError`); 1 for
    an expected error (`BertError`), one line on stderr; 130 on Ctrl-C; 1 for anything else,
    one line plus how to see the traceback. The process group is destroyed in every case."""
    configure_logging()
    try:
        args = parse(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a bad flag (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    except BertError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    debug = bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        status = body(args)
        return 0 if status is None else int(status)
    except BertError as err:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            traceback.print_exc()
            hint = ""
        else:
            hint = f" (rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
        print(f"{prog}: error: {describe(err)}{hint}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
