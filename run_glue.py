"""GLUE fine-tuning and evaluation for all nine tasks (NVIDIA's run_glue.py flags).

    python run_glue.py --task_name mrpc --data_dir glue/MRPC --init_checkpoint bert_uncased.pt \\
        --vocab_file vocab/vocab --config_file bert_configs/large.json --do_lower_case \\
        --do_train --do_eval --output_dir results/MRPC --train_batch_size 16 \\
        --learning_rate 2.4e-5 --num_train_epochs 3 --bf16

The entry script: NVIDIA's flags, their checks, and the flow of a run. Tasks: cola, sst-2, mrpc,
qqp, sts-b (regression), mnli (matched; the mismatched dev set is scored too), mnli-mm, qnli,
rte, wnli. Outputs in `--output_dir` (held with `output_lock.py`): `pytorch_model.bin`,
`config.json` and `bert_config.json` after training, `results.txt` (JSON, NVIDIA's keys;
`train:loss` the last epoch's mean micro-batch loss), `predictions.json` (guid -> label) and the
GLUE submission file (`MRPC.tsv`, ...) with `--do_predict`. Readers and metrics are `glue.py`'s,
the loops `finetuning.py`'s; the README lists how this script differs from NVIDIA's.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import cli
import glue
from errors import UsageError
from fileio import atomic_write_files, atomic_write_json
from finetuning import (
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
from modeling import BertConfig, BertForSequenceClassification, classification_loss
from output_lock import claim_output
from runtime import Run
from tokenization import BertTokenizer
from training import micro_batch_size, padding_multiple

logger = logging.getLogger("run_glue")


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="run_glue.py", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, seed=1, log_freq=50)
    add = parser.add_argument
    add("--data_dir", required=True, help="the task's GLUE folder (train.tsv, dev.tsv, ...)")
    add("--task_name", required=True, help=f"one of {', '.join(glue.TASK_NAMES)}")
    add("--max_seq_length", type=cli.seq_length, default=128)
    add("--do_train", action="store_true")
    add("--do_eval", action="store_true")
    add("--do_predict", action="store_true", help="label the test set (GLUE submission file)")
    add("--eval_batch_size", type=cli.batch_size, default=8)
    add("--server_ip", default="", help="accepted; unused")  # NVIDIA's remote debugging
    add("--server_port", default="", help="accepted; unused")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> tuple[glue.GlueProcessor, BertConfig]:
    """Every flag and path before any data is read: the task's processor and the model config."""
    if not (args.do_train or args.do_eval or args.do_predict):
        raise UsageError("at least one of --do_train, --do_eval or --do_predict is required")
    if args.gradient_accumulation_steps > args.train_batch_size:
        raise UsageError("--gradient_accumulation_steps must not exceed --train_batch_size")
    if args.max_seq_length < 3:  # [CLS] and two [SEP]
        raise UsageError(f"--max_seq_length {args.max_seq_length} is too short: 3 at least")
    processor = glue.get_processor(args.task_name)
    data = cli.check_input_dir(args.data_dir, "--data_dir")
    files = {"train": processor.train_file, "dev": processor.dev_file, "test": processor.test_file}
    wanted = {"train": args.do_train, "dev": args.do_eval, "test": args.do_predict}
    inputs = {f"--data_dir {split} file": data / files[split] for split in files if wanted[split]}
    if processor.task_name == "mnli" and args.do_eval:  # the mismatched dev set is scored too
        inputs["--data_dir mismatched dev file"] = data / glue.get_processor("mnli-mm").dev_file
    for label, path in inputs.items():
        cli.check_input_file(path, label)
    outputs = ["results.txt"]
    if args.do_predict:
        outputs += ["predictions.json", processor.submission_file]
    return processor, check_common_arguments(args, inputs, outputs)


def read_examples(processor: glue.GlueProcessor, args: argparse.Namespace) -> dict[str, list]:
    """The examples of every file this run uses ("train", "dev", "dev-mm" for MNLI's mismatched
    set, "test"), read before anything is created, so a file without examples (a header only)
    stops the run with nothing written."""
    examples = {}
    if args.do_train:
        examples["train"] = processor.get_train_examples(args.data_dir)
    if args.do_eval:
        examples["dev"] = processor.get_dev_examples(args.data_dir)
        if processor.task_name == "mnli":  # the mismatched dev set, as GLUE reports both
            examples["dev-mm"] = glue.get_processor("mnli-mm").get_dev_examples(args.data_dir)
    if args.do_predict:
        examples["test"] = processor.get_test_examples(args.data_dir)
    return examples


def features(processor, examples, tokenizer, args) -> list[glue.InputFeatures]:
    return glue.convert_examples_to_features(
        examples,
        processor.get_labels(),
        args.max_seq_length,
        tokenizer,
        processor.is_regression,
        source=f"{args.data_dir} ({processor.task_name})",
    )


