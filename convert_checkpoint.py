"""Convert BERT weights between NVIDIA `.pt`, Hugging Face folders and (reading) Google TF.

    python convert_checkpoint.py --input ckpt_8601.pt --config_file bert_configs/large.json \\
        --vocab_file vocab/vocab --output exported_hf/
    python convert_checkpoint.py --input path/to/hf_folder --output bert_from_hf.pt

The output format follows `--output`: a name ending in `.pt` or `.bin` gets NVIDIA's
`{'model': state_dict}` layout (vocabulary padded to a multiple of 8, plus our `config` entry);
anything else becomes a Hugging Face folder (config.json, model.safetensors, and vocab.txt with a
tokenizer config when `--vocab_file` is given) whose vocabulary padding is undone.

NVIDIA's repository has no such converter (its TF loader needs TensorFlow, and nothing exports to
Hugging Face): this script is new. Every entry script's `--init_checkpoint` also reads all these
formats directly, so converting is only needed to hand weights to other tools.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from checkpoint import (
    HF_ARCHITECTURES,
    CheckpointError,
    fit_state_dict,
    model_for_weights,
    read_weights,
    save_hf_folder,
    save_nvidia_checkpoint,
)
from modeling import BertConfig, ConfigError
from tokenization import VocabError, load_vocab


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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


def convert(args: argparse.Namespace) -> Path:
    weights = read_weights(args.input)
    config = resolve_config(args, weights.config)
    # Checked against a model of this config built on the meta device: shapes, depth, vocab.
    model = model_for_weights(weights.state_dict, config)
    state_dict, report = fit_state_dict(model, weights.state_dict, weights.source)
    report.log()
    output = Path(args.output)
    if output_format(args) == "nvidia":
        if output.exists():
            raise CheckpointError(f"{output}: output file exists; remove it or pick another name")
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


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        output = convert(args)
    except (CheckpointError, ConfigError, VocabError, FileNotFoundError) as err:
        print(f"convert_checkpoint.py: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
