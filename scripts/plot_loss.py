"""Loss curves from dllogger JSON logs (ours, or NVIDIA's own `--json-summary` files) as a PNG.

    python -m scripts.plot_loss results/dllogger.json [more logs ...] --output loss.png
        [--metrics average_loss mlm_loss] [--title TEXT]

Every log gets one panel, titled with its folder and file name. A log that holds several runs
(entry-script runs that shared one --json-summary file, which our logger appends to) is split at
each run's `Config` record, and the runs are drawn one after the other, labelled with their
sequence length when the log names it. The plotted metrics are every numeric key with "loss" or
"accuracy" in its name (pre-training: average_loss, mlm_loss, nsp_loss and the held-out
eval_* metrics; fine-tuning: step_loss) unless --metrics names them; accuracies go on a second
axis on the right, from 0. Lines that are not dllogger records are skipped; a log without
any such record is an error that names the file.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cli
from errors import UsageError
from fileio import atomic_write
from logger import LogError, read_dllogger_file


@dataclass
class Run:
    """One training run inside a log: its label and {metric: ([step], [value])}."""

    label: str
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def _step_number(step) -> int | None:
    """The global step of a LOG record: the last element of a list step like [epoch, step]."""
    if isinstance(step, list) and step and isinstance(step[-1], (int, float)):
        return int(step[-1])
    return None


def is_accuracy(key: str) -> bool:
    """Whether a metric is a fraction in [0, 1], drawn on the right-hand axis."""
    return "accuracy" in key


def split_runs(records: list[dict], metrics: list[str] | None = None) -> list[Run]:
    """The runs of a log with their loss series; runs without any loss record are dropped."""
    runs: list[Run] = []
    current = Run(label="run 1")
    for record in records:
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        if record.get("step") == "PARAMETER":
            if "Config" in data and current.series:
                runs.append(current)
                current = Run(label=f"run {len(runs) + 1}")
            if "seq_length" in data:
                current.label = f"seq {data['seq_length']}"
            continue
        step = _step_number(record.get("step"))
        if step is None:
            continue
        for key, value in data.items():
            wanted = key in metrics if metrics else "loss" in key or is_accuracy(key)
            if wanted and isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = current.series.setdefault(key, ([], []))
                steps.append(step)
                values.append(float(value))
    if current.series:
        runs.append(current)
    return runs


def plot(
    logs: list[Path], output: Path, metrics: list[str] | None = None, title: str | None = None
) -> None:
    """Draw one panel per log and write `output` (PNG) atomically."""
    panels = []
    for log in logs:
        runs = split_runs(read_dllogger_file(log), metrics)
        if not runs:
            wanted = ", ".join(metrics) if metrics else "a 'loss' or 'accuracy' metric"
            raise LogError(f"{log}: no training records with {wanted}")
        panels.append((log, runs))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 3.2 * len(panels)), squeeze=False)
    for ax, (log, runs) in zip(axes[:, 0], panels, strict=True):
        draw_panel(ax, runs)
        ax.set_title(title if title and len(panels) == 1 else f"{log.parent.name}/{log.name}")
    if title and len(panels) > 1:
        figure.suptitle(title)
    figure.tight_layout()
    atomic_write(output, lambda handle: figure.savefig(handle, dpi=110, format="png"))
    plt.close(figure)


def draw_panel(ax, runs: list[Run]) -> None:
    """The runs of one log on `ax` (losses) and, when there are any, a twin axis (accuracies);
    runs that restart their step count are drawn after the previous one."""
    right = None
    offset = 0
    colors = iter(f"C{i % 10}" for i in range(10**6))  # one colour cycle for both axes
    for index, run in enumerate(runs):
        first_step = min(steps[0] for steps, _ in run.series.values())
        shift = offset if first_step < offset else 0
        for key, (steps, values) in sorted(run.series.items()):
            if is_accuracy(key) and right is None:
                right = ax.twinx()
                right.set_ylabel("accuracy")
            target = right if is_accuracy(key) else ax
            name = key if len(runs) == 1 else f"{key} ({run.label})"
            marker = "o" if len(steps) <= 20 else None  # few points: show each one
            style = "--" if is_accuracy(key) else "-"
            xs = [s + shift for s in steps]
            target.plot(
                xs,
                values,
                style,
                label=name,
                linewidth=1.2,
                marker=marker,
                markersize=3,
                color=next(colors),
            )
        last = max(steps[-1] for steps, _ in run.series.values()) + shift
        if index + 1 < len(runs):
            ax.axvline(last, color="grey", linestyle=":", linewidth=0.8)
        offset = max(offset, last)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        right.set_ylim(bottom=0)  # accuracies from 0, their top where the data needs it
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, fontsize=7)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="plot_loss.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path, help="dllogger JSON log files")
    parser.add_argument("--output", "-o", default="loss.png")  # a str: "x/" stays a folder name
    parser.add_argument("--metrics", nargs="+", help="keys to plot (default: every *loss* key)")
    parser.add_argument("--title")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_logs_and_output(logs: Sequence[Path], output: str | None, suffix: str = "") -> None:
    """The logs are readable files and `output` (when given) can be written and is none of them;
    `suffix` is the file type the output must have (".png")."""
    for log in logs:
        cli.check_input_file(log, "log")
    if output is None:
        return
    cli.check_output_file(output, "--output")
    if suffix and Path(output).suffix.lower() != suffix:
        raise UsageError(f"--output {output}: expected a {suffix} file name")
    for log in logs:
        cli.check_not_overwriting({"log": log}, {"--output": output})


def execute(args: argparse.Namespace) -> None:
    check_logs_and_output(args.logs, args.output, ".png")
    plot(args.logs, Path(args.output), args.metrics, args.title)
    print(f"wrote {args.output}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("plot_loss.py", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