def do_train(model, processor, examples, tokenizer, args, run: Run) -> dict:
    train_features = features(processor, examples, tokenizer, args)
    options = TrainOptions.from_args(args)
    ddp_model = wrap_for_training(model, options, run)
    micro_batch = micro_batch_size(args.train_batch_size, args.gradient_accumulation_steps)
    collate = functools.partial(glue.collate, pad_to_multiple_of=padding_multiple(run.device))
    loader = train_loader(train_features, micro_batch, run, args.seed, collate_fn=collate)
    result = train(model, ddp_model, loader, glue.classification_loss, options, run)
    if run.dist.is_main_process and not args.skip_checkpoint:
        save_fine_tuned(model, args.output_dir)
    return {  # NVIDIA's keys and definitions (counts of this rank)
        "global_step": result.steps,
        "train:loss": result.last_epoch_loss,
        "train:latency": result.seconds,
        "train:num_samples_per_gpu": result.samples_per_rank,  # over all epochs
        "train:num_steps": result.last_epoch_micro_steps,  # micro-batches of the last epoch
        "train:throughput": result.sequences_per_second,  # all ranks
    }


def evaluate(model, processor, tokenizer, args, run: Run, examples, task: str) -> dict:
    labelled = features(processor, examples, tokenizer, args)
    arrays = glue.features_to_arrays(labelled, args.max_seq_length)
    result = predict(model, arrays, args.eval_batch_size, glue.logits_forward, run)
    preds = glue.predictions_from_logits(result.outputs, processor.is_regression)
    labels = np.array([f.label_id for f in labelled])
    logits = torch.from_numpy(np.stack(result.outputs))
    loss = classification_loss(logits, torch.from_numpy(labels)).item()  # over the examples
    metrics = glue.compute_metrics(task, preds, labels)
    if not processor.is_regression and len(np.unique(preds)) == 1 and len(np.unique(labels)) > 1:
        logger.warning(  # the symptom users saw when weights silently failed to load (DLE#1154)
            "%s: every prediction is class %s; the model learned nothing beyond the majority "
            "class (check --init_checkpoint, the learning rate and the number of steps)",
            task,
            processor.get_labels()[int(preds[0])],
        )
    return {
        "eval:num_samples_per_gpu": result.rows_here,
        "eval:num_steps": len(result.batch_seconds),
        **glue.inference_results(result.batch_seconds, args.eval_batch_size),
        "eval:loss": loss,
        **metrics,
    }


def do_predict(model, processor, examples, tokenizer, args, run: Run) -> None:
    unlabelled = features(processor, examples, tokenizer, args)
    arrays = glue.features_to_arrays(unlabelled, args.max_seq_length)
    result = predict(model, arrays, args.eval_batch_size, glue.logits_forward, run)
    preds = glue.predictions_from_logits(result.outputs, processor.is_regression)
    if not run.dist.is_main_process:
        return
    labels = processor.get_labels()
    name, text = glue.submission(processor.task_name, examples, preds, labels)
    named = {
        example.guid: float(p) if processor.is_regression else labels[int(p)]
        for example, p in zip(examples, preds, strict=True)
    }
    output = Path(args.output_dir)
    atomic_write_files(  # together: a failed write leaves the earlier pair whole
        {
            output / name: text.encode("utf-8"),
            output / "predictions.json": (json.dumps(named, indent=4) + "\n").encode("utf-8"),
        }
    )


def log_results(results: dict, run: Run, output_dir: str) -> None:
    """results.txt with NVIDIA's keys, and the dllogger summary (NVIDIA's mapping kept)."""
    if run.dist.is_main_process:
        atomic_write_json(Path(output_dir) / "results.txt", results, indent=2)
    summary = {key: value for key, value in results.items() if ":" not in key}
    mapping = {
        "e2e_train_time": "train:latency",
        "training_sequences_per_second": "train:throughput",
        "final_loss": "train:loss",
        "inference_sequences_per_second": "infer:throughput(samples/s):avg",
    }
    summary |= {dl: results[key] for dl, key in mapping.items() if key in results}
    if "infer:latency(ms):sum" in results:
        summary["e2e_inference_time"] = results["infer:latency(ms):sum"] / 1000
    summary |= {dl: results[key] for key, dl in glue.NVIDIA_DLLOGGER_KEYS.items() if key in results}
    run.metrics.log((), summary)


def execute(args: argparse.Namespace) -> None:
    """The steps of a run: check, read, set up, hold the output folder (see output_lock.py),
    build the model, load weights, train, evaluate."""
    processor, config = check_arguments(args)
    examples = read_examples(processor, args)
    run = setup(args)
    with (
        run.metrics,
        claim_output(args.output_dir, "run_glue.py", is_main=run.dist.is_main_process),
    ):
        tokenizer = BertTokenizer(args.vocab_file, do_lower_case=args.do_lower_case)
        model = BertForSequenceClassification(config, processor.num_labels)
        run.metrics.log("PARAMETER", {"num_parameters": sum(p.numel() for p in model.parameters())})
        load_init_checkpoint(model, args.init_checkpoint, run.metrics)
        model.to(run.device)
        results: dict = {}
        if args.do_train:
            results |= do_train(model, processor, examples["train"], tokenizer, args, run)
        if args.do_eval:
            dev = examples["dev"]
            results |= evaluate(model, processor, tokenizer, args, run, dev, processor.task_name)
            if "dev-mm" in examples:
                mismatched = glue.get_processor("mnli-mm")
                mm = evaluate(
                    model, mismatched, tokenizer, args, run, examples["dev-mm"], "mnli-mm"
                )
                results["mnli-mm_acc"] = mm["acc"]
        if args.do_predict:
            do_predict(model, processor, examples["test"], tokenizer, args, run)
        log_results(results, run, args.output_dir)
        run.metrics.close()


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("run_glue.py", parse_arguments, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
