"""A summary table of pre-training and fine-tuning runs, read from their dllogger JSON logs.

    python -m scripts.summarize_runs \
        --pretraining results/dllogger_phase1.json results/dllogger.json \
        --squad results/SQuAD/dllogger.json --glue results/MRPC/dllogger.json \
        [--seconds 312] [--output summary.md]

Each log's final summary records (those with an empty step) are read: for
pre-training one per phase (final_loss, training_sequences_per_second, e2e_train_time, and the
last held-out evaluation's masked-LM and next-sentence accuracy when it has one), from one
log or several in phase order (run_pretraining.sh leaves phase 1's events in
dllogger_phase1.json and phase 2's in dllogger.json), for
SQuAD the training summary, the inference summary and exact_match/F1, for GLUE NVIDIA's keys
(exact_match holds the accuracy, F1 the F1). The table goes to stdout, and with --output also to
a Markdown file (written atomically). A log without a summary record is an error naming it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cli
from errors import UsageError
from fileio import atomic_write_text
from logger import LogError, read_dllogger_file
from scripts.plot_loss import check_logs_and_output

#: The held-out masked-LM accuracy that pre-training logs with --eval_dir.
EVAL_ACCURACY = "eval_masked_lm_accuracy"


def summaries(path: Path) -> list[tuple[dict, dict]]:
    """(parameters so far, merged final records) of every run in a log, in order."""
    runs: list[tuple[dict, dict]] = []
    params: dict = {}
    finals: dict = {}
    for record in read_dllogger_file(path):
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        step = record.get("step")
        if step == "PARAMETER":
            if "Config" in data and finals:
                runs.append((params, finals))
                params, finals = {}, {}
            params.update(data)
        elif step == [] or step == ():
            finals.update(data)
        elif EVAL_ACCURACY in data:  # a held-out evaluation: the run's last one is reported
            finals.update({key: data[key] for key in data if key.startswith("eval_")})
    if finals:
        runs.append((params, finals))
    if not runs:
        raise LogError(f"{path}: no final summary record (did the run finish?)")
    return runs


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _train_row(name: str, final: dict) -> list[str]:
    result = f"final loss {_fmt(final.get('final_loss'))}"
    if EVAL_ACCURACY in final:
        result += (
            f"; held-out MLM accuracy {_fmt(final[EVAL_ACCURACY], 3)}, "
            f"NSP accuracy {_fmt(final.get('eval_next_sentence_accuracy'), 3)}"
        )
    return [
        name,
        result,
        f"{_fmt(final.get('training_sequences_per_second'))} seq/s",
        f"{_fmt(final.get('e2e_train_time'), 3)} s",
    ]


def _infer_row(name: str, scores: str, final: dict) -> list[str]:
    return [
        name,
        scores,
        f"{_fmt(final.get('inference_sequences_per_second'))} seq/s",
        f"{_fmt(final.get('e2e_inference_time'), 3)} s",
    ]


def _merged(path: Path) -> dict:
    """Every final record of a fine-tuning log in one dict (training, inference, scores)."""
    final: dict = {}
    for _, data in summaries(path):
        final |= data
    return final


def rows(
    pretraining: Path | list[Path] | None, squad: Path | None, glue: Path | None
) -> list[list[str]]:
    table = []
    logs = [pretraining] if isinstance(pretraining, Path) else pretraining or []
    runs = [run for log in logs for run in summaries(log)]
    for index, (params, final) in enumerate(runs, start=1):
        seq = params.get("seq_length")
        name = f"pre-training phase {index}" + (f" (seq {seq})" if seq else "")
        table.append(_train_row(name, final))
    if squad:
        final = _merged(squad)
        if "final_loss" in final:
            table.append(_train_row("SQuAD fine-tuning", final))
        if "exact_match" in final or "inference_sequences_per_second" in final:
            scores = f"EM {_fmt(final.get('exact_match'), 3)} / F1 {_fmt(final.get('F1'), 3)}"
            table.append(_infer_row("SQuAD dev prediction", scores, final))
    if glue:
        final = _merged(glue)
        if "final_loss" in final:
            table.append(_train_row("GLUE fine-tuning", final))
        if "exact_match" in final:
            scores = f"accuracy {_fmt(final['exact_match'], 3)}"
            if "F1" in final:
                scores += f" / F1 {_fmt(final['F1'], 3)}"
            table.append(_infer_row("GLUE dev evaluation", scores, final))
    return table


def markdown(table: list[list[str]], seconds: float | None) -> str:
    lines = ["| stage | result | throughput | time |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in table]
    if seconds is not None:
        lines.append(f"\nwall time of the whole run: {seconds:.0f} s")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="summarize_runs.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pretraining",
        type=Path,
        nargs="+",
        help="run_pretraining's dllogger JSON logs, phase 1 first",
    )
    parser.add_argument("--squad", type=Path, help="run_squad's dllogger JSON")
    parser.add_argument("--glue", type=Path, help="run_glue's dllogger JSON")
    parser.add_argument(
        "--seconds", type=cli.non_negative_float, help="wall time of the whole run, to report"
    )
    parser.add_argument("--output", help="also write the table here (Markdown)")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def execute(args: argparse.Namespace) -> None:
    logs = [*(args.pretraining or []), *(log for log in (args.squad, args.glue) if log)]
    if not logs:
        raise UsageError("name at least one log: --pretraining, --squad or --glue")
    check_logs_and_output(logs, args.output)
    text = markdown(rows(args.pretraining, args.squad, args.glue), args.seconds)
    print(text, end="")
    if args.output:
        atomic_write_text(args.output, text)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("summarize_runs.py", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
