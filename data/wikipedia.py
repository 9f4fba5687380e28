"""Wikipedia stages: a pages-articles XML dump -> extracted `<doc>` files -> one article per line.

Owns running the pinned WikiExtractor (`wikiextractor==3.1.0` as `python -m`, its version
checked first), refusing a failed extraction with an error naming the dump, and NVIDIA's "one
article per line" text format, streamed one article at a time with lines stripped and empty
ones dropped. Both outputs are written under temporary names and renamed into place when
complete. The download is another stage's; sentence splitting and sharding are
`data/sharding.py`'s. The README lists how it differs from NVIDIA's `bertPrep.py`.
"""

from __future__ import annotations

import collections
import importlib.metadata
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from data.stages import PipelineError, staged_output_dir
from fileio import atomic_path

__all__ = ["WIKIEXTRACTOR_VERSION", "extract", "format_articles"]

logger = logging.getLogger(__name__)

WIKIEXTRACTOR_VERSION = "3.1.0"
_INSTALL_HINT = f"pip install wikiextractor=={WIKIEXTRACTOR_VERSION}"
# 3.1.0's reducer logs one of these when it exits; neither means it was killed (e.g. OOM).
_REDUCER_CLEAN = re.compile(r"REDUCER_EXIT clean: wrote (\d+) article")
_REDUCER_INCOMPLETE = "REDUCER_EXIT incomplete"


def _check_wikiextractor() -> None:
    try:
        version = importlib.metadata.version("wikiextractor")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version != WIKIEXTRACTOR_VERSION:
        found = f"found {version}" if version else "not installed"
        raise PipelineError(
            f"wikiextractor {WIKIEXTRACTOR_VERSION} is required ({found}): {_INSTALL_HINT}"
        )


def _run_wikiextractor(dump: Path, out_dir: Path, processes: int) -> list[str]:
    """Run WikiExtractor, logging its output; returns its last lines. Raises on failure."""
    command = [sys.executable, "-m", "wikiextractor.WikiExtractor", str(dump)]
    command += ["-o", str(out_dir), "-b", "100M", "--processes", str(processes)]
    logger.info("running %s", " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=20)
    clean = incomplete = False
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        for line in process.stdout:
            line = line.rstrip()
            tail.append(line)
            clean = clean or bool(_REDUCER_CLEAN.search(line))
            incomplete = incomplete or _REDUCER_INCOMPLETE in line
            logger.info("wikiextractor: %s", line)
    last_lines = "\n".join(tail)
    if process.returncode != 0:
        raise PipelineError(
            f"wikiextractor failed on {dump} (exit code {process.returncode}):\n{last_lines}"
        )
    if incomplete or not clean:
        raise PipelineError(
            f"wikiextractor did not finish {dump} cleanly (killed for memory?):\n{last_lines}"
        )
    return list(tail)


def extract(
    dump: Path, out_dir: Path, processes: int | None = None, *, overwrite: bool = False
) -> list[Path]:
    """Extract article text from a pages-articles dump (.xml or .xml.bz2) with WikiExtractor.

    Args:
        dump: the Wikipedia `*-pages-articles*.xml[.bz2]` dump.
        out_dir: receives WikiExtractor's `AA/wiki_00`, ... files of at most 100 MB, each a run
            of `<doc id=".." url=".." title="..">` blocks whose first line is the title.
        processes: WikiExtractor worker processes; None means `os.cpu_count()`.
        overwrite: replace a non-empty `out_dir` (else that is an error).

    Returns:
        The extracted files, sorted by path.
    """
    _check_wikiextractor()
    dump = Path(dump)
    if not dump.is_file():
        raise PipelineError(f"Wikipedia dump {dump} does not exist")
    if processes is not None and processes < 1:
        raise PipelineError(f"processes must be at least 1, got {processes}")
    processes = processes or os.cpu_count() or 1
    no_articles = (
        f"extraction produced no articles: is {dump} a pages-articles XML dump (.xml or .xml.bz2)?"
    )
    with staged_output_dir(out_dir, overwrite) as staging:
        _run_wikiextractor(dump, staging, processes)
        files = _extracted_files(staging)
        if not any(_starts_with_doc(path) for path in files):
            raise PipelineError(no_articles)
    out_dir = Path(out_dir).absolute()
    return [out_dir / path.relative_to(staging) for path in files]


def _extracted_files(folder: Path) -> list[Path]:
    """Regular files under `folder` in sorted path order (WikiExtractor's AA/wiki_00, ...)."""
    return sorted(
        path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")
    )


def _starts_with_doc(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(4) == b"<doc"


def _articles(paths: Sequence[Path]) -> Iterator[str]:
    """Each `<doc>` block's text lines after the title, stripped and joined with single spaces."""
    for path in paths:
        lines: list[str] | None = None  # None: outside a <doc> block
        title_pending = False
        with open(path, encoding="utf-8") as file:
            for line in file:
                if line.startswith("<doc "):
                    lines = []
                    title_pending = True
                elif line.startswith("</doc>"):
                    if lines:
                        yield " ".join(lines)
                    lines = None
                elif lines is not None:
                    text = line.strip()
                    if title_pending:
                        title_pending = False  # NVIDIA drops the title line too
                    elif text:
                        lines.append(text)
        if lines is not None:
            logger.warning("%s ends inside a <doc> block; its last article is dropped", path)


def format_articles(extracted: Path | Sequence[Path], out_file: Path) -> int:
    """Write the articles of extracted `<doc>` files to `out_file`, one article per line.

    Args:
        extracted: a folder (all its files, recursively, in sorted order) or a list of files
            (read in sorted order, so the output does not depend on how it was listed).
        out_file: written to a temporary file beside it and renamed when complete.

    Returns:
        The number of articles written; articles with no text besides the title are skipped.
    """
    if isinstance(extracted, (str, Path)) and Path(extracted).is_dir():
        paths = _extracted_files(Path(extracted))
    elif isinstance(extracted, (str, Path)):
        paths = [Path(extracted)]
    else:
        paths = sorted(Path(path) for path in extracted)
    missing = [str(path) for path in paths if not path.is_file()]
    if not paths or missing:
        raise PipelineError(f"no extracted files to format: {', '.join(missing) or extracted}")
    count = 0
    with atomic_path(out_file) as tmp:
        with open(tmp, "w", encoding="utf-8") as out:
            for article in _articles(paths):
                out.write(article + "\n")
                count += 1
        if count == 0:
            raise PipelineError(f"no articles with text in {len(paths)} extracted file(s)")
    logger.info("wrote %d articles to %s", count, out_file)
    return count
