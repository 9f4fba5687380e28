"""Pre-training shards: reading NVIDIA-layout HDF5 files into model inputs.

A shard holds the six datasets of spec §4.2. `PretrainingShard` loads one file, checks its
layout once, and turns each instance into the model's inputs the way NVIDIA's 21.11 loader does
(spec §4.3): `masked_lm_labels` is -1 everywhere except at the masked positions, which hold the
original token ids; the masked positions end at the first 0 (position 0 is always [CLS]).

Epochs, rank sharding, prefetching and resume positions belong to the pre-training loader built
on top of this class (run_pretraining.py's issue). Differences from NVIDIA: the layout is checked
with one clear error naming the file and dataset, and a whole batch can be converted at once
with numpy (`batch`), instead of per item with a Python `nonzero`.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

#: The six datasets of an NVIDIA shard with their number of dimensions.
SHARD_KEYS = {
    "input_ids": 2,
    "input_mask": 2,
    "segment_ids": 2,
    "masked_lm_positions": 2,
    "masked_lm_ids": 2,
    "next_sentence_labels": 1,
}


class ShardError(ValueError):
    """A shard whose layout is not NVIDIA's; the message names the file and the dataset."""


def read_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The six arrays of a shard, loaded into memory, with their layout checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard not found: {path}")
    try:
        with h5py.File(path, "r") as shard:
            missing = [key for key in SHARD_KEYS if key not in shard]
            if missing:
                raise ShardError(f"{path}: missing dataset(s) {', '.join(missing)}")
            arrays = {key: shard[key][()] for key in SHARD_KEYS}
    except OSError as err:
        raise ShardError(f"{path}: not a readable HDF5 file ({err})") from None
    count = len(arrays["next_sentence_labels"])
    for key, ndim in SHARD_KEYS.items():
        array = arrays[key]
        if array.ndim != ndim or len(array) != count:
            raise ShardError(
                f"{path}: dataset {key} has shape {list(array.shape)}, expected {ndim} "
                f"dimension(s) with {count} rows"
            )
        if not np.issubdtype(array.dtype, np.integer):
            raise ShardError(f"{path}: dataset {key} has dtype {array.dtype}, expected integers")
    seq_length = arrays["input_ids"].shape[1]
    for key in ("input_mask", "segment_ids"):
        if arrays[key].shape[1] != seq_length:
            raise ShardError(
                f"{path}: {key} is {arrays[key].shape[1]} wide, input_ids {seq_length}"
            )
    if arrays["masked_lm_ids"].shape[1] != arrays["masked_lm_positions"].shape[1]:
        raise ShardError(f"{path}: masked_lm_ids and masked_lm_positions differ in width")
    return arrays


def masked_lm_labels(positions: np.ndarray, ids: np.ndarray, seq_length: int) -> np.ndarray:
    """[N, P] positions and ids -> [N, S] labels: -1, or the original id at masked positions.

    NVIDIA's rule: the real entries of a row end at its first 0 position.
    """
    positions = np.atleast_2d(positions).astype(np.int64)
    ids = np.atleast_2d(ids).astype(np.int64)
    real = np.cumprod(positions != 0, axis=1).astype(bool)  # [N, P]: before the first 0
    labels = np.full((len(positions), seq_length), -1, dtype=np.int64)
    rows = np.broadcast_to(np.arange(len(positions))[:, None], positions.shape)
    labels[rows[real], positions[real]] = ids[real]
    return labels


class PretrainingShard(Dataset):
    """One shard as a map-style dataset of NVIDIA's items.

    Each item is `[input_ids, segment_ids, input_mask, masked_lm_labels, next_sentence_labels]`,
    int64 tensors of shapes [S], [S], [S], [S] and [] (spec §4.3 order).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.arrays = read_shard(self.path)
        self.seq_length = self.arrays["input_ids"].shape[1]
        self.max_predictions = self.arrays["masked_lm_positions"].shape[1]

    def __len__(self) -> int:
        return len(self.arrays["next_sentence_labels"])

    def batch(self, indices: np.ndarray | list[int]) -> list[torch.Tensor]:
        """The items at `indices`, stacked: [B, S] x 4 and [B], in one numpy pass."""
        a = {key: value[indices] for key, value in self.arrays.items()}
        labels = masked_lm_labels(a["masked_lm_positions"], a["masked_lm_ids"], self.seq_length)
        return [
            torch.from_numpy(a["input_ids"].astype(np.int64)),
            torch.from_numpy(a["segment_ids"].astype(np.int64)),
            torch.from_numpy(a["input_mask"].astype(np.int64)),
            torch.from_numpy(labels),
            torch.from_numpy(a["next_sentence_labels"].astype(np.int64)),
        ]

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        return [tensor[0] for tensor in self.batch([index])]
