"""pretraining_data.PretrainingDataLoader: every sample once per epoch, disjoint ranks (also when
ranks outnumber files), exact resume, interleaved sharding, dynamic masking, bad shards."""

from __future__ import annotations

import itertools
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from pretraining_data import (
    DynamicMasking,
    PretrainingDataLoader,
    ShardError,
    remask,
    training_files,
)
from tests.conftest import REPO_ROOT


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
    with h5py.File(path, "w") as f:
        f["input_ids"] = input_ids
        f["input_mask"] = (input_ids != 0).astype("i1")
        f["segment_ids"] = np.zeros((rows, seq), "i1")
        f["masked_lm_positions"] = positions
        f["masked_lm_ids"] = ids
        f["next_sentence_labels"] = np.zeros(rows, "i1")


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
            files, 6, rank=1, world_size=2, seed=5, sharding=sharding, position=position,
            bin_size=bins,
        )  # fmt: skip
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
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "samples/s" in result.stdout
