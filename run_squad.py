"""SQuAD v1.1 / v2.0 fine-tuning, prediction and evaluation (NVIDIA's run_squad.py flags).

    python run_squad.py --init_checkpoint bert_uncased.pt --vocab_file vocab/vocab \\
        --config_file bert_configs/large.json --do_lower_case --do_train --do_predict --do_eval \\
        --train_file train-v1.1.json --predict_file dev-v1.1.json --output_dir results/SQuAD \\
        --train_batch_size 32 --learning_rate 3e-5 --num_train_epochs 2 --bf16

The entry script: NVIDIA's flags, their checks, and the flow of a run. Outputs in `--output_dir`
(held with `output_lock.py`): `pytorch_model.bin` ({'model': state_dict}, as NVIDIA's),
`config.json` and `bert_config.json` (HEAD's and 21.11's names) after training;
`predictions.json`, `nbest_predictions.json` (and `null_odds.json` for v2.0) after prediction;
with `--do_eval` the official scores, built in (`--eval_script` only with `--run_eval_script`),
in the dllogger summary beside NVIDIA's timing keys and ours. Data, features and post-processing
are `squad.py`'s, the loops `finetuning.py`'s; the README lists how it differs from NVIDIA's.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cli
import squad
from errors import UsageError
from fileio import WriteError, parse_json, read_json
from finetuning import (
    ArrayDataset,
    TrainOptions,
    add_common_arguments,
    check_common_arguments,
    load_init_checkpoint,
    predict,
    save_fine_tuned,
    setup,
    train,
    train_loader,
    wrap_for_training,
)
from modeling import BertConfig, BertForQuestionAnswering
from output_lock import claim_output
from runtime import Run
from tokenization import BertTokenizer, warn_if_mostly_unknown
from training import log_peak_memory, micro_batch_size

logger = logging.getLogger("run_squad")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="run_squad.py", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, seed=42, log_freq=50)
    add = parser.add_argument
    add("--train_file", help="SQuAD json for training")
    add("--predict_file", help="SQuAD json for prediction (and evaluation)")
    add("--max_seq_length", type=cli.seq_length, default=384)
    add("--doc_stride", type=cli.seq_length, default=128)
    add("--max_query_length", type=cli.seq_length, default=64)
    add("--do_train", action="store_true")
    add("--do_predict", action="store_true")
    add("--do_eval", action="store_true", help="score predictions against --predict_file")
    add("--predict_batch_size", type=cli.batch_size, default=8)
    add("--n_best_size", type=cli.seq_length, default=20)
    add("--max_answer_length", type=cli.seq_length, default=30)
    add("--verbose_logging", action="store_true", help="accepted; unused")
    add("--version_2_with_negative", action="store_true")
    add("--null_score_diff_threshold", type=cli.finite_float, default=0.0)
    add(
        "--eval_script",
        help="an external evaluation script such as <squad_dir>/evaluate-v1.1.py "
        "(NVIDIA's launcher passes one); it is run only with --run_eval_script, otherwise the "
        "built-in official EM/F1 scorer is used and the script is left alone",
    )
    add(
        "--run_eval_script",
        action="store_true",
        help="run --eval_script (with this Python) "
        "instead of the built-in scorer; it executes the code in that file, so pass this only "
        "for a script you trust",
    )
    add(
        "--disable-progress-bar",
        "--disable_progress_bar",
        dest="disable_progress_bar",
        action="store_true",
        help="accepted; unused",
    )
    add("--skip_cache", action="store_true", help="do not write the feature cache")
    add("--cache_dir", help="where feature caches go (default: beside the data file)")
    add(
        "--no_trim",
        action="store_true",
        help="train and predict on batches padded to --max_seq_length (the plain path)",
    )
    add("--profile", action="store_true", help="accepted; unused")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> BertConfig:
    """Every flag and path before any data is read (the model config is returned)."""
    if not (args.do_train or args.do_predict):
        raise UsageError("at least one of --do_train or --do_predict is required")
    if args.do_train and not args.train_file:
        raise UsageError("--do_train needs --train_file")
    if (args.do_predict or args.do_eval) and not args.predict_file:
        raise UsageError("--do_predict/--do_eval need --predict_file")
    if args.do_eval and not args.do_predict:
        raise UsageError("--do_eval scores the predictions of --do_predict; pass both")
    if args.run_eval_script and not args.eval_script:
        raise UsageError("--run_eval_script needs --eval_script")
    squad.check_window_flags(args.max_seq_length, args.doc_stride, args.max_query_length)
    inputs = {
        "--train_file": args.train_file if args.do_train else None,
        "--predict_file": args.predict_file if args.do_predict else None,
        "--eval_script": args.eval_script if args.run_eval_script else None,
    }
    for flag, path in inputs.items():
        if path:
            cli.check_input_file(path, flag)
    if args.cache_dir and not args.skip_cache:
        cli.check_output_dir(args.cache_dir, "--cache_dir")
    outputs = ["predictions.json", "nbest_predictions.json", "null_odds.json"]
    return check_common_arguments(args, inputs, outputs if args.do_predict else [])


def read_examples(
    args: argparse.Namespace, tokenizer: BertTokenizer
) -> dict[str, list[squad.SquadExample]]:
    """The examples of the files this run uses ("train", "predict"), read before anything is
    created, so that a file without usable questions (none, none answerable where training
    needs answers, no context the tokenizer reads, no gold answers for v1.1 scoring) stops the
    run with nothing written."""
    examples = {}
    if args.do_train:
        examples["train"] = squad.read_squad_examples(
            args.train_file, True, args.version_2_with_negative
        )
        squad.check_model_input(args.train_file, examples["train"], tokenizer, True)
    if args.do_predict:
        examples["predict"] = squad.read_squad_examples(
            args.predict_file, False, args.version_2_with_negative
        )
        squad.check_model_input(args.predict_file, examples["predict"], tokenizer, False)
    if args.do_eval and not args.version_2_with_negative and not args.run_eval_script:
        squad.check_v1_answers(squad.load_squad_json(args.predict_file), args.predict_file)
    return examples


def features_for(
    path: str,
    examples: list[squad.SquadExample],
    is_training: bool,
    tokenizer: BertTokenizer,
    args: argparse.Namespace,
    run: Run,
) -> list[squad.SquadFeature]:
    """The features of a SQuAD file's examples, through the feature cache.

    Every rank builds the features itself (no rank waits behind a barrier for another);
    rank 0 writes the cache, atomically, and warns when the text is mostly [UNK]."""
    lengths = {
        "max_seq_length": args.max_seq_length,
        "doc_stride": args.doc_stride,
        "max_query_length": args.max_query_length,
    }
    cache = squad.cache_path(
        path,
        cache_dir=args.cache_dir,
        vocab_file=args.vocab_file,
        do_lower_case=args.do_lower_case,
        is_training=is_training,
        version_2_with_negative=args.version_2_with_negative,
        **lengths,
    )
    features = squad.load_feature_cache(cache)
    if features is None:
        features = squad.convert_examples_to_features(
            examples, tokenizer, is_training=is_training, **lengths
        )
        if not args.skip_cache and run.dist.is_main_process:
            try:
                squad.save_feature_cache(cache, features)
            except WriteError as err:  # only a shortcut for later runs: this one goes on
                logger.warning("feature cache not saved: %s", err)
    squad.check_features(path, examples, features, is_training)
    if run.dist.is_main_process:
        unknown, total = squad.unknown_token_share(features)
        warn_if_mostly_unknown(path, unknown, total, args.vocab_file, args.do_lower_case)
    return features


def do_train(model, tokenizer, examples, args: argparse.Namespace, run: Run) -> None:
    features = features_for(args.train_file, examples, True, tokenizer, args, run)
    arrays = squad.features_to_arrays(features)
    run.metrics.log(
        "PARAMETER",
        {
            "training_samples": len(examples),
            "training_features": len(features),
        },
    )
    model.bert.pooler.requires_grad_(False)  # never reaches the QA loss (NVIDIA drops it too)
    options = TrainOptions.from_args(
        args, exclude=("pooler",), trim=not args.no_trim, row_fills=squad.QA_ROW_FILLS
    )
    ddp_model = wrap_for_training(model, options, run)
    micro_batch = micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    loader = train_loader(ArrayDataset(arrays), micro_batch, run, args.seed)
    result = train(model, ddp_model, loader, squad.qa_loss, options, run)
    run.metrics.log(
        (),
        {
            "e2e_train_time": result.seconds,
            "training_sequences_per_second": result.sequences_per_second,
            "final_loss": result.final_loss,
        },
    )
    if run.dist.is_main_process and not args.skip_checkpoint:
        save_fine_tuned(model, args.output_dir)


def do_predict(model, tokenizer, examples, args: argparse.Namespace, run: Run) -> dict[str, str]:
    features = features_for(args.predict_file, examples, False, tokenizer, args, run)
    arrays = squad.features_to_arrays(features)
    run.metrics.log(
        "PARAMETER",
        {
            "infer_start": True,
            "eval_samples": len(examples),
            "eval_features": len(features),
            "predict_batch_size": args.predict_batch_size,
        },
    )
    inputs = {key: arrays[key] for key in ("input_ids", "segment_ids", "input_mask")}
    result = predict(
        model,
        inputs,
        args.predict_batch_size,
        squad.qa_forward,
        run,
        trim=not args.no_trim,
        compile=args.compile,
    )
    raw = [
        squad.RawResult(int(uid), start, end)
        for uid, (start, end) in zip(arrays["unique_ids"], result.outputs, strict=True)
    ]
    predictions, nbest, null_odds = squad.get_answers(
        examples, features, raw, squad.SquadAnswerOptions.from_args(args)
    )
    if run.dist.is_main_process:
        squad.write_predictions(
            args.output_dir, predictions, nbest, null_odds if args.version_2_with_negative else None
        )
    run.metrics.log(
        (),
        {
            "e2e_inference_time": result.seconds,
            "inference_sequences_per_second": len(features) / result.seconds
            if result.seconds
            else 0,
            # Ours: without each width's first batch, where compilation and kernel choice happen.
            "inference_sequences_per_second_warm": result.warm_sequences_per_second,
        },
    )
    empty = sum(1 for text in predictions.values() if text in ("", "empty"))
    if predictions and empty == len(predictions):
        logger.warning("every prediction is empty: is the checkpoint a fine-tuned SQuAD model?")
    return predictions


def do_eval(args: argparse.Namespace, run: Run, predictions: dict[str, str]) -> dict:
    """Official EM/F1 (built in), or the output of `--eval_script` with `--run_eval_script`.

    A script found in the data folder is code from outside the repository: it runs only when
    the user asks for it with the flag (NVIDIA's launcher always passed one and ran it)."""
    dataset = squad.load_squad_json(args.predict_file)
    if args.eval_script and args.run_eval_script:
        scores = run_eval_script(args)
    else:
        if args.eval_script:
            logger.info(
                "--eval_script %s not run (--run_eval_script runs it); scoring with the "
                "built-in official EM/F1",
                args.eval_script,
            )
        if args.version_2_with_negative:
            odds = read_json(Path(args.output_dir) / "null_odds.json")
            scores = squad.evaluate_v2(dataset, predictions, odds, source=args.predict_file)
        else:
            scores = squad.evaluate_v1(dataset, predictions, args.predict_file)
    exact = scores.get("exact_match", scores.get("exact"))
    run.metrics.log((), {"exact_match": exact, "F1": scores["f1"]})
    return scores


def run_eval_script(args: argparse.Namespace) -> dict:
    """The JSON scores that `--eval_script` prints for the predictions."""
    command = [
        sys.executable,
        args.eval_script,
        args.predict_file,
        str(Path(args.output_dir) / "predictions.json"),
    ]
    if args.version_2_with_negative:
        command += ["--na-prob-file", str(Path(args.output_dir) / "null_odds.json")]
    logger.info("running --eval_script %s", args.eval_script)
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout
    try:
        if result.returncode != 0:
            raise ValueError(f"exit status {result.returncode}")
        scores = parse_json(output[output.index("{") :], "its output")
        if not isinstance(scores, dict) or "f1" not in scores:
            raise ValueError("no 'f1' in its output")
    except ValueError as err:
        last = (result.stderr.strip().splitlines() or [""])[-1][:200]
        raise squad.SquadError(
            f"--eval_script {args.eval_script}: {err}; stderr: {last or '(none)'}"
        ) from None
    return scores


def execute(args: argparse.Namespace) -> None:
    """The steps of a run: check, read, set up, hold the output folder (see output_lock.py),
    build the model, load weights, train, predict, score."""
    config = check_arguments(args)
    tokenizer = BertTokenizer(args.vocab_file, do_lower_case=args.do_lower_case)
    examples = read_examples(args, tokenizer)
    run = setup(args)
    with (
        run.metrics,
        claim_output(args.output_dir, "run_squad.py", is_main=run.dist.is_main_process),
    ):
        model = BertForQuestionAnswering(config)
        load_init_checkpoint(model, args.init_checkpoint, run.metrics)
        model.to(run.device)
        if args.do_train:
            do_train(model, tokenizer, examples["train"], args, run)
        predictions = {}
        if args.do_predict:
            predictions = do_predict(model, tokenizer, examples["predict"], args, run)
        if args.do_eval and run.dist.is_main_process:
            scores = do_eval(args, run, predictions)
            exact = scores.get("exact_match", scores.get("exact"))
            print(json.dumps({"exact_match": exact, "f1": scores["f1"]}))
        log_peak_memory(run.metrics, run.device)
        run.metrics.close()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("run_squad.py", parse_arguments, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
