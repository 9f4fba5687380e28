"""data/sharding.py: balance, determinism, the test fraction, the shard format, atomic output."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

import data.sharding
from data.segmentation import split_sentences
from data.sharding import shard_articles
from data.stages import PipelineError, staged_output_dir

WORDS = ("the", "lobster", "a", "species", "of", "clawed", "is", "found", "in", "sea", "water")


def _article(rng: random.Random, index: int) -> str:
    """An article of 1-12 sentences of 3-25 words; varied sizes make balancing non-trivial."""
    sentences = []
    for _ in range(rng.randint(1, 12)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 25))]
        sentences.append(" ".join(words).capitalize() + ".")
    return f"Article {index} says Dr. Smith left. " + " ".join(sentences)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "articles.txt"
    path.write_text("".join(_article(rng, i) + "\n" for i in range(3000)), encoding="utf-8")
    return path


def _shard(corpus: Path, out_dir: Path, **kwargs) -> dict:
    kwargs = {"prefix": "wiki", "n_training": 8, "n_test": 4, "progress": False, **kwargs}
    return shard_articles(corpus, out_dir, **kwargs)


def _documents(path: Path) -> list[list[str]]:
    """A shard's documents, each a list of sentence lines; checks the blank-line layout."""
    text = path.read_text(encoding="utf-8")
    if not text:
        return []
    assert text.endswith("\n\n") and "\n\n\n" not in text and not text.startswith("\n")
    return [block.split("\n") for block in text[:-2].split("\n\n")]


def test_format_and_completeness(corpus: Path, tmp_path: Path) -> None:
    summary = _shard(corpus, tmp_path / "shards")
    names = sorted(path.name for path in (tmp_path / "shards").iterdir())
    assert names == sorted(
        [f"wiki_training_{i}.txt" for i in range(8)] + [f"wiki_test_{i}.txt" for i in range(4)]
    )
    articles = corpus.read_text(encoding="utf-8").splitlines()
    expected = {tuple(split_sentences(article)) for article in articles}
    documents = [
        tuple(document)
        for path in sorted((tmp_path / "shards").iterdir())
        for document in _documents(path)
    ]
    assert sorted(documents) == sorted(expected)  # every article exactly once, split as expected
    assert all(len(sentence.strip()) == len(sentence) > 0 for doc in documents for sentence in doc)
    assert documents[0][0].startswith("Article ") and documents[0][0].endswith("Dr. Smith left.")

    assert summary["articles"] == 3000
    assert summary["sentences"] == sum(len(document) for document in documents)
    shards = summary["training"] + summary["test"]
    for shard in shards:
        path = tmp_path / "shards" / shard["file"]
        assert shard["bytes"] == path.stat().st_size
        assert shard["articles"] == len(_documents(path))
    assert summary["bytes"] == sum(shard["bytes"] for shard in shards)
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]  # no staging folder left


def test_balance(corpus: Path, tmp_path: Path) -> None:
    summary = _shard(corpus, tmp_path / "shards", n_training=16, n_test=3)
    largest = max(len("\n".join(split_sentences(a)).encode()) + 2 for a in corpus.open())
    for name in ("training", "test"):
        sizes = [shard["bytes"] for shard in summary[name]]
        assert max(sizes) - min(sizes) <= largest, name


def test_test_fraction(corpus: Path, tmp_path: Path) -> None:
    summary = _shard(corpus, tmp_path / "shards", fraction_test=0.1)
    n_test = sum(shard["articles"] for shard in summary["test"])
    assert 3000 * 0.1 - 50 <= n_test <= 3000 * 0.1 + 50  # about 3 binomial standard deviations
    summary = _shard(corpus, tmp_path / "none", n_test=0, fraction_test=0.0)
    assert summary["test"] == [] and summary["articles"] == 3000
    assert sorted(p.name for p in (tmp_path / "none").iterdir())[0] == "wiki_training_0.txt"


def test_deterministic_across_runs_and_processes(corpus: Path, tmp_path: Path) -> None:
    first = _shard(corpus, tmp_path / "one", processes=1)
    second = _shard(corpus, tmp_path / "again", processes=1)
    parallel = _shard(corpus, tmp_path / "two", processes=2)
    assert first == second == parallel
    for path in (tmp_path / "one").iterdir():
        assert path.read_bytes() == (tmp_path / "again" / path.name).read_bytes()
        assert path.read_bytes() == (tmp_path / "two" / path.name).read_bytes()
    other_seed = _shard(corpus, tmp_path / "seed", seed=1)
    assert other_seed["test"] != first["test"]


