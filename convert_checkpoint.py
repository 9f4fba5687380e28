"""Convert BERT weights between NVIDIA `.pt`, Hugging Face folders and (reading) Google TF.

    python convert_checkpoint.py --input ckpt_8601.pt --config_file bert_configs/large.json \\
        --vocab_file vocab/vocab --output exported_hf/
    python convert_checkpoint.py --input path/to/hf_folder --output bert_from_hf.pt

The entry script: its flags and checks, and the choice of output format from `--output`: a name
ending in `.pt` or `.bin` gets NVIDIA's `{'model': state_dict}` layout (vocabulary padded to a
multiple of 8, plus our `config` entry); anything else a Hugging Face folder (config.json,
model.safetensors, and vocab.txt with a tokenizer config when `--vocab_file` is given) with the
padding undone. Reading and writing the formats is `checkpoint.py`'s, whose loader every entry
script's `--init_checkpoint` uses directly: converting is for handing weights to other tools.
NVIDIA's repository has no converter; the README's differences table says so.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import cli
from checkpoint import (
    HF_ARCHITECTURES,
    fit_state_dict,
    model_for_weights,
    read_weights,
    save_hf_folder,
    save_nvidia_checkpoint,
)
from errors import UsageError
from modeling import BertConfig, ConfigError
from tokenization import load_vocab


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="convert_checkpoint.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="NVIDIA/our .pt, HF folder, or TF ckpt")
    parser.add_argument("--output", required=True, help="*.pt / *.bin, or an HF folder to create")
    parser.add_argument(
        "--config_file",
        help="model config JSON; needed when the input carries none (NVIDIA .pt, TF)",
    )
    parser.add_argument("--vocab_file", help="vocabulary to copy into an HF folder")
    parser.add_argument(
        "--do_lower_case",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="tokenizer casing recorded in an HF folder (default: lower-case)",
    )
    parser.add_argument(
        "--architecture",
        choices=HF_ARCHITECTURES,
        help="HF class to export as (default: inferred from the heads present)",
    )
    parser.add_argument(
        "--format",
        choices=("auto", "nvidia", "hf"),
        default="auto",
        help="output format (default: from the --output name)",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def output_format(args: argparse.Namespace) -> str:
    if args.format != "auto":
        return args.format
    return "nvidia" if Path(args.output).suffix in (".pt", ".bin", ".pth") else "hf"


def resolve_config(args: argparse.Namespace, embedded: BertConfig | None) -> BertConfig:
    """The model config: --config_file wins, else the one stored with the weights."""
    config = BertConfig.from_json_file(args.config_file) if args.config_file else embedded
    if config is None:
        raise ConfigError(
            f"{args.input}: the checkpoint carries no model config; pass --config_file"
        )
    if args.vocab_file:
        vocab_size = len(load_vocab(args.vocab_file))
        if vocab_size > config.padded_vocab_size:
            raise ConfigError(
                f"{args.vocab_file}: {vocab_size} tokens do not fit the model's "
                f"{config.padded_vocab_size} vocabulary rows"
            )
        config = config.replace(vocab_size=vocab_size)
    return config


def check_arguments(args: argparse.Namespace) -> None:
    """The paths before any weights are read: the input exists, the config and vocabulary are
    files (and fit each other), the output can be written, is not the input and replaces
    nothing (a file there, or a folder with something in it)."""
    cli.check_weights_path(args.input, "--input")
    if args.config_file:
        cli.check_model_files(args.config_file, args.vocab_file)
    elif args.vocab_file:
        cli.check_input_file(args.vocab_file, "--vocab_file")
    inputs = {
        "--input": args.input,
        "--config_file": args.config_file,
        "--vocab_file": args.vocab_file,
    }
    output = Path(args.output)
    if output_format(args) == "nvidia":
        cli.check_output_file(args.output, "--output")
        cli.check_not_overwriting(inputs, {"--output": output})
        if output.exists():
            raise UsageError(f"--output {output}: exists; remove it or pick another name")
    else:  # a new folder; an input inside it would be in the way
        cli.check_output_dir(output, "--output")
        cli.check_not_overwriting(inputs, {"--output": output}, folders={"--output": output})
        if output.is_dir() and any(output.iterdir()):
            raise UsageError(f"--output {output}: a folder with files in it; pick a new one")


def convert(args: argparse.Namespace) -> Path:
    check_arguments(args)
    weights = read_weights(args.input)
    config = resolve_config(args, weights.config)
    # Checked against a model of this config built on the meta device: shapes, depth, vocab.
    model = model_for_weights(weights.state_dict, config)
    state_dict, report = fit_state_dict(model, weights.state_dict, weights.source)
    report.log()
    output = Path(args.output)
    if output_format(args) == "nvidia":
        save_nvidia_checkpoint(output, state_dict, config)
    else:
        save_hf_folder(
            output,
            state_dict,
            config,
            architecture=args.architecture,
            vocab_file=args.vocab_file,
            do_lower_case=args.do_lower_case,
        )
    return output


def execute(args: argparse.Namespace) -> None:
    print(f"wrote {convert(args)}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("convert_checkpoint.py", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
