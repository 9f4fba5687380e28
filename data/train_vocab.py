"""Train a WordPiece vocabulary on your own text, for BERT pre-trained from scratch.

    python -m data.train_vocab --input_file corpus.txt [more.txt ...] --output_file vocab.txt \\
        --vocab_size 30522 [--cased] [--min_frequency 2] [--config_file bert_configs/base.json]

Owns the command: its flags and checks, two passes of Hugging Face `tokenizers`' own
`WordPieceTrainer` behind its BERT normalizer and pre-tokenizer (Google's BasicTokenizer, so
`tokenization.BertTokenizer` gives the ids `tokenizers`' BERT tokenizer gives), and writing the
`vocab.txt` format: the special tokens first ([PAD] 0 ... [MASK] 4, no [unusedN]), then the
`##x` characters, the characters and the pieces in the order learned, the same file for the same
text and flags (`train_vocabulary`). Input is UTF-8 text, the shards' input or any plain text;
reading the vocabulary back is `tokenization.py`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cli
from errors import BertError, UsageError
from fileio import atomic_write_text
from pretraining_instances import decoded_lines
from tokenization import vocab_from_text

if TYPE_CHECKING:
    from modeling import BertConfig

logger = logging.getLogger(__name__)

#: The special tokens, written first in this order ([PAD] must be id 0, the padding id). No
#: [unusedN] entries: Google's vocabularies reserve them, nothing here uses them.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: The largest --vocab_size taken: 8x multilingual BERT's 119,547 tokens. Larger is almost surely
#: a typo, and each token costs an embedding row and an output logit of the model.
MAX_VOCAB_SIZE = 1_000_000

CONTINUATION = "##"

#: Lines handed to the trainer at a time (it tokenizes a batch in parallel).
_BATCH_LINES = 1000


class VocabTrainingError(BertError, ValueError):
    """Input text that gives no vocabulary, or a result this project could not read back."""


@dataclasses.dataclass(frozen=True)
class VocabOptions:
    """What to train: the number of tokens (special tokens included), the casing, and how often
    a pair of pieces must occur to be merged."""

    vocab_size: int
    lowercase: bool = True
    min_frequency: int = 2


def vocab_size_value(text: str) -> int:
    """--vocab_size: more than the special tokens, at most `MAX_VOCAB_SIZE`."""
    value = cli.positive_int(text)
    if not len(SPECIAL_TOKENS) < value <= MAX_VOCAB_SIZE:
        raise argparse.ArgumentTypeError(
            f"must be between {len(SPECIAL_TOKENS) + 1} (the {len(SPECIAL_TOKENS)} special "
            f"tokens and some text) and {MAX_VOCAB_SIZE:,}, got {text!r}"
        )
    return value


def line_batches(paths: Sequence[Path]) -> Iterator[list[str]]:
    """Non-blank lines of the files, in batches; bad UTF-8 stops with the file and line."""
    batch: list[str] = []
    for path in paths:
        for line in decoded_lines(path):
            if line:
                batch.append(line)
            if len(batch) >= _BATCH_LINES:
                yield batch
                batch = []
    if batch:
        yield batch


def files_without_text(paths: Sequence[Path]) -> list[Path]:
    """The files holding nothing but blank lines (each read up to its first line of text)."""
    return [path for path in paths if not any(decoded_lines(path))]


def _bert_pipeline(tokenizers: ModuleType, lowercase: bool) -> Any:
    """An empty WordPiece tokenizer with BERT's normalizer and pre-tokenizer, to train."""
    tokenizer = tokenizers.Tokenizer(
        tokenizers.models.WordPiece(unk_token="[UNK]", continuing_subword_prefix=CONTINUATION)
    )
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    return tokenizer


def _train_pass(
    tokenizers: ModuleType,
    paths: Sequence[Path],
    options: VocabOptions,
    reserved: Sequence[str],
    vocab_size: int,
) -> list[str]:
    """One run of `tokenizers`' WordPiece trainer over the text: its tokens in id order."""
    tokenizer = _bert_pipeline(tokenizers, options.lowercase)
    trainer = tokenizers.trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=options.min_frequency,
        special_tokens=list(reserved),
        continuing_subword_prefix=CONTINUATION,
        show_progress=sys.stderr.isatty(),
    )
    tokenizer.train_from_iterator(line_batches(paths), trainer=trainer)
    vocab = tokenizer.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def train_vocabulary(paths: Sequence[Path], options: VocabOptions) -> list[str]:
    """The tokens of a WordPiece vocabulary trained on the text of `paths`, in id order.

    The same text and options give the same tokens. The trainer alone does not: it numbers the
    `##x` characters in the order of a hash table that changes from process to process, and
    those numbers break ties between equally frequent pairs, so ids and the last tokens learned
    differed between runs. So a first pass finds the characters, and the second trains with the
    `##x` characters at fixed, sorted ids (as reserved tokens, which the trainer numbers first
    and otherwise treats like the pieces it finds itself).

    A `UsageError` when `options.vocab_size` cannot hold the special tokens and the characters
    of the text (found after the first pass); a `VocabTrainingError` when there is no text."""
    tokenizers = cli.require("tokenizers", "pip install tokenizers")
    # First pass: no merges, so the result is the special tokens and every character, in its
    # plain and (where it occurs inside a word) its ## form.
    alphabet = _train_pass(tokenizers, paths, options, SPECIAL_TOKENS, len(SPECIAL_TOKENS))
    if len(alphabet) == len(SPECIAL_TOKENS):
        names = ", ".join(map(str, paths))
        raise VocabTrainingError(f"{names}: no text left after cleaning (control characters)")
    if options.vocab_size < len(alphabet):
        raise UsageError(
            f"--vocab_size {options.vocab_size} cannot hold the {len(SPECIAL_TOKENS)} special "
            f"tokens and the {len(alphabet) - len(SPECIAL_TOKENS)} characters (plain and ## "
            f"forms) of the text; use at least {len(alphabet)}"
        )
    continuation = sorted(t for t in alphabet if t.startswith(CONTINUATION) and len(t) > 2)
    reserved = [*SPECIAL_TOKENS, *continuation]
    tokens = _train_pass(tokenizers, paths, options, reserved, options.vocab_size)
    if tokens[: len(reserved)] != reserved or len(tokens) < len(alphabet):
        raise VocabTrainingError(
            f"tokenizers {tokenizers.__version__} returned an unexpected vocabulary layout (the "
            "reserved tokens are not first); nothing written"
        )
    return tokens


