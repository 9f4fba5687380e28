"""Build the bundled sample corpus from WikiText-2 (raw) validation text.

    python -m data.make_sample_corpus [--input ../shared/data/text/wiki.valid.raw]
        [--output data/sample/wikitext2_valid_sentences.txt]

The output is in the format `create_pretraining_data.py` reads: one sentence per line, a blank
line between documents. Each top-level article (` = Title = `) is a document; section headings
are dropped; WikiText's escapes ` @-@ `, ` @,@ `, ` @.@ ` become `-`, `,`, `.`; paragraphs are
split into sentences by `data.segmentation.split_sentences`. WikiText's spacing around
punctuation is kept: BERT's tokenizer splits punctuation either way.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cli
from data.segmentation import split_sentences
from errors import BertError
from fileio import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "data" / "text" / "wiki.valid.raw"
DEFAULT_OUTPUT = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"


class CorpusError(BertError, ValueError):
    """Input that gives no corpus; the message names the file."""


_ARTICLE_TITLE = re.compile(r"= [^=].* =")
_ESCAPES = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}


def wikitext_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    """Sentences of each article of WikiText raw text."""
    sentences: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if _ARTICLE_TITLE.fullmatch(line):
            if sentences:
                yield sentences
            sentences = []
        elif not line.startswith("="):  # section headings are not text
            for escape, plain in _ESCAPES.items():
                line = line.replace(escape, plain)
            sentences.extend(split_sentences(line))
    if sentences:
        yield sentences


def build(input_file: Path, output_file: Path) -> tuple[int, int]:
    """Write the corpus; returns (documents, sentences)."""
    try:
        lines = input_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CorpusError(f"{input_file}: not UTF-8 text (byte {err.start})") from None
    documents = list(wikitext_documents(lines))
    if not documents:
        raise CorpusError(f"{input_file}: no WikiText article (' = Title = ' and its text) found")
    text = "\n\n".join("\n".join(sentences) for sentences in documents) + "\n"
    atomic_write_text(output_file, text)
    return len(documents), sum(map(len, documents))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="data.make_sample_corpus", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def execute(args: argparse.Namespace) -> None:
    cli.check_input_file(args.input, "--input")
    cli.check_output_file(args.output, "--output")
    cli.check_not_overwriting({"--input": args.input}, {"--output": args.output})
    documents, sentences = build(args.input, Path(args.output))
    size = Path(args.output).stat().st_size
    print(f"wrote {args.output}: {documents} documents, {sentences} sentences, {size:,} bytes")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("data.make_sample_corpus", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