def test_small_buffers_and_chunks_give_the_same_shards(corpus, tmp_path, monkeypatch) -> None:
    reference = _shard(corpus, tmp_path / "reference", processes=2)
    monkeypatch.setattr(data.sharding, "_CHUNK_BYTES", 1000)
    monkeypatch.setattr(data.sharding, "_FLUSH_BYTES", 5000)
    assert _shard(corpus, tmp_path / "small", processes=1) == reference
    for path in (tmp_path / "reference").iterdir():
        assert path.read_bytes() == (tmp_path / "small" / path.name).read_bytes()


def test_fewer_articles_than_shards(tmp_path: Path, caplog) -> None:
    corpus = tmp_path / "articles.txt"
    # NVIDIA's formatter leaves a blank line after each article: blank lines are skipped
    corpus.write_text("First one. It is short.\n\nSecond one.\n\n\nThird. Last.\n")
    with caplog.at_level(logging.WARNING, logger="data.sharding"):
        summary = _shard(corpus, tmp_path / "shards", n_training=5, n_test=2, fraction_test=0.0)
    assert "2 of 5 training shards are empty" in caplog.text
    assert "2 of 2 test shards are empty" in caplog.text
    assert [shard["articles"] for shard in summary["training"]] == [1, 1, 1, 0, 0]
    assert (tmp_path / "shards" / "wiki_training_0.txt").read_text() == (
        "First one.\nIt is short.\n\n"
    )
    assert (tmp_path / "shards" / "wiki_test_1.txt").read_bytes() == b""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_training": 0}, "n_training must be at least 1"),
        ({"n_test": -1}, "n_test must be at least 0"),
        ({"fraction_test": 1.0}, r"fraction_test must be in \[0, 1\)"),
        ({"fraction_test": -0.1}, r"fraction_test must be in \[0, 1\)"),
        ({"n_test": 0, "fraction_test": 0.1}, "needs n_test >= 1"),
        ({"processes": 0}, "processes must be at least 1"),
        ({"prefix": "a/b"}, "prefix must be a plain file name part"),
        ({"prefix": ""}, "prefix must be a plain file name part"),
    ],
)
def test_bad_arguments(corpus: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        _shard(corpus, tmp_path / "shards", **kwargs)
    assert not (tmp_path / "shards").exists()


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="does not exist"):
        _shard(tmp_path / "missing.txt", tmp_path / "shards")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(PipelineError, match="is empty"):
        _shard(empty, tmp_path / "shards")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n \n\n")
    with pytest.raises(PipelineError, match="no articles"):
        _shard(blank, tmp_path / "shards")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.txt", "empty.txt"]


@pytest.mark.parametrize("processes", [1, 2])
def test_no_partial_output_after_an_error(corpus, tmp_path, monkeypatch, processes) -> None:
    """An error after some shard text was flushed leaves neither shards nor a staging folder."""
    monkeypatch.setattr(data.sharding, "_FLUSH_BYTES", 10_000)
    calls = 0
    original = data.sharding._ShardSet.add

    def failing_add(self, document, n_sentences):
        nonlocal calls
        calls += 1
        if calls == 2000:
            raise OSError("disk full")
        original(self, document, n_sentences)

    monkeypatch.setattr(data.sharding._ShardSet, "add", failing_add)
    with pytest.raises(OSError, match="disk full"):
        _shard(corpus, tmp_path / "shards", processes=processes)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(corpus: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "shards"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("old")
    with pytest.raises(PipelineError, match="not empty"):
        _shard(corpus, out_dir)
    assert (out_dir / "old.txt").read_text() == "old"
    _shard(corpus, out_dir, overwrite=True)
    assert not (out_dir / "old.txt").exists() and (out_dir / "wiki_training_0.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]


def test_staged_output_dir_clears_a_killed_runs_leftovers(tmp_path: Path) -> None:
    leftover = tmp_path / ".out.0123abcd.tmp"  # named as fileio names its temporary folders
    leftover.mkdir()
    (leftover / "wiki_training_0.txt").write_text("half")
    with staged_output_dir(tmp_path / "out") as staging:
        assert not leftover.exists() and list(staging.iterdir()) == []
        (staging / "done.txt").write_text("done")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "done.txt").read_text() == "done"
