"""Attention backends for masked (padded) BERT batches: time, accuracy and width behaviour.

    python -m benchmarks.attention_backends [--batch 32] [--seq 512] [--heads 16]
        [--head_size 64] [--dtype bf16] [--lengths_from results/sample_shards/phase2]
        [--widths 64 128 ... 512] [--steps 20] [--warmup 3] [--json OUT.json]

Owns one measurement: an attention call with BERT-large's heads, forward and backward, through
each way to run it (`BACKENDS`). Phase 2's padded batches rule out the flash kernel; which
kernel runs instead, and whether length bins help, is a question for the GPU. Part 1 times one
batch of real lengths and checks each backend against fp32 `math`; part 2 times full batches at
every width, the first call apart. A backend that cannot run here is listed with its reason. The
attention itself is `modeling.py`'s; `scripts/gpu_check.sh` runs this on the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import cli
from benchmarks import sync
from fileio import atomic_write_text

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: SDPA backends that can be forced alone, by the name this benchmark prints.
FORCED = {
    "math": SDPBackend.MATH,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
}
#: Every way to run the call: `auto` is what SDPA picks by itself (what `modeling.py` runs; the
#: kernel picked is reported); `FORCED`'s names are one SDPA backend alone with the additive mask;
#: `flash, no mask` ignores padding (a lower bound, not a choice); `varlen` removes the padding and
#: runs `torch.nn.attention.varlen.varlen_attn` over the packed tokens (CUDA; the gathers in and
#: out counted); `eager` is `modeling.py`'s explicit softmax(QK^T / sqrt(hd) + bias) V.
BACKENDS = ("auto", "math", "efficient", "cudnn", "flash", "flash, no mask", "varlen", "eager")

#: The additive bias of a padded key, as `modeling.py` builds it.
PADDING_BIAS = -10000.0

#: Bounds of --heads and --head_size: far above any BERT (16 heads of 64), far below a
#: size that would not fit.
MAX_HEADS = 1024
MAX_HEAD_SIZE = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add(
        "--batch",
        type=cli.batch_size,
        default=32,
        help="rows per call (phase 2's micro-batch on one GPU)",
    )
    add("--seq", type=cli.seq_length, default=512, help="width of part 1's padded batch")
    add("--heads", type=cli.int_between(1, MAX_HEADS, "heads"), default=16)
    add("--head_size", type=cli.int_between(1, MAX_HEAD_SIZE, "per head"), default=64)
    add("--dtype", choices=sorted(DTYPES), default="bf16")
    add("--lengths_from", type=Path, help="folder of HDF5 shards whose input_mask gives lengths")
    add(
        "--widths",
        type=cli.seq_length,
        nargs="*",
        default=list(range(64, 513, 64)),
        help="part 2's widths",
    )
    add("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    add("--steps", type=cli.positive_int, default=20)
    add("--warmup", type=cli.non_negative_int, default=3)
    add("--seed", type=cli.seed_value, default=0)
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    for name in ("batch", "seq", "heads", "head_size", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}")
    if any(w < 1 for w in args.widths):
        parser.error(f"--widths must all be at least 1, got {args.widths}")
    if args.lengths_from is not None and not args.lengths_from.is_dir():
        parser.error(f"--lengths_from {args.lengths_from}: not a folder")
    return args


def shard_lengths(folder: Path, seq: int) -> list[int]:
    """Every row's real length (the sum of its input_mask) in the folder's HDF5 shards that
    are `seq` wide; empty if none is. A file that is not such a shard is a ValueError."""
    import h5py

    lengths: list[int] = []
    for path in sorted(folder.glob("*.hdf5")):
        try:
            with h5py.File(path, "r") as shard:
                mask = shard["input_mask"]
                if mask.ndim == 2 and mask.shape[1] == seq:
                    lengths.extend(int(n) for n in mask[:].sum(axis=1))
        except (OSError, KeyError) as error:
            raise ValueError(f"{path}: not a shard with an input_mask ({error})") from None
    return lengths


def batch_lengths(args: argparse.Namespace, generator: torch.Generator) -> tuple[list[int], str]:
    """`args.batch` lengths at `args.seq`: drawn from the shards' rows when they have any at
    that width, else Google's rule (each row short with probability 0.1, its length uniform
    in [2, seq]; full otherwise). Returns the lengths and where they came from."""
    if args.lengths_from is not None:
        pool = shard_lengths(args.lengths_from, args.seq)
        if pool:
            picks = torch.randint(len(pool), (args.batch,), generator=generator).tolist()
            return [pool[i] for i in picks], f"{args.lengths_from} ({len(pool)} rows)"
    short = torch.rand(args.batch, generator=generator) < 0.1
    drawn = torch.randint(2, args.seq + 1, (args.batch,), generator=generator)
    lengths = torch.where(short, drawn, torch.full_like(drawn, args.seq)).tolist()
    return lengths, "short_seq_prob 0.1"


class Inputs:
    """One attention call's tensors: q, k, v [B, nh, S, hd] (leaves, in `dtype`), the key
    padding as `attention_mask` [B, S] (1 real, 0 padding) and `attention_bias` [B, 1, 1, S],
    and the upstream gradient `grad_out` [B, nh, S, hd], zero on padded query rows."""

    def __init__(self, lengths: list[int], width: int, args, dtype, device, generator) -> None:
        batch = len(lengths)
        shape = (batch, args.heads, width, args.head_size)
        self.lengths = lengths
        self.attention_mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).to(
            device
        )  # [B, S]
        self.attention_bias = ((~self.attention_mask).to(dtype) * PADDING_BIAS)[:, None, None, :]
        rows = self.attention_mask[:, None, :, None].to(dtype)  # [B, 1, S, 1]
        self.q, self.k, self.v = (
            torch.randn(shape, generator=generator).to(device, dtype).requires_grad_()
            for _ in range(3)
        )
        self.grad_out = torch.randn(shape, generator=generator).to(device, dtype) * rows
        self.padded = any(n < width for n in lengths)

    def as_fp32(self) -> Inputs:
        copy = object.__new__(Inputs)
        copy.__dict__.update(self.__dict__)
        leaves = (self.q, self.k, self.v)
        copy.q, copy.k, copy.v = (t.detach().float().requires_grad_() for t in leaves)
        copy.grad_out = self.grad_out.float()
        copy.attention_bias = self.attention_bias.float()
        return copy


def sdpa(inputs: Inputs, backend: SDPBackend | None, masked: bool = True) -> torch.Tensor:
    bias = inputs.attention_bias if masked else None
    context = sdpa_kernel(backend) if backend is not None else contextlib.nullcontext()
    with context:
        return F.scaled_dot_product_attention(inputs.q, inputs.k, inputs.v, attn_mask=bias)


def eager(inputs: Inputs) -> torch.Tensor:
    scores = inputs.q @ inputs.k.transpose(-1, -2) / math.sqrt(inputs.q.shape[-1])
    return (scores + inputs.attention_bias).softmax(dim=-1) @ inputs.v


def varlen(inputs: Inputs) -> torch.Tensor:
    """Attention over the real tokens only: gather them into [T, nh, hd], run the variable-length
    kernel with cumulative offsets, scatter back to [B, nh, S, hd] (padded rows zero)."""
    from torch.nn.attention.varlen import varlen_attn

    batch, heads, width, head_size = inputs.q.shape
    keep = inputs.attention_mask.reshape(-1).nonzero().squeeze(1)  # [T]
    lengths = torch.tensor(inputs.lengths, device=keep.device, dtype=torch.int32)
    offsets = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))  # [B + 1]
    longest = max(inputs.lengths)

    def packed(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(batch * width, heads, head_size).index_select(0, keep)

    out = varlen_attn(
        packed(inputs.q), packed(inputs.k), packed(inputs.v), offsets, offsets, longest, longest
    )  # [T, nh, hd]
    full = out.new_zeros(batch * width, heads, head_size).index_copy(0, keep, out)
    return full.view(batch, width, heads, head_size).transpose(1, 2)


def runner(name: str) -> Callable[[Inputs], torch.Tensor]:
    if name == "auto":
        return lambda inputs: sdpa(inputs, None)
    if name == "flash, no mask":
        return lambda inputs: sdpa(inputs, SDPBackend.FLASH_ATTENTION, masked=False)
    if name == "varlen":
        return varlen
    if name == "eager":
        return eager
    return lambda inputs, backend=FORCED[name]: sdpa(inputs, backend)


def auto_choice(inputs: Inputs) -> str:
    """The SDPA kernel the dispatcher picks for these inputs (private API: "unknown" without it)."""
    try:
        choice = torch._fused_sdp_choice(
            inputs.q, inputs.k, inputs.v, inputs.attention_bias, 0.0, False
        )
        return SDPBackend(choice).name.lower()
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return "unknown"


def call(run: Callable[[Inputs], torch.Tensor], inputs: Inputs) -> torch.Tensor:
    """One forward and backward; returns the output (detached)."""
    for t in (inputs.q, inputs.k, inputs.v):
        t.grad = None
    out = run(inputs)
    out.backward(inputs.grad_out)
    return out.detach()


def timed_calls(run, inputs: Inputs, steps: int, warmup: int) -> tuple[float, float]:
    """Seconds of the first call, and the median of `steps` calls after `warmup` more."""
    device = inputs.q.device
    times = []
    for _ in range(1 + warmup + steps):
        sync(device)
        start = time.perf_counter()
        call(run, inputs)
        sync(device)
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1 + warmup :])


def compared(out: torch.Tensor, inputs: Inputs) -> dict[str, torch.Tensor]:
    """What a call is judged on, in fp32: the output on real query rows (padded ones differ by
    design) and the gradients of q, k and v."""
    rows = inputs.attention_mask[:, None, :, None]
    return {
        "out": out.float() * rows,
        "dq": inputs.q.grad.float(),
        "dk": inputs.k.grad.float(),
        "dv": inputs.v.grad.float(),
    }


def errors(out: torch.Tensor, inputs: Inputs, reference: dict) -> dict[str, float]:
    """Largest absolute error of `compared` against the fp32 reference's, each relative to the
    reference's largest magnitude."""
    relative = {}
    for name, value in compared(out, inputs).items():
        scale = reference[name].abs().max().clamp_min(1e-30)
        relative[name] = float((value - reference[name]).abs().max() / scale)
    return relative


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


