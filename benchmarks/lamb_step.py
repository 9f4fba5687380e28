"""LAMB step time of each implementation on one parameter set (BERT-base or -large shapes).

    python -m benchmarks.lamb_step [--config bert_configs/base.json] [--impls torch compiled]
        [--steps 10] [--warmup 3] [--json benchmarks/results/lamb_step.json]

Each implementation gets the same parameters and NVIDIA's two groups, fresh random gradients
every step (norm above 1, so clipping is active), and reports the median seconds of the timed
steps after the warm-up (the first compiled step, which compiles, is timed separately). On a CPU
this only says that an implementation works and how it scales; GPU speed must be measured on a
GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import cli
from benchmarks import sync
from fileio import atomic_write_text
from modeling import BertConfig, BertForPreTraining
from optimization import LAMB_IMPLS, make_lamb, parameter_groups

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "bert_configs" / "base.json"))
    parser.add_argument("--impls", nargs="+", choices=LAMB_IMPLS[1:], default=["torch", "compiled"])
    parser.add_argument("--steps", type=cli.positive_int, default=10)
    parser.add_argument("--warmup", type=cli.non_negative_int, default=3)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def measure(impl: str, model: torch.nn.Module, args: argparse.Namespace) -> dict:
    device = next(model.parameters()).device
    optimizer = make_lamb(parameter_groups(model), 1e-3, impl)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    generator = torch.Generator(device=device).manual_seed(0)
    times = []
    for _ in range(args.warmup + args.steps):
        for p in parameters:
            p.grad = torch.randn(p.shape, generator=generator, device=device) * 1e-2
        sync(device)
        start = time.perf_counter()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return {
        "impl": impl,
        "first_step_s": times[0],
        "median_step_s": statistics.median(times[args.warmup :]),
        "tensors": len(parameters),
        "parameters": sum(p.numel() for p in parameters),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig.from_json_file(args.config)).to(device)
    info = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "config": args.config,
    }
    print(json.dumps(info))
    rows = []
    for impl in args.impls:
        row = measure(impl, model, args)
        rows.append(row)
        print(
            f"{impl:10s} first step {row['first_step_s']:8.2f} s   median "
            f"{row['median_step_s'] * 1e3:9.1f} ms   ({row['tensors']} tensors, "
            f"{row['parameters'] / 1e6:.1f}M parameters)",
            flush=True,
        )
    if args.json:
        atomic_write_text(args.json, json.dumps({"info": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
