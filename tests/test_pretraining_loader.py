"""pretraining_data.PretrainingDataLoader: every sample once per epoch, disjoint ranks (also when
ranks outnumber files), exact resume, interleaved sharding, dynamic masking, bad shards."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from fileio import sha256_file
from pretraining_data import (
    DynamicMasking,
    PretrainingDataLoader,
    PretrainingShard,
    ShardChecks,
    ShardError,
    remask,
    training_files,
)
from shard_format import VOCAB_SHA256
from tests.support import (
    CASED_VOCAB,
    REPO_ROOT,
    TINY_CONFIG,
    UNCASED_VOCAB,
    whole_words,
    write_random_shards,
    write_shard_file,
)
from tokenization import BertTokenizer, load_vocab


def write_shard(path, rows: int, seq: int = 16, pred: int = 3, first_id: int = 0) -> None:
    """A valid NVIDIA-layout shard whose input_ids[:, 1] numbers the instances uniquely."""
    input_ids = np.zeros((rows, seq), "i4")
    input_ids[:, 0] = 101
    input_ids[:, 1] = np.arange(first_id, first_id + rows) + 1000
    input_ids[:, 2:6] = 2000
    input_ids[:, 6] = 102
    positions = np.zeros((rows, pred), "i4")
    positions[:, 0] = 2
    ids = np.zeros((rows, pred), "i4")
    ids[:, 0] = 2000
    arrays = {
        "input_ids": input_ids,
        "input_mask": input_ids != 0,
        "segment_ids": np.zeros((rows, seq)),
        "masked_lm_positions": positions,
        "masked_lm_ids": ids,
        "next_sentence_labels": np.zeros(rows),
    }
    write_shard_file(path, arrays)


@pytest.fixture
def shards(tmp_path):
    sizes = [37, 50, 23]
    start = 0
    for i, rows in enumerate(sizes):
        write_shard(tmp_path / f"part_training_{i}.hdf5", rows, first_id=start)
        start += rows
    (tmp_path / "part_test_0.hdf5").write_bytes(b"ignored: not a training file")
    return training_files(tmp_path), sum(sizes)


def sample_ids(batch) -> list[int]:
    return (batch[0][:, 1] - 1000).tolist()


def take_epoch(loader: PretrainingDataLoader) -> list[int]:
    """The samples one rank reads in its first epoch."""
    seen = []
    for batch in loader:
        if loader.epoch > 0:
            break
        seen.extend(sample_ids(batch))
    return seen


@pytest.mark.parametrize("world_size", [1, 2, 3, 5, 8])
def test_every_sample_once_per_epoch_on_disjoint_ranks(shards, world_size):
    files, total = shards
    per_rank = [
        take_epoch(
            PretrainingDataLoader(files, 4, rank, world_size, seed=3, prefetch=rank % 2 == 0)
        )
        for rank in range(world_size)
    ]
    flat = [s for samples in per_rank for s in samples]
    assert sorted(flat) == list(range(total))  # nothing dropped, nothing shared
    assert all(per_rank)  # every rank has data, also when ranks outnumber the 3 files


def test_epochs_reshuffle_and_are_deterministic(shards):
    files, _ = shards
    first = PretrainingDataLoader(files, 8, seed=1)
    stream = [sample_ids(b) for b in itertools.islice(iter(first), 30)]
    again = [
        sample_ids(b) for b in itertools.islice(iter(PretrainingDataLoader(files, 8, seed=1)), 30)
    ]
    assert stream == again
    other = [
        sample_ids(b) for b in itertools.islice(iter(PretrainingDataLoader(files, 8, seed=2)), 30)
    ]
    assert stream != other
    assert first.epoch >= 1  # 30 batches of 8 cover more than the 110 samples


@pytest.mark.parametrize(
    ("sharding", "bins"), [("files", None), ("interleaved", None), ("files", 4)]
)
def test_resume_continues_at_the_exact_next_sample(shards, sharding, bins):
    files, _ = shards
    reference = PretrainingDataLoader(
        files, 6, rank=1, world_size=2, seed=5, sharding=sharding, bin_size=bins
    )
    expected = [sample_ids(b) for b in itertools.islice(iter(reference), 40)]
    for stop in (1, 7, 13, 25):
        loader = PretrainingDataLoader(
            files, 6, rank=1, world_size=2, seed=5, sharding=sharding, bin_size=bins
        )
        stream = iter(loader)
        head = [sample_ids(next(stream)) for _ in range(stop)]
        position = loader.state()
        resumed = PretrainingDataLoader(
            files,
            6,
            rank=1,
            world_size=2,
            seed=5,
            sharding=sharding,
            position=position,
            bin_size=bins,
        )
        tail = [sample_ids(b) for b in itertools.islice(iter(resumed), 40 - stop)]
        assert head + tail == expected


def test_length_bins_keep_every_sample_and_group_lengths(tmp_path):
    lengths = np.random.default_rng(0).integers(8, 129, 300)
    write_shard(tmp_path / "a_training_0.hdf5", 300, seq=128)
    with h5py.File(tmp_path / "a_training_0.hdf5", "r+") as f:
        mask = (np.arange(128)[None, :] < lengths[:, None]).astype("i1")
        f["input_mask"][...] = mask
    loader = PretrainingDataLoader(training_files(tmp_path), 8, seed=1, bin_size=32)
    seen = []
    for batch in loader:
        if loader.epoch > 0:
            break
        real = batch[2].sum(1)
        assert len(set(((real - 1) // 32).tolist())) == 1  # one bin per batch
        seen.extend(sample_ids(batch))
    assert sorted(seen) == list(range(300))
    with pytest.raises(ValueError, match="--bin_size must be positive"):
        PretrainingDataLoader(training_files(tmp_path), 8, bin_size=0)


def test_interleaved_ranks_split_one_stream(shards):
    files, _ = shards
    single = [
        sample_ids(b)
        for b in itertools.islice(
            iter(PretrainingDataLoader(files, 4, seed=9, sharding="interleaved")), 20
        )
    ]
    ranks = [
        [
            sample_ids(b)
            for b in itertools.islice(
                iter(PretrainingDataLoader(files, 4, r, 2, 9, sharding="interleaved")), 10
            )
        ]
        for r in range(2)
    ]
    assert single[0::2] == ranks[0] and single[1::2] == ranks[1]


def test_dynamic_masking_statistics_and_determinism():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 30000, (64, 128), generator=generator)
    input_ids[:, 0], input_ids[:, -1] = 101, 102
    mask = torch.ones_like(input_ids)
    mask[:, 100:] = 0
    input_ids[:, 100:] = 0
    labels = torch.full_like(input_ids, -1)
    labels[:, 5] = input_ids[:, 5]
    input_ids[:, 5] = 103  # a static mask that must be undone
    batch = [
        input_ids,
        torch.zeros_like(input_ids),
        mask,
        labels,
        torch.zeros(64, dtype=torch.long),
    ]
    masking = DynamicMasking(vocab_size=30522, mask_id=103, special_ids=(101, 102, 0))
    new_ids, _, _, new_labels, _ = remask(batch, masking, np.random.default_rng(1))
    chosen = new_labels >= 0
    assert abs(chosen.float().sum().item() / (64 * 98) - 0.15) < 0.02
    assert not chosen[:, 0].any() and not chosen[:, 100:].any()  # no specials, no padding
    original = torch.where(labels >= 0, labels, input_ids)
    assert torch.equal(new_labels[chosen], original[chosen])
    assert torch.equal(new_ids[~chosen], original[~chosen])  # the static [MASK] was undone
    masked = (new_ids[chosen] == 103).float().mean().item()
    assert abs(masked - 0.8) < 0.03
    again = remask(batch, masking, np.random.default_rng(1))
    assert torch.equal(again[0], new_ids) and torch.equal(again[3], new_labels)


def text_batch(rows: int = 64, seq: int = 128) -> list[torch.Tensor]:
    """A batch of real text (the bundled sample): [CLS] A [SEP] B [SEP] rows of mixed lengths,
    zero-padded, with a few static masks that re-masking must undo."""
    tokenizer = BertTokenizer(UNCASED_VOCAB)
    text = (REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt").read_text()
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text[:100_000]))
    rng = np.random.default_rng(0)
    input_ids = np.zeros((rows, seq), np.int64)
    for row in range(rows):
        length = int(rng.integers(seq // 2, seq + 1))
        start = int(rng.integers(0, len(ids) - length))
        input_ids[row, :length] = ids[start : start + length]
        input_ids[row, [0, length // 2, length - 1]] = [101, 102, 102]
    mask = (input_ids != 0).astype(np.int64)
    labels = np.full_like(input_ids, -1)
    labels[:, 3] = input_ids[:, 3]
    input_ids[:, 3] = 103
    batch = [input_ids, np.zeros_like(input_ids), mask, labels, np.zeros(rows, np.int64)]
    return [torch.from_numpy(array) for array in batch]


def test_whole_word_dynamic_masking_masks_words_together():
    batch = text_batch()
    masking = DynamicMasking.from_vocab_file(UNCASED_VOCAB, whole_word=True)
    new_ids, _, _, new_labels, _ = remask(batch, masking, np.random.default_rng(1))
    original = torch.where(batch[3] >= 0, batch[3], batch[0])
    tokens = list(load_vocab(UNCASED_VOCAB))
    draws = np.random.default_rng(1).random(original.shape)  # remask's first draw: one per token
    chosen = new_labels >= 0
    words = chosen_words = pieces = 0
    for row in range(len(original)):
        real = int(batch[2][row].sum())
        for word in whole_words([tokens[i] for i in original[row, :real]]):
            picked = chosen[row, word]
            assert picked.all() or not picked.any()  # all pieces of a word, or none
            assert bool(picked[0]) == (draws[row, word[0]] < 0.15)  # the word's one draw
            words += 1
            chosen_words += int(picked[0])
            pieces += int(picked[0]) * (len(word) > 1)
    assert pieces > 50  # words of several pieces were masked
    assert abs(chosen_words / words - 0.15) < 0.02
    real_tokens = (batch[2] == 1) & ~torch.isin(original, torch.tensor([101, 102]))
    assert not chosen[~real_tokens].any()  # never [CLS], [SEP] or padding
    assert abs(chosen.sum().item() / real_tokens.sum().item() - 0.15) < 0.02
    assert torch.equal(new_labels[chosen], original[chosen])
    assert torch.equal(new_ids[~chosen], original[~chosen])  # the static masks were undone
    assert abs((new_ids[chosen] == 103).float().mean().item() - 0.8) < 0.04  # drawn per piece
    again = remask(batch, masking, np.random.default_rng(1))
    assert torch.equal(again[0], new_ids) and torch.equal(again[3], new_labels)
    other = remask(batch, masking, np.random.default_rng(2))
    assert not torch.equal(other[3], new_labels)


def test_whole_word_dynamic_masking_joins_a_piece_across_a_separator():
    vocab = load_vocab(UNCASED_VOCAB)
    rows = [
        ["[CLS]", "un", "##able", "[SEP]", "##s", "dog", "[SEP]", "[PAD]"],
        ["[CLS]", "##s", "dog", "[SEP]", "cat", "##s", "[SEP]", "[PAD]"],  # "##s" first: a word
    ]
    input_ids = torch.tensor([[vocab[t] for t in row] for row in rows])
    mask = (input_ids != 0).long()
    batch = [input_ids, torch.zeros_like(input_ids), mask, torch.full_like(input_ids, -1)]
    batch.append(torch.zeros(2, dtype=torch.long))
    masking = DynamicMasking.from_vocab_file(UNCASED_VOCAB, whole_word=True)
    masking = dataclasses.replace(masking, probability=0.5)
    seen = set()
    for seed in range(64):
        chosen = remask(batch, masking, np.random.default_rng(seed))[3] >= 0
        first, second = chosen[0].tolist(), chosen[1].tolist()
        assert first[1] == first[2] == first[4] and second[4] == second[5]
        assert not any(first[i] or second[i] for i in (0, 3, 6, 7))
        seen.add((second[1], second[2]))
    assert len(seen) == 4  # "##s" after [CLS] and "dog" are drawn apart


def test_bad_shards_are_named(tmp_path):
    write_shard(tmp_path / "a_training_0.hdf5", 10, seq=16)
    with pytest.raises(
        ShardError, match=r"a_training_0\.hdf5: sequences of 16 tokens, but --max_seq_length is 128"
    ):
        PretrainingDataLoader(training_files(tmp_path), 4, max_seq_length=128)
    with pytest.raises(
        ShardError, match="3 masked positions per sequence, but --max_predictions_per_seq is 20"
    ):
        PretrainingDataLoader(training_files(tmp_path), 4, max_predictions_per_seq=20)
    write_shard(tmp_path / "a_training_1.hdf5", 10, seq=32)
    with pytest.raises(ShardError, match="phase-1 and phase-2 shards mixed"):
        PretrainingDataLoader(training_files(tmp_path), 4)
    (tmp_path / "a_training_1.hdf5").unlink()
    good = (tmp_path / "a_training_0.hdf5").read_bytes()
    (tmp_path / "a_training_2.hdf5").write_bytes(good[: len(good) // 3])
    with pytest.raises(ShardError, match=r"a_training_2\.hdf5: not a readable HDF5 shard"):
        PretrainingDataLoader(training_files(tmp_path), 4)
    with pytest.raises(FileNotFoundError, match=r"--input_dir .*nowhere: no such folder"):
        training_files(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match="no file with 'training' in its name"):
        training_files(tmp_path / "empty")


def test_loader_speed_is_reported():
    """Not a timed assertion: prints samples/s at the phase-1 shape for the closing note."""
    result = subprocess.run(
        [sys.executable, "-c", "import benchmarks.loader_speed as b; b.main(['--rows', '4096'])"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "samples/s" in result.stdout


# --- Content checked at load, vocabulary compared, every rank served ----------------------------


def edit_shard(path, key: str, row: int, column: int | None, value: int) -> None:
    with h5py.File(path, "r+") as f:
        data = f[key][()]
        if column is None:
            data[row] = value
        else:
            data[row, column] = value
        f[key][...] = data


# (dataset, row, column, value, message). Rows hold [CLS] 6 tokens [SEP] of 16, position 2 masked.
BAD_CONTENT = [
    ("input_ids", 5, 3, 30522, "30522 is outside the vocabulary of 30522 ids"),
    ("input_ids", 4, 3, -7, "-7 is outside the vocabulary"),
    ("input_mask", 3, 2, 2, "2 is not 0 or 1"),
    ("segment_ids", 6, 4, 2, "2 is not 0 or 1"),
    ("segment_ids", 1, 4, -1, "-1 is not 0 or 1"),
    ("next_sentence_labels", 8, None, 3, "3 is not 0 or 1"),
    ("masked_lm_positions", 2, 1, -1, "-1 is not a position in a sequence of 16 tokens"),
    ("masked_lm_positions", 7, 0, 16, "16 is not a position in a sequence of 16 tokens"),
    ("masked_lm_positions", 9, 1, 12, "position 12 is past the row's real tokens"),
    ("masked_lm_ids", 3, 0, 40000, "40000 is outside the vocabulary of 30522 ids"),
    ("masked_lm_ids", 3, 0, -1, "-1 is outside the vocabulary"),
]


@pytest.mark.parametrize(("key", "row", "column", "value", "message"), BAD_CONTENT)
def test_bad_content_is_refused_at_load_naming_file_dataset_and_row(
    tmp_path, key, row, column, value, message
):
    path = tmp_path / "x_training_0.hdf5"
    write_shard(path, 10)
    checks = ShardChecks(vocab_size=30522)
    PretrainingShard(path, checks)  # the good shard loads
    edit_shard(path, key, row, column, value)
    expected = rf"{path}: dataset {key}, row {row}: .*{re.escape(message)}"
    with pytest.raises(ShardError, match=expected):
        PretrainingShard(path, checks)
    loader = PretrainingDataLoader([path], 4, checks=checks, prefetch=False)
    with pytest.raises(ShardError, match=expected):  # before the first batch of that shard
        next(iter(loader))


def padding_row(f):
    for key in ("input_ids", "input_mask", "segment_ids"):
        data = f[key][()]
        data[4] = 0
        f[key][...] = data
    positions = f["masked_lm_positions"][()]
    positions[4] = 0
    f["masked_lm_positions"][...] = positions


def hole_in_mask(f):
    mask = f["input_mask"][()]
    mask[6, 3] = 0  # ids stay: a token the model would not see, then more real tokens
    f["input_mask"][...] = mask


def token_on_padding(f):
    ids = f["input_ids"][()]
    ids[2, 12] = 2000  # past [SEP], where input_mask is 0
    f["input_ids"][...] = ids


def repeated_position(f):
    positions, ids = f["masked_lm_positions"][()], f["masked_lm_ids"][()]
    positions[8, :2], ids[8, :2] = 2, (2000, 2001)  # two labels for one token
    f["masked_lm_positions"][...], f["masked_lm_ids"][...] = positions, ids


def repeated_unsorted_position(f):
    positions = f["masked_lm_positions"][()]
    positions[1] = (3, 2, 3)
    f["masked_lm_positions"][...] = positions


# Impossible contents beyond the value bounds above: (damage, first bad row, message).
IMPOSSIBLE_CONTENT = [
    (padding_row, 4, "holds no real token (input_mask all 0)"),
    (hole_in_mask, 6, "input_mask is not ones then zeros"),
    (token_on_padding, 2, "token ids on the padding are not 0"),
    (repeated_position, 8, "a masked position is repeated"),
    (repeated_unsorted_position, 1, "a masked position is repeated"),
]


@pytest.mark.parametrize(("damage", "row", "message"), IMPOSSIBLE_CONTENT)
def test_impossible_rows_are_refused_by_every_reader_naming_file_and_row(
    tmp_path, damage, row, message
):
    from data.verify import Expectations, verify_shards
    from pretraining_eval import HeldOutSet

    path = tmp_path / "x_training_0.hdf5"
    write_shard(path, 10)
    with h5py.File(path, "r+") as f:
        damage(f)
    expected = rf"^{re.escape(str(path))}: row {row}: {re.escape(message)}$"
    for load in (
        lambda: PretrainingShard(path, ShardChecks(vocab_size=30522)),
        lambda: next(iter(PretrainingDataLoader([path], 4, prefetch=False))),
        lambda: HeldOutSet.load(tmp_path, 10, 4),
    ):
        with pytest.raises(ShardError, match=expected):
            load()
    problems = verify_shards([path], Expectations()).problems
    assert any(p.startswith(f"{path}: {message} (") for p in problems), problems


def test_unsorted_unique_positions_load_as_nvidias_loader_reads_them(tmp_path):
    path = tmp_path / "x_training_0.hdf5"
    write_shard(path, 10)
    edit_shard(path, "masked_lm_positions", 3, 1, 1)  # 2 then 1: out of order, not repeated
    assert len(PretrainingShard(path)) == 10


def external_link(folder, f):
    with h5py.File(folder / "other.h5", "w") as other:
        other["ids"] = f["input_ids"][()]
    del f["input_ids"]
    f["input_ids"] = h5py.ExternalLink(str(folder / "other.h5"), "ids")


def virtual_dataset(folder, f):
    external_link(folder, f)
    del f["input_ids"]
    layout = h5py.VirtualLayout(shape=(10, 16), dtype="i4")
    layout[:] = h5py.VirtualSource(str(folder / "other.h5"), "ids", shape=(10, 16))
    f.create_virtual_dataset("input_ids", layout)


def external_storage(folder, f):
    labels = f["next_sentence_labels"][()]
    (folder / "raw.bin").write_bytes(labels.tobytes())
    del f["next_sentence_labels"]
    f.create_dataset(
        "next_sentence_labels", (10,), "i1", external=[(str(folder / "raw.bin"), 0, 10)]
    )


@pytest.mark.parametrize("elsewhere", [external_link, virtual_dataset, external_storage])
def test_datasets_stored_in_other_files_are_refused_unread(tmp_path, elsewhere):
    from data.verify import Expectations, verify_shards

    path = tmp_path / "x_training_0.hdf5"
    write_shard(path, 10)
    with h5py.File(path, "r+") as f:
        elsewhere(tmp_path, f)
    with h5py.File(path, "r") as f:  # the file is a valid container that h5py reads
        assert f["input_ids"].shape == (10, 16)
    for load in (lambda: PretrainingShard(path), lambda: PretrainingDataLoader([path], 4)):
        with pytest.raises(ShardError, match=rf"^{re.escape(str(path))}: \S+ is an? .*other"):
            load()
    (problem,) = verify_shards([path], Expectations()).problems
    assert problem.startswith(f"{path}: ") and "not followed" in problem


def test_without_a_vocabulary_only_negative_ids_are_refused(tmp_path):
    path = tmp_path / "x_training_0.hdf5"
    write_shard(path, 10)
    edit_shard(path, "input_ids", 2, 3, 10**6)
    edit_shard(path, "masked_lm_positions", 2, 1, 0)  # after the first 0: ignored, as NVIDIA's
    edit_shard(path, "masked_lm_positions", 2, 2, -5)
    assert len(PretrainingShard(path)) == 10
    edit_shard(path, "input_ids", 2, 3, -1)
    with pytest.raises(ShardError, match="row 2: -1 is a negative token id"):
        PretrainingShard(path)


def test_datasets_of_the_wrong_kind_are_named(tmp_path):
    path = tmp_path / "x_training_0.hdf5"
    write_shard(path, 4)
    with h5py.File(path, "r+") as f:
        del f["next_sentence_labels"]
        f["next_sentence_labels"] = np.zeros((4, 2), "i1")
    with pytest.raises(ShardError, match=r"next_sentence_labels has 2 dimension\(s\), expected 1"):
        PretrainingDataLoader([path], 2)
    with h5py.File(path, "r+") as f:
        del f["next_sentence_labels"]
        f.create_group("next_sentence_labels")
    for load in (lambda: PretrainingDataLoader([path], 2), lambda: PretrainingShard(path)):
        with pytest.raises(ShardError, match="next_sentence_labels is an HDF5 group, not a data"):
            load()


def test_checks_for_a_run_come_from_the_vocabulary_and_the_model(tmp_path):
    checks = ShardChecks.for_run(UNCASED_VOCAB, 30522)
    assert (checks.vocab_size, checks.unk_id) == (30522, 100)
    assert checks.vocab_sha256 == sha256_file(UNCASED_VOCAB)
    assert ShardChecks.for_run(CASED_VOCAB, 30522).vocab_size == 28996
    assert ShardChecks.for_run(None, 30528) == ShardChecks(vocab_size=30528)
    with pytest.raises(ShardError, match=r"30522 tokens, more than the model's vocab_size 1000"):
        ShardChecks.for_run(UNCASED_VOCAB, 1000)


def test_a_shard_made_with_another_vocabulary_is_refused(tmp_path, caplog):
    files = [tmp_path / f"x_training_{i}.hdf5" for i in range(3)]
    for path in files:
        write_shard(path, 8)
    with h5py.File(files[0], "r+") as f:
        f.attrs[VOCAB_SHA256] = sha256_file(UNCASED_VOCAB)
    checks = ShardChecks.for_run(UNCASED_VOCAB, 30522)
    with caplog.at_level(logging.INFO, logger="pretraining_data"):
        PretrainingDataLoader(files, 4, checks=checks)  # its own vocabulary; two record none
    assert caplog.text.count("records no vocabulary") == 1  # once, naming the first
    assert f"{files[1]} (and maybe other shards) records no vocabulary" in caplog.text
    with h5py.File(files[2], "r+") as f:
        f.attrs[VOCAB_SHA256] = sha256_file(CASED_VOCAB)
    with pytest.raises(ShardError) as error:
        PretrainingDataLoader(files, 4, checks=ShardChecks.for_run(UNCASED_VOCAB, 30522))
    assert str(error.value).startswith(
        f"{files[2]} was made with another vocabulary than --vocab_file {UNCASED_VOCAB}: its "
        f"vocab_sha256 attribute is {sha256_file(CASED_VOCAB)[:16]}..., the file's sha256 "
        f"{sha256_file(UNCASED_VOCAB)[:16]}..."
    )
    PretrainingDataLoader(files, 4)  # no --vocab_file: nothing to compare with


def test_shards_mostly_unk_are_warned_about_once(tmp_path, caplog):
    files = [tmp_path / f"x_training_{i}.hdf5" for i in range(2)]
    for path in files:
        write_shard(path, 20)  # 7 real tokens a row
    checks = ShardChecks.for_run(UNCASED_VOCAB, 30522)
    with caplog.at_level(logging.WARNING):
        PretrainingShard(files[0], checks)
    assert caplog.text == ""
    for path in files:
        with h5py.File(path, "r+") as f:
            ids = f["input_ids"][()]
            ids[:, 2:4] = 100  # 2 of 7 real tokens are [UNK]
            f["input_ids"][...] = ids
    with caplog.at_level(logging.WARNING):
        for path in files:
            PretrainingShard(path, checks)
    assert caplog.text.count("WARNING") == 1
    expected = f"{files[0]} (a sample of 20 rows): 29% of the tokens are [UNK] (40 of 140)"
    assert expected in caplog.text
    assert f"another vocabulary or casing than {UNCASED_VOCAB}'s" in caplog.text


def shards_of(tmp_path, *sizes: int) -> list:
    """Shards of these sizes whose samples are numbered 0, 1, ... across all of them."""
    files = []
    for i, rows in enumerate(sizes):
        write_shard(tmp_path / f"x_training_{i}.hdf5", rows, first_id=sum(sizes[:i]))
        files.append(tmp_path / f"x_training_{i}.hdf5")
    return files


@pytest.mark.parametrize("rank", [0, 3, 7])
def test_a_layout_that_leaves_a_rank_without_data_is_refused_on_every_rank(tmp_path, rank):
    files = shards_of(tmp_path, 3)  # 3 samples, 8 ranks: ranks 3-7 would loop on empty epochs
    with pytest.raises(ShardError) as error:
        PretrainingDataLoader(files, 2, rank=rank, world_size=8)
    assert str(error.value) == (
        "3 samples in 1 file(s) make 3 shard pieces per epoch for 8 ranks (micro-batch 2, "
        "--data_sharding files): ranks 3 to 7 would get no data and the others would wait "
        "forever; use at most 3 ranks, more or larger shards"
    )
    files = shards_of(tmp_path, 1, 9)  # 10 samples; each file split in 3, but 1 row is 1 piece
    with pytest.raises(ShardError, match=r"make 4 shard pieces .* or --data_sharding interleaved"):
        PretrainingDataLoader(files, 2, rank=rank, world_size=6)
    with pytest.raises(ShardError) as error:
        PretrainingDataLoader(files, 4, rank=rank, world_size=5, sharding="interleaved")
    assert str(error.value).startswith(
        "10 samples in 2 file(s) make 4 micro-batches of 4 per epoch for 5 ranks (micro-batch 4, "
        "--data_sharding interleaved): rank 4 would get no data"
    )
    assert "a smaller micro-batch (--train_batch_size), or more data" in str(error.value)


@pytest.mark.parametrize(("world_size", "sharding"), [(3, "files"), (6, "interleaved")])
def test_as_many_ranks_as_the_layout_serves_all_get_batches(tmp_path, world_size, sharding):
    """Every rank gets data, and together the ranks read each of the 10 samples once an epoch."""
    files = shards_of(tmp_path, 1, 9)  # files: 3 pieces; interleaved: 1 + 5 micro-batches of 2
    per_rank = [
        take_epoch(PretrainingDataLoader(files, 2, rank, world_size, sharding=sharding))
        for rank in range(world_size)
    ]
    assert all(per_rank), per_rank
    assert sorted(s for samples in per_rank for s in samples) == list(range(10)), per_rank


def test_run_pretraining_checks_shards_against_its_vocabulary_and_model(tmp_path):
    import distributed
    import pretraining_checkpoints
    import run_pretraining

    write_shard(tmp_path / "x_training_0.hdf5", 8)
    with h5py.File(tmp_path / "x_training_0.hdf5", "r+") as f:
        f.attrs[VOCAB_SHA256] = sha256_file(UNCASED_VOCAB)
    edit_shard(tmp_path / "x_training_0.hdf5", "input_ids", 1, 2, 29000)  # in uncased, not cased

    def loader(*flags: str):
        args = run_pretraining.parse_arguments(
            [
                f"--input_dir={tmp_path}",
                f"--output_dir={tmp_path / 'out'}",
                f"--config_file={TINY_CONFIG}",
                "--train_batch_size=4",
                *flags,
            ]
        )
        options = pretraining_checkpoints.PretrainOptions.from_args(args)
        resume = pretraining_checkpoints.Resume()
        return next(iter(run_pretraining.build_loader(options, distributed.DistState(), resume)))

    assert len(loader(f"--vocab_file={UNCASED_VOCAB}")[0]) == 4
    with pytest.raises(ShardError, match=f"another vocabulary than --vocab_file {CASED_VOCAB}"):
        loader(f"--vocab_file={CASED_VOCAB}")
    with h5py.File(tmp_path / "x_training_0.hdf5", "r+") as f:
        del f.attrs[VOCAB_SHA256]  # as NVIDIA's shards: only the ids are checked
    with pytest.raises(ShardError, match=r"row 1: 29000 is outside the vocabulary of 28996 ids"):
        loader(f"--vocab_file={CASED_VOCAB}")
    edit_shard(tmp_path / "x_training_0.hdf5", "input_ids", 1, 2, 31000)
    with pytest.raises(ShardError, match=r"row 1: 31000 is outside the vocabulary of 30522 ids"):
        loader()  # no --vocab_file: the model's vocab_size


def test_a_shard_without_masked_positions_is_refused_unless_masked_dynamically(tmp_path):
    """Masked-LM training over shards whose masked positions are all padding would learn from
    nothing: refused when the shard is read, naming it; --dynamic_masking masks it instead."""
    (path,) = write_random_shards(tmp_path, files=1, rows=8)
    with h5py.File(path, "r+") as shard:
        shard["masked_lm_positions"][...] = 0
    loader = PretrainingDataLoader([path], 4, prefetch=False)
    with pytest.raises(ShardError, match=rf"{path}: no usable masked positions \(every"):
        next(iter(loader))
    masking = DynamicMasking.from_vocab_file(UNCASED_VOCAB)
    batch = next(iter(PretrainingDataLoader([path], 4, prefetch=False, dynamic_masking=masking)))
    assert (batch.masked_lm_labels != -1).any()
    with h5py.File(path, "r+") as shard:  # one masked position anywhere is enough
        shard["masked_lm_positions"][5, 0] = 3
    assert len(list(itertools.islice(iter(PretrainingDataLoader([path], 4, prefetch=False)), 2)))
