"""data/bertPrep.py: NVIDIA's command line over the pipeline stages, on the tiny offline dump of
test_pipeline.py: each action, NVIDIA's folder names, and unsupported combinations refused in one
line with exit status 2 before any work."""

from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import pytest

from data import bertPrep, pipeline
from tests.support import REPO_ROOT, TOPICS, tiny_dump

SMALL = [
    "--n_training_shards",
    "2",
    "--n_test_shards",
    "1",
    "--fraction_test_set",
    "0.3",
    "--n_processes",
    "1",
]


@pytest.fixture
def work(tmp_path, monkeypatch):
    folder = tmp_path / "work"
    monkeypatch.setenv("BERT_PREP_WORKING_DIR", str(folder))
    monkeypatch.delenv("BOOKS_DIR", raising=False)
    return folder


def run(*argv: str) -> int:
    return bertPrep.main(list(argv))


def test_each_action_writes_nvidias_folders(tmp_path, work):
    dump = tmp_path / "enwiki-20240601-pages-articles.xml"
    tiny_dump(dump)
    assert run("--action", "download", "--dataset", "wikicorpus_en", "--dump", str(dump)) == 0
    # A download folder as NVIDIA's downloader left it: the dump unpacked as wikicorpus_en.xml.
    (work / "download" / "wikicorpus_en").mkdir(parents=True)
    shutil.copy(dump, work / "download" / "wikicorpus_en" / "wikicorpus_en.xml")
    argv = ["--action", "text_formatting", "--dataset", "wikicorpus_en", "--n_processes", "1"]
    assert run(*argv) == 0
    assert (work / "extracted" / "wikicorpus_en" / "AA" / "wiki_00").is_file()
    formatted = work / "formatted_one_article_per_line" / "wikicorpus_en_one_article_per_line.txt"
    assert len(formatted.read_text().splitlines()) == len(TOPICS)
    extracted_at = (work / "extracted" / "wikicorpus_en").stat().st_mtime_ns
    assert run(*argv, "--force", "--skip_wikiextractor", "1") == 0  # formats the old extraction
    assert (work / "extracted" / "wikicorpus_en").stat().st_mtime_ns == extracted_at

    assert run("--action", "sharding", "--dataset", "wikicorpus_en", *SMALL) == 0
    sharded = work / "sharded_training_shards_2_test_shards_1_fraction_0.3" / "wikicorpus_en"
    assert sorted(p.name for p in sharded.iterdir()) == [
        "wikicorpus_en_test_0.txt",
        "wikicorpus_en_training_0.txt",
        "wikicorpus_en_training_1.txt",
    ]

    # The file form, run from the repository root as NVIDIA's users call it.
    result = subprocess.run(
        [
            sys.executable,
            "data/bertPrep.py",
            "--action",
            "create_hdf5_files",
            "--dataset",
            "wikicorpus_en",
            *SMALL,
            "--max_seq_length",
            "32",
            "--max_predictions_per_seq",
            "5",
            "--dupe_factor",
            "2",
            "--vocab_file",
            "vocab/vocab",
            "--do_lower_case",
            "1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"Working Directory: {work}" in result.stdout
    hdf5 = work / (
        "hdf5_lower_case_1_seq_len_32_max_pred_5_masked_lm_prob_0.15_random_seed_12345_"
        "dupe_factor_2"
    )
    assert sorted(p.name for p in (hdf5 / "wikicorpus_en").iterdir()) == [
        "wikicorpus_en_test_0.hdf5",
        "wikicorpus_en_training_0.hdf5",
        "wikicorpus_en_training_1.hdf5",
    ]
    with h5py.File(hdf5 / "wikicorpus_en" / "wikicorpus_en_training_0.hdf5") as shard:
        assert shard["input_ids"].shape[1] == 32 and shard["masked_lm_positions"].shape[1] == 5


def test_bookscorpus_from_nvidias_download_folder(work):
    books = work / "download" / "bookscorpus"
    books.mkdir(parents=True)
    (books / "book_1.txt").write_text("Chapter one.\n\nIt was a dark night. The end came.\n")
    (books / "book_2.txt").write_text("A second book. It has two sentences.\n")
    assert run("--action", "text_formatting", "--dataset", "bookscorpus") == 0
    formatted = work / "formatted_one_article_per_line" / "bookscorpus_one_book_per_line.txt"
    assert formatted.read_text().splitlines() == [
        "Chapter one. It was a dark night. The end came.",
        "A second book. It has two sentences.",
    ]
    assert (
        run(
            "--action",
            "sharding",
            "--dataset",
            "bookscorpus",
            "--n_training_shards",
            "1",
            "--n_test_shards",
            "0",
            "--fraction_test_set",
            "0",
        )
        == 0
    )
    shard = work / "sharded_training_shards_1_test_shards_0_fraction_0.0" / "bookscorpus"
    assert (shard / "bookscorpus_training_0.txt").read_text() == (
        "Chapter one.\nIt was a dark night.\nThe end came.\n\n"
        "A second book.\nIt has two sentences.\n\n"
    )


def test_input_files_are_a_comma_separated_list(tmp_path, work):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("First article. It is short.\n")
    second.write_text("Second article. Also short.\n")
    argv = [
        "--action",
        "sharding",
        "--dataset",
        "wikicorpus_en",
        "--n_training_shards",
        "1",
        "--n_test_shards",
        "0",
        "--fraction_test_set",
        "0",
    ]
    assert run(*argv, "--input_files", f"{first},{second}") == 0
    shard = work / "sharded_training_shards_1_test_shards_0_fraction_0.0" / "wikicorpus_en"
    assert (shard / "wikicorpus_en_training_0.txt").read_text() == (
        "First article.\nIt is short.\n\nSecond article.\nAlso short.\n\n"
    )


def test_nvidias_defaults():
    args = bertPrep.parse_args(["--action", "sharding", "--dataset", "wikicorpus_en"])
    assert (args.n_training_shards, args.n_test_shards, args.fraction_test_set) == (256, 256, 0.1)
    assert (args.segmentation_method, args.n_processes, args.random_seed) == ("nltk", 4, 12345)
    assert (args.dupe_factor, args.masked_lm_prob, args.max_seq_length) == (5, 0.15, 512)
    assert (args.max_predictions_per_seq, args.do_lower_case, args.skip_wikiextractor) == (20, 1, 0)
    assert args.vocab_file is None and args.input_files is None
    settings = bertPrep.settings_from(args, "wikicorpus_en", ())
    assert settings.vocab_file == REPO_ROOT / "vocab" / "vocab"
    cased = bertPrep.parse_args(
        ["--action", "sharding", "--dataset", "wikicorpus_en", "--do_lower_case", "0"]
    )
    assert bertPrep.settings_from(cased, "wikicorpus_en", ()).vocab_file.name == "vocab_cased"
    plan = bertPrep.plan(bertPrep.parse_args(["--action", "download", "--dataset", "all"]))
    assert plan[1] == ("wikicorpus_en", "google_pretrained_weights", "squad", "mrpc", "sst-2")


def test_glue_task_downloads_fetch_only_that_task(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "data.pipeline.download_dataset",
        lambda name, folder, **options: calls.append((name, options)) or [],
    )
    settings = pipeline.Settings(working_dir=tmp_path, downloads=("mrpc", "sst-2"))
    pipeline.stage_download(settings)
    assert calls == [("glue", {"tasks": ["MRPC"]}), ("glue", {"tasks": ["SST-2"]})]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--action", "create_tfrecord_files", "--dataset", "wikicorpus_en"],
            "create_tfrecord_files is not supported",
        ),
        (
            ["--action", "text_formatting", "--dataset", "wikicorpus_zh"],
            "wikicorpus_zh is not supported",
        ),
        (
            ["--action", "download", "--dataset", "nvidia_pretrained_weights"],
            "nvidia_pretrained_weights is not implemented",
        ),
        (
            ["--action", "download", "--dataset", "bookscorpus"],
            "BookCorpus can no longer be downloaded",
        ),
        (
            ["--action", "sharding", "--dataset", "squad"],
            "--action sharding works on --dataset wikicorpus_en, bookscorpus, books_wiki_en_corpus",
        ),
        (
            ["--action", "shard", "--dataset", "wikicorpus_en"],
            "argument --action: invalid choice: 'shard'",
        ),
        (["--action", "sharding", "--dataset", "wiki"], "argument --dataset: invalid choice"),
        (
            ["--action", "sharding", "--dataset", "wikicorpus_en", "--do_lower_case", "2"],
            "argument --do_lower_case: invalid choice: 2",
        ),
    ],
)
def test_unsupported_combinations_exit_2_in_one_line(work, capsys, argv, message):
    try:
        code = run(*argv)
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith("bertPrep.py: error: ")
    assert not work.exists()  # refused before any work


