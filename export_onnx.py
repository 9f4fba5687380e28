"""Export a fine-tuned QA or classification model to ONNX, check it with onnxruntime, time both.

    python export_onnx.py --init_checkpoint results/SQuAD/pytorch_model.bin \\
        --config_file bert_configs/large.json --task qa --output results/bert_qa.onnx
    python export_onnx.py --init_checkpoint results/MRPC/pytorch_model.bin \\
        --config_file bert_configs/large.json --task classification --num_labels 2 \\
        --output results/bert_mrpc.onnx --json results/bert_mrpc_onnx.json

The entry script: export (`export`: inputs `input_ids`, `token_type_ids`, `attention_mask`,
outputs `start_logits`/`end_logits` or `logits`, dynamic `batch` and `sequence` axes), the check
before anything is written (onnxruntime against PyTorch on other shapes than the export's,
`--check_shapes`; a difference above `--tolerance` fails with no file left), the timing of both
(`median_seconds`), and one atomically written .onnx file with the weights inside. Weights come
from `checkpoint.py` (any format; none: random, for timing only); needs `onnx`, `onnxscript`
and `onnxruntime`. NVIDIA exports through Triton scripts only; this script is new.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

import cli
from checkpoint import check_head_loaded, load_model_weights
from errors import BertError, MissingDependency, UsageError
from fileio import atomic_write, atomic_write_json, check_room
from modeling import BertConfig, BertForQuestionAnswering, BertForSequenceClassification

logger = logging.getLogger(__name__)

INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAMES = {"qa": ("start_logits", "end_logits"), "classification": ("logits",)}
#: Weights a checkpoint must carry for each task; a head left at its random init is useless.
HEAD_PREFIXES = {"qa": ("qa_outputs.",), "classification": ("classifier.", "bert.pooler.")}
CLS_ID, SEP_ID, PAD_ID = 101, 102, 0  # as in vocab/vocab (BERT uncased and cased)


class ExportError(BertError, RuntimeError):
    """The export or its check failed; the message says which."""


class _Exported(nn.Module):
    """The task model with positional inputs and a tuple of tensor outputs, as ONNX wants them.

    Callers set eval mode on it: a new wrapper is in training mode, and an exporter that restores
    the mode after tracing (the TorchScript one does) would switch dropout back on inside.
    """

    def __init__(self, model: nn.Module, task: str) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        outputs = self.model(input_ids, token_type_ids, attention_mask)
        return tuple(outputs) if self.task == "qa" else (outputs,)


def build_model(args: argparse.Namespace, config: BertConfig) -> nn.Module:
    """The task model as configured, with the checkpoint's weights, in eval mode."""
    if args.task == "qa":
        model = BertForQuestionAnswering(config)
    else:
        model = BertForSequenceClassification(config, args.num_labels)
    if args.init_checkpoint is None:
        logger.warning("no --init_checkpoint: exporting random weights (for timing only)")
        return model.eval()
    report = load_model_weights(model, args.init_checkpoint)
    check_head_loaded(
        report,
        HEAD_PREFIXES[args.task],
        args.init_checkpoint,
        f"export needs a checkpoint fine-tuned for {args.task}",
    )
    return model.eval()


def plain_attention_twin(model: nn.Module) -> nn.Module:
    """The same model (sharing its weights) built with the explicit-softmax attention."""
    config = model.config.replace(attention_impl="eager")
    with torch.device("meta"):
        if isinstance(model, BertForSequenceClassification):
            twin = BertForSequenceClassification(config, model.num_labels)
        else:
            twin = BertForQuestionAnswering(config)
    twin.load_state_dict(model.state_dict(), assign=True)
    return twin.eval()


