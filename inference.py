"""Answer one question about one context with a SQuAD-fine-tuned checkpoint (NVIDIA's flags).

    python inference.py --init_checkpoint results/SQuAD/pytorch_model.bin \\
        --vocab_file vocab/vocab --config_file bert_configs/large.json --do_lower_case \\
        --question "What food does Harry like?" --context "My name is Harry and I grew up in ..."

The entry script: NVIDIA's flags, their checks (one line before the model is built), loading
the weights, and printing the answer, then the n-best list as JSON (`--n_best_size`, default 1
as NVIDIA's). Features over doc-stride windows, the model call (`squad.qa_forward`),
post-processing and the v2.0 null-answer decision are `squad.py`'s, so this script and
`run_squad.py` agree; the README lists how it differs from NVIDIA's inference.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

import torch

import cli
import environment
import runtime
import squad
from checkpoint import check_head_loaded, load_model_weights
from errors import UsageError, refuse_if_nothing_usable
from finetuning import predict
from modeling import BertConfig, BertForQuestionAnswering
from runtime import Run
from tokenization import BertTokenizer

SAMPLE_QUESTION = "What food does Harry like?"
SAMPLE_CONTEXT = (
    "My name is Harry and I grew up in Canada. I love apples. "
    "My favourite food is pizza and my sister likes chocolate."
)


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="inference.py", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--bert_model", default="bert-large-uncased", help="accepted; unused")
    add("--init_checkpoint", required=True)
    add("--vocab_file", required=True)
    add("--config_file", required=True)
    add("--question", default=SAMPLE_QUESTION)
    add("--context", default=SAMPLE_CONTEXT)
    add("--max_seq_length", type=cli.positive_int, default=384)
    add("--doc_stride", type=cli.positive_int, default=128)
    add("--max_query_length", type=cli.positive_int, default=64)
    add("--n_best_size", type=cli.positive_int, default=1)
    add("--max_answer_length", type=cli.positive_int, default=30)
    add("--do_lower_case", action="store_true")
    add("--version_2_with_negative", action="store_true")
    add("--null_score_diff_threshold", type=cli.finite_float, default=-11.0)
    add("--no_cuda", action="store_true")
    add("--fp16", action="store_true", help="run the model in half precision (needs a GPU)")
    add("--seed", type=cli.seed_value, default=1)
    add("--verbose_logging", action="store_true")
    add("--local_rank", type=int, default=-1, help="accepted; unused")  # one process
    add("--debug", action="store_true", help="print the full traceback of an unexpected error")
    environment.add_print_env_argument(parser, describe_run)
    return parser.parse_args(argv)


def run_choices(
    args: argparse.Namespace, device: torch.device, config: BertConfig | None
) -> environment.RunChoices:
    """What this script runs with, for the environment report: fp16 weights (`--fp16`) or fp32,
    TF32 as torch has it (this script leaves it alone), no optimizer, attention without dropout."""
    precision = "fp16" if args.fp16 else "fp32"
    tf32 = torch.backends.cuda.matmul.allow_tf32
    return environment.RunChoices(device, precision, tf32, config=config, training=False)


def describe_run(args: argparse.Namespace) -> environment.RunChoices:
    """`run_choices` for these flags without loading anything (the report of `--print_env`)."""
    device = environment.default_device(args.no_cuda)
    if args.fp16:
        runtime.check_fp16_device(device, hint="leave it out on a CPU")
    return run_choices(args, device, environment.read_config(args.config_file))


def check_arguments(args: argparse.Namespace) -> tuple[BertConfig, torch.device]:
    """Every flag and file before the model is built: the model config and the device."""
    if not args.question.strip():
        raise UsageError("--question must not be empty")
    if not squad.split_context(args.context)[0]:
        raise UsageError("--context must not be empty")
    squad.check_window_flags(args.max_seq_length, args.doc_stride, args.max_query_length)
    config = cli.check_model_files(args.config_file, args.vocab_file, args.max_seq_length)
    cli.check_weights_path(args.init_checkpoint, "--init_checkpoint")
    device = environment.default_device(args.no_cuda)
    if args.fp16:
        runtime.check_fp16_device(device, hint="leave it out on a CPU")
    return config, device


def answer(args: argparse.Namespace) -> tuple[str, list[dict]]:
    """The best answer and the n-best list for `args.question` about `args.context`."""
    config, device = check_arguments(args)
    environment.log_environment(run_choices(args, device, config))  # seen with --verbose_logging
    torch.manual_seed(args.seed)
    tokenizer = BertTokenizer(args.vocab_file, do_lower_case=args.do_lower_case)
    example = squad.SquadExample("question", args.question, squad.split_context(args.context)[0])
    for flag, text in (("--question", args.question), ("--context", args.context)):
        refuse_if_nothing_usable(  # an answer to nothing, or about nothing
            len(tokenizer.tokenize(text)),
            f"{flag} {text[:40]!r}",
            "text",
            "it gives no WordPiece token: white space or characters the tokenizer drops, such "
            "as control characters",
            UsageError,
        )
    model = BertForQuestionAnswering(config)
    report = load_model_weights(model, args.init_checkpoint)
    check_head_loaded(
        report,
        ("qa_outputs.",),
        args.init_checkpoint,
        "inference needs a checkpoint fine-tuned on SQuAD (run_squad.py --do_train)",
    )
    model.to(device).eval()
    if args.fp16:
        model.half()
    features = squad.convert_examples_to_features(
        [example],
        tokenizer,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        max_query_length=args.max_query_length,
    )
    arrays = squad.features_to_arrays(features)
    inputs = {key: arrays[key] for key in ("input_ids", "segment_ids", "input_mask")}
    run = Run.offline(device)
    outputs = predict(model, inputs, len(features), squad.qa_forward, run).outputs
    results = [
        squad.RawResult(f.unique_id, start, end)
        for f, (start, end) in zip(features, outputs, strict=True)
    ]
    predictions, nbest, _ = squad.get_answers(
        [example], features, results, squad.SquadAnswerOptions.from_args(args)
    )
    return predictions["question"], nbest["question"]


def execute(args: argparse.Namespace) -> None:
    if args.verbose_logging:
        logging.getLogger().setLevel(logging.INFO)
    best, nbest = answer(args)
    print(f"question: {args.question}")
    print(f"answer: {best}")
    print(json.dumps(nbest, indent=4))


def main(argv: Sequence[str] | None = None) -> int:
    quiet = logging.WARNING  # the answer is the output; --verbose_logging shows the rest
    return cli.run_main("inference.py", parse_arguments, execute, argv, log_level=quiet)


if __name__ == "__main__":
    sys.exit(main())