def timed_row(row: dict, name: str, inputs: Inputs, args, real_tokens: int) -> bool:
    """Time backend `name` on `inputs` into `row` (status, first and median milliseconds, real
    tokens per second); False, with the reason as status, if it cannot run here."""
    try:
        first, median = timed_calls(runner(name), inputs, args.steps, args.warmup)
    except (RuntimeError, NotImplementedError, ImportError, TypeError) as error:
        row["status"] = f"unavailable: {first_line(error)}"
        return False
    row |= {
        "status": "ok",
        "first_ms": first * 1e3,
        "median_ms": median * 1e3,
        "real_tokens_per_s": real_tokens / median,
    }
    return True


def part1(args, lengths: list[int], dtype, device, generator) -> tuple[list[dict], str]:
    """Every backend on one batch at `--seq` whose lengths come from the shards' `input_mask`
    (`--lengths_from`) or else from Google's rule (a tenth of the rows short, the rest full):
    median time, tokens per second counting only real tokens, and the largest error of the
    output and of the three gradients against fp32 `math` (padded query rows excluded)."""
    inputs = Inputs(lengths, args.seq, args, dtype, device, generator)
    reference_inputs = inputs.as_fp32()
    out = call(runner("math"), reference_inputs)
    reference = compared(out, reference_inputs)
    real_tokens = sum(lengths)
    picked = auto_choice(inputs)
    results = []
    for name in args.backends:
        row: dict = {"part": 1, "backend": name, "width": args.seq, "batch": len(lengths)}
        if name == "auto":
            row["picked"] = picked
        results.append(row)
        if not timed_row(row, name, inputs, args, real_tokens):
            continue
        out = call(runner(name), inputs)  # fresh gradients of one call, for the errors
        if name == "flash, no mask" and inputs.padded:
            row["errors"] = "not compared: attends to padding"
        else:
            row["errors"] = errors(out, inputs, reference)
    return results, picked


