"""data/pipeline.py: the stages end to end on a tiny offline Wikipedia dump, idempotence through
the completion markers, and a failed or empty stage stopping the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import pytest

from data import pipeline
from data.pipeline import PipelineError, Settings, run_pipeline
from tests.support import REPO_ROOT, TOPICS, UNCASED_VOCAB, launcher_env, tiny_dump


def small_settings(tmp_path, **changes) -> Settings:
    dump = tmp_path / "enwiki-20240601-pages-articles.xml"
    if not dump.exists():
        tiny_dump(dump)
    values = dict(
        working_dir=tmp_path / "work",
        dump=dump,
        n_training_shards=2,
        n_test_shards=1,
        fraction_test_set=0.3,
        n_processes=1,
        max_seq_length=32,
        max_predictions_per_seq=5,
        dupe_factor=2,
        vocab_file=UNCASED_VOCAB,
    )
    return Settings(**(values | changes))


def test_all_stages_offline_end_to_end(tmp_path):
    settings = small_settings(tmp_path)
    run_pipeline(settings, list(pipeline.STAGES))
    work = settings.working_dir
    articles = settings.formatted_file("wikicorpus_en").read_text().splitlines()
    assert len(articles) == len(TOPICS) and "Lobster is the subject" in articles[0]
    sharded = work / "sharded_training_shards_2_test_shards_1_fraction_0.3" / "wikicorpus_en"
    assert sorted(p.name for p in sharded.iterdir()) == [
        "wikicorpus_en_test_0.txt",
        "wikicorpus_en_training_0.txt",
        "wikicorpus_en_training_1.txt",
    ]
    hdf5 = (
        work
        / (
            "hdf5_lower_case_1_seq_len_32_max_pred_5_masked_lm_prob_0.15_random_seed_12345_"
            "dupe_factor_2"
        )
        / "wikicorpus_en"
    )  # NVIDIA's folder names, which the launchers expect
    shards = sorted(p.name for p in hdf5.iterdir())
    assert shards == [
        name.replace(".txt", ".hdf5") for name in sorted(p.name for p in sharded.iterdir())
    ]
    with h5py.File(hdf5 / "wikicorpus_en_training_0.hdf5") as shard:
        assert shard["input_ids"].shape[1] == 32 and len(shard["input_ids"]) > 0
    markers = sorted(p.name.split("-")[0] for p in (work / ".stages").iterdir())
    assert markers == sorted(pipeline.STAGES)
    verify = json.loads(next((work / ".stages").glob("verify-*.json")).read_text())
    assert verify["summary"]["shards"] == 3 and verify["summary"]["instances"] > 0


def test_stages_are_idempotent_and_settings_aware(tmp_path, monkeypatch):
    settings = small_settings(tmp_path)
    run_pipeline(settings, ["download", "extract", "format", "shard", "hdf5"])
    hdf5_dir = settings.hdf5_dir
    mtimes = {p: p.stat().st_mtime_ns for p in hdf5_dir.iterdir()}
    calls = []
    for stage, (function, keys) in list(pipeline.STAGE_TABLE.items()):

        def spy(s, function=function, stage=stage):
            calls.append(stage)
            return function(s)

        monkeypatch.setitem(pipeline.STAGE_TABLE, stage, (spy, keys))
    run_pipeline(settings, ["download", "extract", "format", "shard", "hdf5"])
    assert calls == []  # everything already done with these settings
    assert {p: p.stat().st_mtime_ns for p in hdf5_dir.iterdir()} == mtimes
    run_pipeline(small_settings(tmp_path, dupe_factor=1), ["shard", "hdf5"])
    assert calls == ["hdf5"]  # a new instance setting redoes only the HDF5 stage, elsewhere
    assert small_settings(tmp_path, dupe_factor=1).hdf5_dir != hdf5_dir
    run_pipeline(settings, ["shard"], force=True)
    assert calls == ["hdf5", "shard"]


def test_an_empty_stage_stops_the_pipeline_without_a_marker(tmp_path):
    settings = small_settings(tmp_path)
    settings.sharded_dir.mkdir(parents=True)
    (settings.sharded_dir / "wikicorpus_en_training_0.txt").write_text("")
    with pytest.raises(PipelineError, match=r"hdf5: no text shards in .*wikicorpus_en"):
        run_pipeline(settings, ["hdf5", "verify"])
    assert not (settings.working_dir / ".stages").exists()


def test_whole_word_masking_has_its_own_folder_and_marker(tmp_path):
    def parsed(*flags: str) -> Settings:
        return pipeline.settings_from(pipeline.parse_args(["hdf5", *flags]))[0]

    assert not parsed().do_whole_word_mask and parsed("--do_whole_word_mask").do_whole_word_mask
    plain = small_settings(tmp_path)
    whole = small_settings(tmp_path, do_whole_word_mask=True)
    assert whole.hdf5_dir.parent.name == f"{plain.hdf5_dir.parent.name}_whole_word_mask"
    sample = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"
    plain.sharded_dir.mkdir(parents=True)
    text = "\n".join(sample.read_text(encoding="utf-8").splitlines()[:300]) + "\n"
    (plain.sharded_dir / "wikicorpus_en_training_0.txt").write_text(text, encoding="utf-8")
    for settings in (plain, whole):
        run_pipeline(settings, ["hdf5"])
        with h5py.File(settings.hdf5_dir / "wikicorpus_en_training_0.hdf5") as shard:
            assert bool(shard.attrs["do_whole_word_mask"]) is settings.do_whole_word_mask
    markers = [json.loads(p.read_text()) for p in (plain.working_dir / ".stages").iterdir()]
    # Off, the setting is left out of the marker, so markers written before it still match.
    flags = sorted(str(m["params"].get("do_whole_word_mask", "absent")) for m in markers)
    assert flags == ["True", "absent"]


def test_a_dump_without_articles_fails_at_extract(tmp_path):
    bad = tmp_path / "enwiki-bad.xml"
    bad.write_text("<mediawiki></mediawiki>\n")
    settings = small_settings(tmp_path, dump=bad)
    with pytest.raises(PipelineError, match="extract"):
        run_pipeline(settings, ["extract", "format"])
    assert not settings.formatted_file("wikicorpus_en").exists()


def test_command_line_errors(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data.pipeline", "hdf5", "--working_dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("data.pipeline: error: hdf5: no text")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "data.pipeline",
            "format",
            "--dataset",
            "books_wiki_en_corpus",
            "--working_dir",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    result = subprocess.run(
        ["bash", "data/create_datasets_from_start.sh", "wiki_and_more"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=launcher_env(),
    )
    assert result.returncode == 2 and "expected wiki_only or wiki_books" in result.stderr


def test_wiki_books_needs_a_local_bookcorpus(tmp_path):
    settings = small_settings(tmp_path, dataset="books_wiki_en_corpus")
    with pytest.raises(PipelineError, match="needs a local BookCorpus copy"):
        run_pipeline(settings, ["extract", "format"])
    books = tmp_path / "books"
    books.mkdir()
    (books / "book_1.txt").write_text("Chapter one .\nIt was a dark night .\n\nThe end .\n")
    settings = small_settings(tmp_path, dataset="books_wiki_en_corpus", books_dir=books)
    run_pipeline(settings, ["format", "shard"])
    assert settings.formatted_file("bookscorpus").read_text() == (
        "Chapter one . It was a dark night . The end .\n"
    )
    assert settings.sharded_dir.name == "books_wiki_en_corpus"
    text = "".join(p.read_text() for p in settings.sharded_dir.iterdir())
    assert "It was a dark night ." in text and "The lobster was first described" in text