def write_vocabulary(path: Path, tokens: Sequence[str]) -> None:
    """Write `tokens` one a line, atomically, once this project's reader reads them back as
    they are (a token it would strip, split or find twice stops with nothing written)."""
    text = "".join(f"{token}\n" for token in tokens)
    read_back = list(vocab_from_text(text, path))  # a token on two lines: a VocabError
    if read_back != list(tokens):
        index = next(
            (i for i, (a, b) in enumerate(zip(tokens, read_back, strict=False)) if a != b),
            min(len(tokens), len(read_back)),
        )
        shown = repr(tokens[index]) if index < len(tokens) else "the end"
        raise VocabTrainingError(
            f"{path}: token {shown} (line {index + 1}) would not read back as written; nothing "
            "written"
        )
    atomic_write_text(path, text)


def config_mismatch(config: BertConfig, config_file: str | Path, tokens: int) -> str | None:
    """Why the model config does not fit a vocabulary of `tokens` tokens; None when it does."""
    if config.vocab_size == tokens:
        return None
    padded = config.replace(vocab_size=tokens).padded_vocab_size
    if config.vocab_size > tokens:
        effect = f"{config.vocab_size - tokens} embedding rows would never be used"
    elif config.padded_vocab_size < tokens:
        effect = "the scripts refuse a vocabulary with more tokens than the model has rows"
    else:
        effect = "exports trim the embedding to vocab_size, losing the last tokens"
    return (
        f'--config_file {config_file} has "vocab_size": {config.vocab_size} but the vocabulary '
        f'holds {tokens} tokens ({effect}); set "vocab_size": {tokens} there: it must be the '
        f"vocabulary's line count, and the model pads its embedding to {padded} rows (a "
        f"multiple of vocab_pad_multiple, {config.vocab_pad_multiple}) by itself"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="data.train_vocab", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add(
        "--input_file",
        nargs="+",
        action="extend",
        required=True,
        help="UTF-8 text files (one sentence a line, blank lines between documents, or plain text)",
    )
    add("--output_file", required=True, help="the vocabulary to write (vocab.txt format)")
    add(
        "--vocab_size",
        type=vocab_size_value,
        required=True,
        help=f"tokens to learn, special tokens included (at most {MAX_VOCAB_SIZE:,})",
    )
    add(
        "--min_frequency",
        type=cli.positive_int,
        default=2,
        help="occurrences a pair of pieces needs to be merged (default 2)",
    )
    add("--cased", action="store_true", help="keep case and accents (default: lower-case, strip)")
    add("--config_file", help="a model config whose vocab_size is compared with the result")
    add("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> BertConfig | None:
    """Paths and the config before any text is read; the config when one is given."""
    inputs = [cli.check_input_file(path, "--input_file") for path in args.input_file]
    cli.check_output_file(args.output_file, "--output_file")
    for path in inputs:
        cli.check_not_overwriting({"--input_file": path}, {"--output_file": args.output_file})
    if args.config_file is None:
        return None
    from modeling import BertConfig

    cli.check_input_file(args.config_file, "--config_file")
    cli.check_not_overwriting(
        {"--config_file": args.config_file}, {"--output_file": args.output_file}
    )
    return BertConfig.from_json_file(args.config_file)


def _usage_advice(lowercase: bool) -> str:
    if lowercase:
        return "uncased: pass --do_lower_case to the scripts (create_pretraining_data.py's default)"
    return "cased: run the scripts without --do_lower_case (create_pretraining_data.py: 0)"


def execute(args: argparse.Namespace) -> None:
    config = check_arguments(args)
    paths = [Path(path) for path in args.input_file]
    empty = files_without_text(paths)
    if len(empty) == len(paths):
        raise VocabTrainingError(f"{', '.join(map(str, paths))}: no text (empty or blank lines)")
    if empty:
        logger.warning("no text in %s (empty or blank lines); skipped", ", ".join(map(str, empty)))
    options = VocabOptions(args.vocab_size, not args.cased, args.min_frequency)
    start = time.perf_counter()
    tokens = train_vocabulary([p for p in paths if p not in empty], options)
    if len(tokens) < options.vocab_size:
        logger.warning(
            "the text gave %d tokens, fewer than --vocab_size %d: no other pair of pieces occurs "
            "--min_frequency %d times or more; more text or a lower --min_frequency gives more",
            len(tokens),
            options.vocab_size,
            options.min_frequency,
        )
    write_vocabulary(Path(args.output_file), tokens)
    if config is not None:
        message = config_mismatch(config, args.config_file, len(tokens))
        if message:
            logger.warning("%s", message)
    print(
        f"wrote {args.output_file}: {len(tokens)} tokens in {time.perf_counter() - start:.1f} s; "
        f'{_usage_advice(options.lowercase)}; the model config needs "vocab_size": {len(tokens)}'
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("data.train_vocab", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