def part2(args, dtype, device, generator) -> list[dict]:
    """Every backend on full batches at each width of `--widths`: the first call (kernel
    selection, cuDNN plans, allocator growth) apart from the median of the later ones, so a
    cost of length bins shows as a large first call per width or widths not cheaper in
    proportion."""
    results = []
    for name in args.backends:
        if name == "flash, no mask":
            continue  # full batches have no padding: the same kernel as "flash"
        for width in args.widths:
            row: dict = {"part": 2, "backend": name, "width": width, "batch": args.batch}
            inputs = Inputs([width] * args.batch, width, args, dtype, device, generator)
            results.append(row)
            reserved = torch.cuda.memory_reserved() if device.type == "cuda" else 0
            if not timed_row(row, name, inputs, args, args.batch * width):
                continue
            if name == "auto":
                row["picked"] = auto_choice(inputs)
            if device.type == "cuda":
                row["reserved_growth_mib"] = (torch.cuda.memory_reserved() - reserved) / 2**20
    return results


def format_rows(rows: list[dict]) -> list[str]:
    lines = []
    for row in rows:
        head = f"{row['backend']:15s} S={row['width']:<4d}"
        if row["status"] != "ok":
            lines.append(f"{head} {row['status']}")
            continue
        text = (
            f"{head} first {row['first_ms']:9.2f} ms  median {row['median_ms']:8.3f} ms  "
            f"{row['real_tokens_per_s'] / 1e6:8.3f} M real tokens/s"
        )
        if isinstance(row.get("errors"), dict):
            text += "  err " + " ".join(f"{k} {v:.1e}" for k, v in row["errors"].items())
        elif "errors" in row:
            text += f"  ({row['errors']})"
        if "picked" in row:
            text += f"  [picked {row['picked']}]"
        if "reserved_growth_mib" in row:
            text += f"  +{row['reserved_growth_mib']:.0f} MiB reserved"
        lines.append(text)
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here", file=sys.stderr)
        return 2
    dtype = DTYPES[args.dtype]
    generator = torch.Generator().manual_seed(args.seed)
    try:
        lengths, source = batch_lengths(args, generator)
    except ValueError as error:
        print(f"error: --lengths_from {error}", file=sys.stderr)
        return 2
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dtype": args.dtype,
        "batch": args.batch,
        "heads": args.heads,
        "head_size": args.head_size,
        "seq": args.seq,
        "lengths_source": source,
        "mean_length": sum(lengths) / len(lengths),
        "padded_rows": sum(n < args.seq for n in lengths),
    }
    print(json.dumps(info), flush=True)
    with warnings.catch_warnings():  # a refused backend's kernel warnings repeat its reason
        warnings.simplefilter("ignore", UserWarning)
        rows, picked = part1(args, lengths, dtype, device, generator)
        print(f"part 1: one padded batch at S={args.seq} (auto picks {picked})")
        print("\n".join(format_rows(rows)), flush=True)
        widths = part2(args, dtype, device, generator)
    print("part 2: full batches per width (first call apart)")
    print("\n".join(format_rows(widths)), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps({"info": info, "rows": rows + widths}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
