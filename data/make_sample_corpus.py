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
from collections.abc import Iterable, Iterator
from pathlib import Path

from data.segmentation import split_sentences
from fileio import atomic_write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "data" / "text" / "wiki.valid.raw"
DEFAULT_OUTPUT = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"

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
    lines = input_file.read_text(encoding="utf-8").splitlines()
    documents = list(wikitext_documents(lines))
    text = "\n\n".join("\n".join(sentences) for sentences in documents) + "\n"
    atomic_write_text(output_file, text)
    return len(documents), sum(map(len, documents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    documents, sentences = build(args.input, args.output)
    size = args.output.stat().st_size
    print(f"wrote {args.output}: {documents} documents, {sentences} sentences, {size:,} bytes")


if __name__ == "__main__":
    main()
