"""Official SQuAD scores of a predictions file, as a drop-in for evaluate-v1.1.py/evaluate-v2.0.py.

    python evaluate_squad.py DATASET.json PREDICTIONS.json
    python evaluate_squad.py dev-v2.0.json predictions.json --na-prob-file null_odds.json

The entry script: the official scripts' arguments and output. v1.1 data prints
``{"exact_match": ..., "f1": ...}`` on one line, as evaluate-v1.1.py does; v2.0 data (detected
from the file's "version" or its ``is_impossible`` fields) prints the v2.0 script's JSON
(indent 2) and accepts its ``--na-prob-file``, ``--na-prob-thresh`` and ``--out-file`` (the
JSON written there instead). The scoring lives in ``squad.py``; the README lists how this
differs from the official scripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import cli
import squad
from fileio import JsonError, atomic_write_text, read_json

PROG = "evaluate_squad.py"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog=PROG, description="Official SQuAD v1.1/v2.0 evaluation of a predictions file."
    )
    parser.add_argument("data_file", metavar="data.json", help="SQuAD dataset file")
    parser.add_argument("pred_file", metavar="pred.json", help="predictions: question id -> text")
    parser.add_argument("--out-file", "-o", metavar="eval.json", help="write the scores here")
    parser.add_argument(
        "--na-prob-file", "-n", metavar="na_prob.json", help="v2.0: question id -> null odds"
    )
    parser.add_argument(
        "--na-prob-thresh",
        "-t",
        type=cli.finite_float,
        default=1.0,
        help="v2.0: answer '' where the na-prob is above this (default 1.0)",
    )
    parser.add_argument("--out-image-dir", "-p", metavar="out_images", help="not supported")
    parser.add_argument("--verbose", "-v", action="store_true", help="accepted; unused")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> None:
    """The files before any is read; the scores file is none of them."""
    inputs = {
        "data.json": args.data_file,
        "pred.json": args.pred_file,
        "--na-prob-file": args.na_prob_file,
    }
    for label, path in inputs.items():
        if path is not None:
            cli.check_input_file(path, label)
    if args.out_file:
        cli.check_output_file(args.out_file, "--out-file")
        cli.check_not_overwriting(inputs, {"--out-file": args.out_file})


def _load_mapping(path: str, what: str, value_type: type | tuple[type, ...]) -> dict[str, Any]:
    try:
        value = read_json(path, what)
    except JsonError as err:
        raise squad.SquadError(str(err)) from None
    except FileNotFoundError:
        raise squad.SquadError(f"{what} not found: {path}") from None
    except OSError as err:
        raise squad.SquadError(f"cannot read {what} {path}: {err}") from None
    if not isinstance(value, dict) or not all(isinstance(v, value_type) for v in value.values()):
        raise squad.SquadError(f"{what} {path} is not a JSON object of question id -> value")
    return value


def evaluate(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The scores and the dataset's version ("1.1" or "2.0")."""
    check_arguments(args)
    dataset = squad.load_squad_json(args.data_file)
    if not any(p["qas"] for article in dataset["data"] for p in article["paragraphs"]):
        raise squad.SquadError(f"{args.data_file}: the dataset holds no questions to score")
    predictions = _load_mapping(args.pred_file, "predictions file", str)
    if not predictions:  # every question would score 0: a wrong file, not a result
        raise squad.SquadError(f"predictions file {args.pred_file} holds no predictions")
    squad.check_predictions_match(dataset, predictions, args.data_file, args.pred_file)
    if args.out_image_dir:
        print(f"{PROG}: --out-image-dir is not supported; no plots drawn", file=sys.stderr)
    if squad.detect_version(dataset) == "2.0":
        na_probs = None
        if args.na_prob_file:
            na_probs = _load_mapping(args.na_prob_file, "na-prob file", (int, float))
        scores = squad.evaluate_v2(
            dataset, predictions, na_probs, args.na_prob_thresh, source=args.data_file
        )
        return scores, "2.0"
    if args.na_prob_file:
        print(f"{PROG}: {args.data_file} is SQuAD v1.1; --na-prob-file ignored", file=sys.stderr)
    if dataset.get("version") != "1.1":
        print(
            f"Evaluation expects v-1.1, but got dataset with v-{dataset.get('version')}",
            file=sys.stderr,
        )
    return squad.evaluate_v1(dataset, predictions, args.data_file), "1.1"


def execute(args: argparse.Namespace) -> None:
    result, version = evaluate(args)
    if args.out_file:  # the official v2.0 script writes the file without indent
        atomic_write_text(args.out_file, json.dumps(result))
    else:
        print(json.dumps(result, indent=2 if version == "2.0" else None))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(PROG, parse_args, execute, argv, log_level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
