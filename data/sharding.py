"""Sharding stage: one-article-per-line text -> sentence-per-line training and test shards.

Owns the split of articles into `<prefix>_training_<i>.txt` and `<prefix>_test_<i>.txt` in the
format `create_pretraining_data.py` reads (one sentence per line, a blank line after each
document): the input streamed with bounded memory, sentences split in worker processes in order
(the same shards for any process count), each article sent to the test set by a seeded draw and
to the shard of its set with the fewest bytes so far, and the shards written into a hidden
folder renamed into place when complete. Sentence splitting itself is `data/segmentation.py`'s;
reading the extracted dump is `data/wikipedia.py`'s. The README lists how it differs from
NVIDIA's `TextSharding.py`.
"""

from __future__ import annotations

import heapq
import logging
import multiprocessing
import random
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from pathlib import Path

from tqdm import tqdm

from data.segmentation import split_sentences
from data.stages import PipelineError, staged_output_dir

__all__ = ["shard_articles"]

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20  # articles handed to a worker at a time, by input size
_FLUSH_BYTES = 32 << 20  # shard text held in memory before it is appended to the files


def _segment_chunk(articles: list[bytes]) -> list[tuple[bytes, int]]:
    """Each article as (its document in shard format, its sentence count); runs in a worker."""
    documents = []
    for article in articles:
        sentences = split_sentences(article.decode("utf-8"))
        document = "".join(sentence + "\n" for sentence in sentences) + "\n"
        documents.append((document.encode("utf-8"), len(sentences)))
    return documents


def _read_chunks(paths: Sequence[Path], progress: tqdm) -> Iterator[list[bytes]]:
    """Non-blank input lines (articles) in input order, in lists of about `_CHUNK_BYTES`."""
    chunk: list[bytes] = []
    size = 0
    for path in paths:
        with open(path, "rb") as lines:
            for line in lines:
                progress.update(len(line))
                article = line.strip()
                if not article:
                    continue  # NVIDIA's formatter leaves a blank line after each article
                chunk.append(article)
                size += len(article)
                if size >= _CHUNK_BYTES:
                    yield chunk
                    chunk, size = [], 0
    if chunk:
        yield chunk


def _segmented(chunks: Iterable[list[bytes]], processes: int) -> Iterator[tuple[bytes, int]]:
    """`_segment_chunk` over `chunks`, in order, with at most 2 chunks per worker in flight."""
    if processes == 1:
        for chunk in chunks:
            yield from _segment_chunk(chunk)
        return
    # apply_async with a bounded window instead of Pool.imap: imap's feeder thread reads its
    # whole input ahead when the workers are slower than the reader, which is always here.
    with multiprocessing.Pool(processes) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_segment_chunk, (chunk,)))
            if len(pending) >= 2 * processes:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


class _ShardSet:
    """The shards of one set (training or test): least-bytes assignment and buffered writes."""

    def __init__(self, folder: Path, prefix: str, name: str, count: int) -> None:
        self.paths = [folder / f"{prefix}_{name}_{index}.txt" for index in range(count)]
        self.articles = [0] * count
        self.sentences = [0] * count
        self.bytes = [0] * count
        self.buffers: list[list[bytes]] = [[] for _ in range(count)]
        self.buffered = 0
        self.heap = [(0, index) for index in range(count)]  # (bytes so far, index): ties -> lowest
        for path in self.paths:
            path.touch()

    def add(self, document: bytes, n_sentences: int) -> None:
        size, index = heapq.heappop(self.heap)
        heapq.heappush(self.heap, (size + len(document), index))
        self.articles[index] += 1
        self.sentences[index] += n_sentences
        self.bytes[index] += len(document)
        self.buffers[index].append(document)
        self.buffered += len(document)

    def flush(self) -> None:
        for path, buffer in zip(self.paths, self.buffers, strict=True):
            if buffer:
                with open(path, "ab") as shard:
                    shard.writelines(buffer)
                buffer.clear()
        self.buffered = 0

    def summary(self) -> list[dict]:
        return [
            {"file": path.name, "articles": a, "sentences": s, "bytes": b}
            for path, a, s, b in zip(
                self.paths, self.articles, self.sentences, self.bytes, strict=True
            )
        ]