def test_module_form_refuses_in_one_line(work):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "data.bertPrep",
            "--action",
            "create_tfrecord_files",
            "--dataset",
            "wikicorpus_en",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "bertPrep.py: error: --action create_tfrecord_files is not supported (TFRecords are "
        "TensorFlow's format; NVIDIA's PyTorch script asserted too): use --action "
        "create_hdf5_files"
    ]


@pytest.mark.parametrize("corpus", ["wiki_only", "wiki_books"])
def test_create_datasets_from_start_runs_nvidias_steps(tmp_path, corpus):
    """The script's bertPrep.py calls are NVIDIA 21.11's, minus the BookCorpus download."""
    log, fake = tmp_path / "calls.txt", tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    work = tmp_path / "work"
    (work / "download" / "bookscorpus").mkdir(parents=True)
    (work / "download" / "bookscorpus" / "book.txt").write_text("A book.\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHON": str(fake),
        "BERT_PREP_WORKING_DIR": str(work),
        "N_PROCESSES": "3",
    }
    result = subprocess.run(
        ["bash", "data/create_datasets_from_start.sh", corpus],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    dataset = "wikicorpus_en" if corpus == "wiki_only" else "books_wiki_en_corpus"
    vocab = f"{work}/download/google_pretrained_weights/uncased_L-24_H-1024_A-16/vocab.txt"
    expected = [
        "--action download --dataset wikicorpus_en",
        "--action download --dataset google_pretrained_weights",
        "--action download --dataset squad",
        "--action download --dataset mrpc",
        "--action download --dataset sst-2",
        *(["--action text_formatting --dataset bookscorpus"] if corpus == "wiki_books" else []),
        "--action text_formatting --dataset wikicorpus_en",
        f"--action sharding --dataset {dataset}",
        f"--action create_hdf5_files --dataset {dataset} --max_seq_length 128 "
        f"--max_predictions_per_seq 20 --vocab_file {vocab} --do_lower_case 1",
        f"--action create_hdf5_files --dataset {dataset} --max_seq_length 512 "
        f"--max_predictions_per_seq 80 --vocab_file {vocab} --do_lower_case 1",
    ]
    assert log.read_text().splitlines() == [
        f"data/bertPrep.py --n_processes 3 {call}" for call in expected
    ]


def test_wiki_books_without_books_stops_before_any_download(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHON": "false", "BERT_PREP_WORKING_DIR": str(tmp_path)}
    result = subprocess.run(
        ["bash", "data/create_datasets_from_start.sh", "wiki_books"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "wiki_books needs BookCorpus as .txt books in" in result.stderr
