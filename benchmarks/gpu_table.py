"""The one table of `scripts/gpu_check.sh`: throughput, MFU, peak memory and targets per run.

    python -m benchmarks.gpu_table --manifest WORK/manifest.tsv --config bert_configs/large.json \
        --device "NVIDIA H100 80GB HBM3" --table OUT/table.txt --json OUT/summary.json

Owns reading the check's manifest (one line per planned run) and the dllogger logs the entry
scripts wrote, turning them into one row per workload, precision and path: the warm rate
(`measure`), MFU at the nominal shape over the card's dense bf16 peak (`flops_per_sequence`,
`PEAK_BF16_TFLOPS`), peak memory and the target. Running the workloads is `gpu_check.sh`'s.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

import cli
from fileio import atomic_write_text
from logger import read_dllogger_file
from modeling import BertConfig

#: Workload -> (sequence length, masked rows per sequence or None, training?, target seq/s on one
#: H100/H200, what the rate is).
WORKLOADS = {
    "pretrain_p1": (128, 20, True, 1400, "run_pretraining.py phase 1"),
    "pretrain_p2": (512, 80, True, 500, "run_pretraining.py phase 2"),
    "squad_train": (384, None, True, 400, "run_squad.py training"),
    "squad_infer": (384, None, False, 2500, "run_squad.py prediction"),
}

#: Dense bf16 TFLOP/s by device name (vendor datasheets), most specific names first.
PEAK_BF16_TFLOPS = (
    ("GH200", 989.4),
    ("H200", 989.4),
    ("H100 PCIe", 756.5),
    ("H100 NVL", 835.5),
    ("H100", 989.4),
    ("A100", 312.0),
    ("L40S", 362.1),
    ("B200", 2250.0),
)


def peak_tflops(device: str) -> float | None:
    """The card's dense bf16 peak, or None for an unknown card or a CPU."""
    for name, tflops in PEAK_BF16_TFLOPS:
        if name.lower() in device.lower():
            return tflops
    return None


def flops_per_sequence(config: BertConfig, workload: str) -> float:
    """Model FLOPs of one sequence at the workload's nominal shape (multiply-adds count 2):
    sequences padded to 128, 512 or 384, the MLM head on `max_predictions_per_seq` rows,
    training counted as 3 forward passes."""
    seq, masked, training, _, _ = WORKLOADS[workload]
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * seq * (4 * h * h + 2 * h * i) + 2 * 2 * seq * seq * h  # dense + attention
    forward = layers * per_layer + 2 * h * h  # the pooler
    if masked is not None:  # MLM transform and decoder on the masked rows, NSP head
        forward += 2 * masked * (h * h + h * config.padded_vocab_size) + 2 * h * 2
    else:  # the span head
        forward += 2 * seq * h * 2
    return forward * (3 if training else 1)


def windows(events: list[dict], key: str) -> list[float]:
    """Per-window rates logged during training, in order."""
    return [
        float(e["data"]["training_sequences_per_second"])
        for e in events
        if e.get("type") == "LOG"
        and isinstance(e.get("step"), list)
        and len(e["step"]) == 2
        and key in e.get("data", {})
        and "training_sequences_per_second" in e["data"]
    ]


def summary(events: list[dict]) -> dict:
    """The final summary entries (step `()`), merged."""
    merged: dict = {}
    for e in events:
        if e.get("step") == []:
            merged.update(e.get("data", {}))
    return merged


def measure(workload: str, log: Path, skip_windows: int) -> dict:
    """Rate, how it was taken and peak memory (`peak_memory_gib`) of one finished run, warm-up
    left out: for training, the median of the per-window `training_sequences_per_second` after
    the first `skip_windows` windows (compilation and the first steps happen there); for SQuAD
    prediction, `inference_sequences_per_second_warm` (every batch but each width's first)."""
    events = read_dllogger_file(log)
    final = summary(events)
    result: dict = {"peak_gib": final.get("peak_memory_gib")}
    if workload == "squad_infer":
        warm = float(final.get("inference_sequences_per_second_warm") or 0)
        result["rate"] = warm or final.get("inference_sequences_per_second")
        result["how"] = "warm batches" if warm else "all batches (none warm)"
        return result
    rates = windows(events, "average_loss" if workload.startswith("pretrain") else "step_loss")
    result["windows"] = rates
    kept = rates[skip_windows:]
    if kept:
        result["rate"] = statistics.median(kept)
        result["how"] = f"median of windows {skip_windows + 1}-{len(rates)}"
    elif rates:
        result["rate"] = rates[-1]
        result["how"] = "last window (warm-up included: too few windows)"
    else:
        result["rate"], result["how"] = None, "no window logged"
    return result


def build_rows(manifest: Path, config: BertConfig, device: str, skip: dict[str, int]) -> list:
    """One row per line of `manifest`: tab-separated name, workload, precision, path, status
    ("ok", or why it did not run or finish) and the dllogger file the entry script wrote."""
    peak = peak_tflops(device)
    rows = []
    with manifest.open(newline="") as handle:
        for name, workload, precision, path, status, log in csv.reader(handle, delimiter="\t"):
            _, _, _, target, what = WORKLOADS[workload]
            row = {
                "name": name,
                "workload": workload,
                "what": what,
                "precision": precision,
                "path": path,
                "status": status,
                "target": target,
                "rate": None,
                "mfu": None,
                "peak_gib": None,
            }
            if status == "ok":
                try:
                    row |= measure(workload, Path(log), skip.get(workload, 1))
                except (OSError, ValueError, KeyError) as err:
                    row["status"] = f"unreadable log ({err})"
            if row["rate"] is not None and peak is not None:
                row["mfu"] = row["rate"] * flops_per_sequence(config, workload) / (peak * 1e12)
            if row["rate"] is None:
                row["verdict"] = row["status"] if row["status"] != "ok" else "no rate"
            elif device == "cpu":
                row["verdict"] = "n/a (CPU)"
            elif peak is None:
                row["verdict"] = "n/a (unknown card)"
            else:
                row["verdict"] = "met" if row["rate"] >= target else "missed"
            rows.append(row)
    return rows


def format_table(rows: list[dict], device: str) -> str:
    header = ("workload", "precision", "path", "seq/s", "MFU", "peak GiB", "target", "met/missed")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["what"],
                r["precision"],
                r["path"],
                f"{r['rate']:,.1f}" if r["rate"] is not None else "-",
                f"{r['mfu']:.1%}" if r["mfu"] is not None else "-",
                f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-",
                f"{r['target']:,}",
                r["verdict"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [f"device: {device}; peak dense bf16: {peak_tflops(device) or 'unknown'} TFLOP/s"]
    for k, line in enumerate(lines):
        text.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if k == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--skip_windows", type=cli.non_negative_int, default=1, help="pre-training windows left out"
    )
    parser.add_argument("--skip_squad_windows", type=cli.non_negative_int, default=2)
    parser.add_argument("--table", type=Path)
    parser.add_argument("--json", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = BertConfig.from_json_file(args.config)
    skip = {
        "pretrain_p1": args.skip_windows,
        "pretrain_p2": args.skip_windows,
        "squad_train": args.skip_squad_windows,
    }
    rows = build_rows(args.manifest, config, args.device, skip)
    table = format_table(rows, args.device)
    print(table, end="")
    if args.table:
        atomic_write_text(args.table, table)
    if args.json:
        payload = {"device": args.device, "config": str(args.config), "rows": rows}
        atomic_write_text(args.json, json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