def example_inputs(
    batch: int, seq: int, vocab_size: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """A SQuAD-like batch [B, S]: [CLS] A [SEP] B [SEP], then padding; rows of mixed length.

    Row 0 fills the sequence; the others are shorter, down to about half of it, so every batch
    of more than one row has padded positions.
    """
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(
        min(1000, vocab_size // 2), vocab_size, (batch, seq), generator=generator
    )
    token_type_ids = torch.zeros(batch, seq, dtype=torch.long)
    attention_mask = torch.zeros(batch, seq, dtype=torch.long)
    for row in range(batch):
        length = max(seq - (row * seq) // (2 * batch), 1)
        first_sep = max(length // 3, 1) - 1
        input_ids[row, 0] = CLS_ID
        input_ids[row, [first_sep, length - 1]] = SEP_ID
        input_ids[row, length:] = PAD_ID
        token_type_ids[row, first_sep + 1 : length] = 1
        attention_mask[row, :length] = 1
    return input_ids, token_type_ids, attention_mask


def export(model: nn.Module, task: str, opset: int = 18) -> bytes:
    """The ONNX model (weights inside) as bytes, with dynamic batch and sequence axes.

    Traced with the `torch.export`-based exporter (`dynamo=True`; the TorchScript exporter is
    deprecated) from the explicit-softmax twin, so the graph holds only MatMul/Softmax at every
    opset: from opset 23 on, SDPA becomes an ONNX `Attention` node whose broadcast [B, 1, 1, S]
    mask onnxruntime 1.32 rejects. The check runs the model as configured (SDPA by default), so
    it also covers the attention kernel and the -10000 mask."""
    config = model.config
    batch = torch.export.Dim("batch", min=1)
    sequence = torch.export.Dim("sequence", min=2, max=config.max_position_embeddings)
    shapes = {name: {0: batch, 1: sequence} for name in INPUT_NAMES}
    # Batch 2, not 1: the exporter would specialise a size-1 axis to a constant.
    inputs = example_inputs(2, min(16, config.max_position_embeddings), config.vocab_size)
    exported = _Exported(plain_attention_twin(model), task).eval()
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices
    try:
        with warnings.catch_warnings():
            # Exporter-internal noise on torch 2.13: the axis names are kept, LeafSpec is torch's.
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            program = torch.onnx.export(
                exported,
                inputs,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES[task]),
                dynamic_shapes=shapes,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
        return program.model_proto.SerializeToString()
    except Exception as err:  # the exporter raises many kinds; one line for the user
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(f"ONNX export failed: {type(err).__name__}: {detail[:300]}") from err
    finally:
        onnx_logger.setLevel(level)


def median_seconds(functions: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function over `repeats` rounds, after one warm-up round.

    The functions take turns within a round, so a change in machine load hits all of them alike.
    """
    for function in functions:
        function()
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, samples in zip(functions, times, strict=True):
            start = time.perf_counter()
            function()
            samples.append(time.perf_counter() - start)
    return [float(np.median(samples)) for samples in times]


def compare(
    model: nn.Module, task: str, onnx_model: bytes, shapes: list[tuple[int, int]], repeats: int
) -> list[dict]:
    """Run PyTorch and onnxruntime on the same batches, compare and time them; a row per shape."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Idle onnxruntime threads would otherwise busy-wait beside PyTorch's turn.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
    exported = _Exported(model, task).eval()
    rows = []
    for batch, seq in shapes:
        inputs = example_inputs(batch, seq, model.config.vocab_size, seed=1000 * batch + seq)
        feed = {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs, strict=True)}
        with torch.inference_mode():
            want = [t.numpy() for t in exported(*inputs)]
            got = session.run(None, feed)
            diff = max(float(np.abs(a - b).max()) for a, b in zip(want, got, strict=True))
            torch_time, onnx_time = median_seconds(
                [lambda x=inputs: exported(*x), lambda f=feed: session.run(None, f)], repeats
            )
        rows.append(
            {
                "batch": batch,
                "sequence": seq,
                "padded_fraction": round(1 - float(inputs[2].float().mean()), 3),
                "max_abs_diff": diff,
                "torch_seq_per_s": batch / torch_time,
                "onnxruntime_seq_per_s": batch / onnx_time,
                "speedup": torch_time / onnx_time,
            }
        )
    return rows


#: --num_labels: far more classes than any GLUE-style task; --repeats: timed runs per shape.
MAX_LABELS = 2**16
MAX_REPEATS = 1000


def parse_shapes(text: str, max_sequence: int) -> list[tuple[int, int]]:
    """'1x8,3x37' -> [(1, 8), (3, 37)], each 1 <= BATCH <= cli.MAX_BATCH and
    1 <= SEQUENCE <= max_sequence."""
    shapes = []
    for item in text.split(","):
        try:
            batch, seq = (int(value) for value in item.strip().lower().split("x"))
        except ValueError:
            raise UsageError(f"--check_shapes: {item!r} is not BATCHxSEQUENCE") from None
        if not 1 <= batch <= cli.MAX_BATCH or not 1 <= seq <= max_sequence:
            raise UsageError(
                f"--check_shapes: {item!r} needs 1 <= batch <= {cli.MAX_BATCH} and "
                f"1 <= sequence <= {max_sequence}"
            )
        shapes.append((batch, seq))
    return shapes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="export_onnx.py", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--init_checkpoint", help="fine-tuned weights, any format (random weights without it)")
    add("--config_file", required=True)
    add("--task", choices=tuple(OUTPUT_NAMES), required=True)
    add(
        "--num_labels",
        type=cli.int_between(1, MAX_LABELS, "classes"),
        default=2,
        help="classification only",
    )
    add("--output", required=True, help="the .onnx file to write")
    add("--opset", type=cli.positive_int, default=18)
    add(
        "--tolerance",
        type=cli.non_negative_float,
        default=1e-4,
        help="max abs difference from PyTorch",
    )
    add("--check_shapes", default="1x8,3x37,8x128", help="BATCHxSEQUENCE,... to check and time")
    add(
        "--repeats",
        type=cli.int_between(1, MAX_REPEATS, "timed runs"),
        default=5,
        help="timed runs per shape (median; after a warm-up)",
    )
    add(
        "--threads",
        type=cli.process_count,
        help="CPU threads for both runtimes (default: torch's default)",
    )
    add("--json", help="also write the check and timings to this JSON file")
    add("--debug", action="store_true", help="print the full traceback of an unexpected error")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> tuple[BertConfig, list[tuple[int, int]]]:
    """Packages, files, shapes and output paths before the model is built: the config and the
    shapes to check."""
    missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if not importlib.util.find_spec(m)]
    if missing:
        raise MissingDependency(
            f"needs {', '.join(missing)} (pip install onnx onnxscript onnxruntime)"
        )
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if args.opset > newest:  # the exporter would fail after tracing, with its internals' words
        raise UsageError(
            f"--opset {args.opset}: the installed onnx {onnx.__version__} knows opsets up to "
            f"{newest}"
        )
    config = cli.check_model_files(args.config_file)
    shapes = parse_shapes(args.check_shapes, config.max_position_embeddings)
    if args.init_checkpoint:
        cli.check_weights_path(args.init_checkpoint, "--init_checkpoint")
    cli.check_output_file(args.output, "--output")
    if args.json:
        cli.check_output_file(args.json, "--json")
    inputs = {"--init_checkpoint": args.init_checkpoint, "--config_file": args.config_file}
    cli.check_not_overwriting(inputs, {"--output": args.output, "--json": args.json})
    cli.check_distinct_outputs({"--output": args.output, "--json": args.json})
    return config, shapes


def execute(args: argparse.Namespace) -> None:
    config, shapes = check_arguments(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = build_model(args, config)
    onnx_model = export(model, args.task, args.opset)
    # its size is known now, before the comparison runs: no room means no point in running it
    label = f"--output {args.output}"
    check_room(args.output, len(onnx_model), label, "the ONNX model", "nothing was written")
    rows = compare(model, args.task, onnx_model, shapes, args.repeats)
    max_diff = max(row["max_abs_diff"] for row in rows)
    passed = max_diff <= args.tolerance
    for row in rows:
        print(
            f"{row['batch']}x{row['sequence']}: max |diff| {row['max_abs_diff']:.2e}, "
            f"PyTorch {row['torch_seq_per_s']:.2f} seq/s, onnxruntime "
            f"{row['onnxruntime_seq_per_s']:.2f} seq/s ({row['speedup']:.2f}x)"
        )
    report = {
        "task": args.task,
        "config_file": str(args.config_file),
        "init_checkpoint": args.init_checkpoint,
        "output": str(args.output),
        "opset": args.opset,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "tolerance": args.tolerance,
        "max_abs_diff": max_diff,
        "passed": passed,
        "shapes": rows,
    }
    if args.json:
        atomic_write_json(args.json, report, indent=2)
    if not passed:
        raise ExportError(
            f"onnxruntime differs from PyTorch by {max_diff:.2e} > --tolerance "
            f"{args.tolerance:g}; {args.output} not written"
        )
    atomic_write(args.output, lambda handle: handle.write(onnx_model))
    print(f"wrote {args.output} ({len(onnx_model) / 1e6:.1f} MB)")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("export_onnx.py", parse_args, execute, argv, log_level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