def _check_arguments(
    paths: list[Path],
    prefix: str,
    n_training: int,
    n_test: int,
    fraction_test: float,
    processes: int,
) -> None:
    if n_training < 1:
        raise PipelineError(f"n_training must be at least 1, got {n_training}")
    if n_test < 0:
        raise PipelineError(f"n_test must be at least 0, got {n_test}")
    if not 0 <= fraction_test < 1:
        raise PipelineError(f"fraction_test must be in [0, 1), got {fraction_test}")
    if fraction_test > 0 and n_test < 1:
        raise PipelineError(f"fraction_test={fraction_test} needs n_test >= 1, got {n_test}")
    if processes < 1:
        raise PipelineError(f"processes must be at least 1, got {processes}")
    if not prefix or Path(prefix).name != prefix:
        raise PipelineError(f"prefix must be a plain file name part, got {prefix!r}")
    if not paths:
        raise PipelineError("no input files given")
    for path in paths:
        if not path.is_file():
            raise PipelineError(f"input file {path} does not exist")
        if path.stat().st_size == 0:
            raise PipelineError(f"input file {path} is empty: did the formatting stage run?")


def shard_articles(
    articles: Path | Sequence[Path],
    out_dir: Path,
    prefix: str,
    n_training: int = 256,
    n_test: int = 256,
    fraction_test: float = 0.1,
    seed: int = 12345,
    processes: int = 1,
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Split one-article-per-line files into sentence-per-line training and test shards.

    Args:
        articles: one file or several, read in the given order; blank lines are skipped.
        out_dir: receives `<prefix>_training_<i>.txt` (i < n_training) and
            `<prefix>_test_<i>.txt` (i < n_test); replaced as a whole only with `overwrite`.
        fraction_test: probability that an article goes to the test set, drawn per article from
            `random.Random(seed)` in input order.
        processes: worker processes for sentence splitting; the output does not depend on it.
        progress: show a tqdm bar over the input bytes, with the article count.

    Returns:
        {"articles", "sentences", "bytes": totals, "training", "test": one dict per shard with
        its "file", "articles", "sentences" and "bytes"}.
    """
    paths = [Path(articles)] if isinstance(articles, (str, Path)) else [Path(p) for p in articles]
    _check_arguments(paths, prefix, n_training, n_test, fraction_test, processes)
    rng = random.Random(seed)
    total_bytes = sum(path.stat().st_size for path in paths)
    with (
        staged_output_dir(out_dir, overwrite) as staging,
        tqdm(total=total_bytes, unit="B", unit_scale=True, disable=not progress) as bar,
    ):
        training = _ShardSet(staging, prefix, "training", n_training)
        test = _ShardSet(staging, prefix, "test", n_test)
        # closing(): on an error, stop the worker pool before the staging folder is removed
        with closing(_segmented(_read_chunks(paths, bar), processes)) as documents:
            for count, (document, n_sentences) in enumerate(documents, start=1):
                is_test = rng.random() < fraction_test  # drawn for every article, even at 0.0
                (test if is_test else training).add(document, n_sentences)
                if training.buffered + test.buffered >= _FLUSH_BYTES:
                    training.flush()
                    test.flush()
                if count % 1000 == 0:
                    bar.set_postfix(articles=count, refresh=False)
        training.flush()
        test.flush()
        summary = _summarise(training, test)
        bar.set_postfix(articles=summary["articles"])
        if summary["articles"] == 0:
            raise PipelineError(f"no articles in {', '.join(map(str, paths))}")
    _warn_empty_shards(summary)
    return summary


def _summarise(training: _ShardSet, test: _ShardSet) -> dict:
    summary = {"training": training.summary(), "test": test.summary()}
    shards = summary["training"] + summary["test"]
    for key in ("articles", "sentences", "bytes"):
        summary[key] = sum(shard[key] for shard in shards)
    return summary


def _warn_empty_shards(summary: dict) -> None:
    """Empty shards only happen when a set got fewer articles than it has shards."""
    for name in ("training", "test"):
        empty = [shard["file"] for shard in summary[name] if shard["articles"] == 0]
        if empty:
            logger.warning(
                "%d of %d %s shards are empty (the set got only %d articles): %s",
                len(empty),
                len(summary[name]),
                name,
                sum(shard["articles"] for shard in summary[name]),
                ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""),
            )
