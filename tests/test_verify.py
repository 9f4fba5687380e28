"""data/verify.py on a good shard and on each kind of damage; the bundled sample corpus."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from data.make_sample_corpus import build
from data.verify import Expectations, verify_shards
from pretraining_instances import InstanceOptions, ShardJob, create_shard
from tests.support import CASED_VOCAB, REPO_ROOT, UNCASED_VOCAB

SAMPLE = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"


@pytest.fixture(scope="module")
def good_shard(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    text = "\n".join(SAMPLE.read_text(encoding="utf-8").splitlines()[:800]) + "\n"
    (folder / "in.txt").write_text(text, encoding="utf-8")
    options = InstanceOptions(max_seq_length=64, max_predictions_per_seq=10, dupe_factor=1)
    output = folder / "x_training_0.hdf5"
    create_shard(ShardJob((folder / "in.txt",), output, UNCASED_VOCAB, True, options))
    return output


def expect(**changes) -> Expectations:
    values = dict(max_seq_length=64, max_predictions_per_seq=10, vocab_file=UNCASED_VOCAB)
    return Expectations(**(values | changes))


def damaged(good, tmp_path, change) -> str:
    """Copy the good shard, let `change(file)` damage it, return the joined problems."""
    path = tmp_path / "damaged_training_0.hdf5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as shard:
        change(shard)
    report = verify_shards([path], expect())
    assert not report.ok
    return "\n".join(report.problems)


def test_a_good_shard_passes(good_shard):
    report = verify_shards(
        [good_shard.parent], expect(config_file=REPO_ROOT / "bert_configs/base.json")
    )
    assert report.ok, report.problems
    assert report.shards == 1 and report.instances > 100 and report.tokens > 5000


def replace(shard, key, array, dtype=None):
    del shard[key]
    shard.create_dataset(key, data=array, dtype=dtype or array.dtype)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda f: replace(f, "input_mask", f["input_mask"][()].astype("i4")),
            "input_mask has dtype int32, NVIDIA's layout is i1",
        ),
        (lambda f: f.__delitem__("segment_ids"), "missing dataset(s) segment_ids"),
        (
            lambda f: (f.__delitem__("segment_ids"), f.create_group("segment_ids")),
            "segment_ids is an HDF5 group, not a dataset",
        ),
        (lambda f: f.__setitem__("extra", np.zeros(3)), "unexpected dataset(s) extra"),
        (
            lambda f: replace(
                f, "masked_lm_positions", f["masked_lm_positions"][()] * (np.arange(10) != 5)
            ),  # a 0 in the middle of every row
            "masked positions after the first 0 are not 0",
        ),
        (
            lambda f: replace(
                f,
                "input_ids",
                np.where(f["input_ids"][()] == 1996, 40000, f["input_ids"][()]).astype("i4"),
            ),
            "token id outside the vocabulary",
        ),
        (
            lambda f: replace(f, "input_ids", np.roll(f["input_ids"][()], 1, axis=1)),
            "first token is not [CLS]",
        ),
        (
            lambda f: replace(
                f, "next_sentence_labels", np.full(len(f["next_sentence_labels"]), 2), "i1"
            ),
            "next_sentence_labels not 0/1",
        ),
        (
            lambda f: replace(f, "segment_ids", 1 - f["segment_ids"][()]),
            "segment ids are not 0 then 1",
        ),
    ],
)
def test_each_kind_of_damage_is_reported(good_shard, tmp_path, change, message):
    assert message in damaged(good_shard, tmp_path, change)


def test_unsorted_positions_and_masked_specials(good_shard, tmp_path):
    def swap_positions(f):
        positions = f["masked_lm_positions"][()]
        positions[0, :2] = positions[0, 1::-1]
        replace(f, "masked_lm_positions", positions)

    assert "not sorted and unique (1 instances, the first is instance 0)" in damaged(
        good_shard, tmp_path, swap_positions
    )

    def mask_cls(f):
        ids = f["masked_lm_ids"][()]
        ids[3, 0] = 101
        replace(f, "masked_lm_ids", ids)

    assert "[CLS] or [SEP] was masked" in damaged(good_shard, tmp_path, mask_cls)

    def negative_position(f):  # sorted, so only the bounds can catch it
        positions = f["masked_lm_positions"][()]
        positions[2, 0] = -1
        replace(f, "masked_lm_positions", positions)

    problems = damaged(good_shard, tmp_path, negative_position)
    assert "masked position outside the sequence (1 instances, the first is instance 2)" in problems


def test_settings_vocab_and_count_mismatches(good_shard, tmp_path):
    report = verify_shards([good_shard], expect(max_seq_length=128, max_predictions_per_seq=20))
    assert "sequence length 64, expected 128" in "\n".join(report.problems)
    assert "max predictions 10, expected 20" in "\n".join(report.problems)
    report = verify_shards([good_shard], expect(vocab_file=CASED_VOCAB))
    assert "made with another vocabulary" in report.problems[0]
    report = verify_shards(
        [good_shard],
        expect(config_file=REPO_ROOT / "bert_configs/base.json", vocab_file=CASED_VOCAB),
    )
    assert "28996 tokens, but" in report.problems[0]
    report = verify_shards([good_shard.parent], expect(expected_shards=256))
    assert "1 shards found, expected 256" in report.problems
    (tmp_path / "broken.hdf5").write_bytes(b"not hdf5")
    assert "not a readable HDF5 file" in verify_shards([tmp_path], expect()).problems[0]
    (tmp_path / "nothing").mkdir()
    assert "no .hdf5 shards" in verify_shards([tmp_path / "nothing"], expect()).problems[0]


@pytest.mark.slow
def test_command_line(good_shard):
    args = [
        sys.executable,
        "-m",
        "data.verify",
        str(good_shard),
        "--vocab_file",
        str(UNCASED_VOCAB),
    ]
    ok = subprocess.run(
        [*args, "--max_seq_length", "64"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "all checks passed" in ok.stdout
    bad = subprocess.run(
        [*args, "--max_seq_length", "128"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "sequence length 64, expected 128" in bad.stderr


def test_bundled_sample_corpus_is_rebuilt_exactly(shared_data, tmp_path):
    documents, sentences = build(shared_data / "text" / "wiki.valid.raw", tmp_path / "sample.txt")
    assert (tmp_path / "sample.txt").read_bytes() == SAMPLE.read_bytes()
    assert (documents, sentences) == (60, 8096)
    assert SAMPLE.stat().st_size < 1_500_000
    text = SAMPLE.read_text(encoding="utf-8")
    assert "@-@" not in text and "\n\n\n" not in text and text.count("\n\n") == 59
