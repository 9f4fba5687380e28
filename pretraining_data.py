"""Pre-training shards: reading NVIDIA-layout HDF5 files into model inputs.

A shard holds the six datasets of `shard_format.py`. `PretrainingShard` loads one file, checks
its layout once, and turns each instance into the model's inputs the way NVIDIA's 21.11
`run_pretraining.py` does: `masked_lm_labels` is -1 everywhere except at the masked positions,
which hold the original token ids; the masked positions end at the first 0 (position 0 is
always [CLS]).

`PretrainingDataLoader` streams micro-batches for one rank: epochs of shuffled shards, disjoint
data per rank, the next shard read in the background, an exact resume position, optional
dynamic masking. Differences from NVIDIA's 21.11 loader: every shard of an epoch is trained on
(one per rank was dropped), resume continues at the next sample (the reference replayed a file
and skipped another), nothing is pickled between processes, ranks get disjoint data also when
they outnumber the files, the layout is checked with one clear error naming the file, and a
whole batch is converted at once with numpy instead of per item with a Python `nonzero`.
The loader reads HDF5 shards unless given another shard format: `lddl_data.py` supplies the one
for LDDL parquet folders (NVIDIA HEAD's data).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import logging
import os
import random
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from errors import BertError
from shard_format import SHARD_NDIMS
from tokenization import load_vocab

logger = logging.getLogger(__name__)


class ShardError(BertError, ValueError):
    """A shard whose layout is not NVIDIA's; the message names the file and the dataset."""


def read_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The six arrays of a shard, loaded into memory, with their layout checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard not found: {path}")
    try:
        with h5py.File(path, "r") as shard:
            missing = [key for key in SHARD_NDIMS if key not in shard]
            if missing:
                raise ShardError(f"{path}: missing dataset(s) {', '.join(missing)}")
            arrays = {key: shard[key][()] for key in SHARD_NDIMS}
    except OSError as err:
        raise ShardError(f"{path}: not a readable HDF5 file ({err})") from None
    count = len(arrays["next_sentence_labels"])
    for key, ndim in SHARD_NDIMS.items():
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
    int64 tensors of shapes [S], [S], [S], [S] and [] (NVIDIA's order).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.arrays = read_shard(self.path)
        self.seq_length = self.arrays["input_ids"].shape[1]
        self.max_predictions = self.arrays["masked_lm_positions"].shape[1]
        self.lengths = self.arrays["input_mask"].sum(axis=1)  # real tokens per instance

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


# --------------------------------------------------------------------------------------------
# The pre-training loader: epochs of shards, rank sharding, prefetch, exact resume.
# --------------------------------------------------------------------------------------------


def training_files(input_dir: str | os.PathLike) -> list[Path]:
    """NVIDIA's rule: the regular files of `input_dir` whose name contains "training", sorted."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"--input_dir {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and "training" in p.name)
    if not files:
        raise ShardError(f"--input_dir {folder}: no file with 'training' in its name")
    return files


def shard_shape(path: Path) -> tuple[int, int, int]:
    """(instances, sequence length, max predictions) from a shard's metadata, checked."""
    try:
        with h5py.File(path, "r") as shard:
            missing = [key for key in SHARD_NDIMS if key not in shard]
            if missing:
                raise ShardError(f"{path}: missing dataset(s) {', '.join(missing)}")
            rows = shard["next_sentence_labels"].shape[0]
            seq = shard["input_ids"].shape[1]
            pred = shard["masked_lm_positions"].shape[1]
    except OSError as err:
        raise ShardError(
            f"{path}: not a readable HDF5 shard (truncated or corrupt?): {err}"
        ) from None
    if rows == 0:
        raise ShardError(f"{path}: holds no instances")
    return rows, seq, pred


@dataclasses.dataclass(frozen=True)
class Piece:
    """A run of instances of one shard: every instance when there are enough shards, else a
    contiguous part, so that each rank gets disjoint data even when ranks outnumber files."""

    file: Path
    start: int
    stop: int
    index: int  # position in the loader's list of all pieces (keys the shuffles)


@dataclasses.dataclass
class DynamicMasking:
    """Re-mask each batch (Bernoulli 0.15 over the real, non-special tokens; 80/10/10)."""

    vocab_size: int
    mask_id: int
    special_ids: tuple[int, ...]
    probability: float = 0.15

    @classmethod
    def from_vocab_file(cls, vocab_file: str | os.PathLike) -> DynamicMasking:
        """Masking with the [MASK] id and the special ids of a vocabulary file."""
        vocab = load_vocab(vocab_file)
        if "[MASK]" not in vocab:
            raise ShardError(f"{vocab_file}: the vocabulary has no [MASK] token")
        specials = tuple(vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in vocab)
        return cls(max(vocab.values()) + 1, vocab["[MASK]"], specials)  # ids are line numbers


class HDF5Shards:
    """NVIDIA's HDF5 shards, the files `PretrainingDataLoader` reads unless told otherwise.

    A shard format tells the loader each file's shape (instances, sequence length, masked
    positions per sequence; None where the files do not fix it) and opens a file as a shard with
    `len()`, `lengths` (real tokens per instance) and `batch(indices)`.
    """

    def shape(self, path: Path) -> tuple[int, int | None, int | None]:
        return shard_shape(path)

    def open(self, path: Path) -> PretrainingShard:
        return PretrainingShard(path)


class PretrainingDataLoader:
    """Endless stream of micro-batches for one rank, resumable at the exact next sample.

    Each epoch shuffles the pieces with `seed + epoch` (the same on every rank). With
    `sharding="files"` (NVIDIA's scheme) rank r trains on pieces r, r + W, ... of that order, so
    ranks never share data and every piece of the epoch is used (NVIDIA dropped one file per rank
    per epoch: the one prefetched in the last slot). With `sharding="interleaved"` every rank
    walks the same stream of micro-batches and keeps every W-th one, so W ranks with
    accumulation G see exactly what one process with accumulation W x G sees. Samples inside a
    piece are shuffled with a generator keyed by (seed, epoch, piece). The next piece is read in
    a background thread while the current one trains (NVIDIA built the next DataLoader in
    another process, pickled it back, and pickled it into every checkpoint). `state()` is the
    position of the next micro-batch; `PretrainingDataLoader(..., position=state)` continues
    there.
    """

    def __init__(
        self,
        files: list[Path],
        micro_batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 42,
        max_seq_length: int | None = None,
        max_predictions_per_seq: int | None = None,
        sharding: str = "files",
        position: dict | None = None,
        dynamic_masking: DynamicMasking | None = None,
        prefetch: bool = True,
        pin_memory: bool = False,
        bin_size: int | None = None,
        shard_format: HDF5Shards | None = None,
    ) -> None:
        if sharding not in ("files", "interleaved"):
            raise ValueError(f"sharding must be 'files' or 'interleaved', got {sharding!r}")
        self.files = list(files)
        self.micro_batch = micro_batch
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.sharding = sharding
        self.dynamic_masking = dynamic_masking
        self.prefetch = prefetch
        self.pin_memory = pin_memory  # page-locked batches copy to the GPU asynchronously
        if bin_size is not None and bin_size < 1:
            raise ValueError(f"--bin_size must be positive, got {bin_size}")
        self.bin_size = bin_size
        self.shard_format = shard_format or HDF5Shards()
        sizes, shapes = {}, set()
        for path in self.files:
            rows, seq, pred = self.shard_format.shape(path)
            shapes.add((seq, pred))
            if len(shapes) > 1:
                raise ShardError(
                    f"{path}: {seq} tokens and {pred} masked positions per sequence, unlike the "
                    "shards before it; are phase-1 and phase-2 shards mixed in one folder?"
                )
            if None not in (max_seq_length, seq) and seq != max_seq_length:
                raise ShardError(
                    f"{path}: sequences of {seq} tokens, but --max_seq_length is {max_seq_length}"
                )
            if None not in (max_predictions_per_seq, pred) and pred != max_predictions_per_seq:
                raise ShardError(
                    f"{path}: {pred} masked positions per sequence, but "
                    f"--max_predictions_per_seq is {max_predictions_per_seq}"
                )
            sizes[path] = rows
        self.seq_length = seq
        self.pieces = self._make_pieces(sizes)
        self.epoch, self.piece_index, self.offset, self.batch_index = 0, 0, 0, 0
        if position:
            self._restore(position)

    def _make_pieces(self, sizes: dict[Path, int]) -> list[Piece]:
        parts = 1
        if self.sharding == "files" and self.world_size > len(sizes):
            parts = -(-self.world_size // len(sizes))  # ceil: enough pieces for every rank
        spans = []
        for path, rows in sizes.items():
            bounds = np.linspace(0, rows, parts + 1).astype(int)
            spans.extend((path, int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a)
        return [Piece(path, a, b, index) for index, (path, a, b) in enumerate(spans)]

    def epoch_pieces(self, epoch: int) -> list[Piece]:
        """This rank's pieces of `epoch`, in training order."""
        order = list(self.pieces)
        random.Random(self.seed + epoch).shuffle(order)
        if self.sharding == "files":
            return order[self.rank :: self.world_size]
        return order

    def state(self) -> dict:
        """Where the next micro-batch starts (for checkpoints)."""
        return {
            "epoch": self.epoch,
            "piece": self.piece_index,
            "offset": self.offset,
            "batch_index": self.batch_index,
            "files": [p.name for p in self.files],
            "world_size": self.world_size,
            "sharding": self.sharding,
            "seed": self.seed,
            "micro_batch": self.micro_batch,
            "bin_size": self.bin_size,
        }

    def _restore(self, position: dict) -> None:
        same = (
            position.get("files") == [p.name for p in self.files]
            and position.get("world_size") == self.world_size
            and position.get("sharding") == self.sharding
            and position.get("seed") == self.seed
            and position.get("micro_batch") == self.micro_batch
            and position.get("bin_size") == self.bin_size
        )
        self.epoch = int(position.get("epoch", 0))
        if same:
            self.piece_index = int(position["piece"])
            self.offset = int(position["offset"])
            self.batch_index = int(position.get("batch_index", 0))
        else:
            logger.warning(
                "the data position in the checkpoint is for other shards, seed or world size; "
                "starting epoch %d from its beginning",
                self.epoch,
            )

    def _batches(self, epoch: int, piece: Piece, shard: PretrainingShard) -> list[np.ndarray]:
        """The piece's micro-batches (row indices) in training order.

        Samples are shuffled with a generator keyed by (seed, epoch, piece). With `bin_size`,
        each batch is drawn from one bin of lengths (LDDL's binning at NVIDIA HEAD), so trimming
        a batch to its longest sequence removes most of its padding; the batches are then
        shuffled across bins.
        """
        rng = np.random.default_rng([self.seed, epoch, piece.index])
        order = piece.start + rng.permutation(piece.stop - piece.start)
        step = self.micro_batch
        if not self.bin_size:
            return [order[i : i + step] for i in range(0, len(order), step)]
        bins = (shard.lengths[order] - 1) // self.bin_size
        batches = []
        for value in np.unique(bins):
            members = order[bins == value]  # still in shuffled order
            batches.extend(members[i : i + step] for i in range(0, len(members), step))
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        loader = ShardPrefetcher(self.shard_format.open, enabled=self.prefetch)
        try:
            while True:
                pieces = self.epoch_pieces(self.epoch)
                for index in range(self.piece_index, len(pieces)):
                    self.piece_index = index
                    upcoming = pieces[index + 1] if index + 1 < len(pieces) else None
                    shard = loader.get(pieces[index].file, upcoming.file if upcoming else None)
                    batches = self._batches(self.epoch, pieces[index], shard)
                    while self.offset < len(batches):
                        indices = batches[self.offset]
                        mine = (
                            self.sharding == "files"
                            or self.batch_index % self.world_size == self.rank
                        )
                        self.offset += 1  # batches of this piece consumed
                        self.batch_index += 1
                        if mine:
                            key = [self.seed, self.epoch, pieces[index].index, self.offset]
                            yield self._batch(shard, indices, key)
                    self.offset = 0
                self.epoch += 1
                self.piece_index = 0
        finally:
            loader.close()

    def _batch(
        self, shard: PretrainingShard, indices: np.ndarray, key: list[int]
    ) -> list[torch.Tensor]:
        """The batch at `indices`, re-masked with a generator keyed by `key` and the rank."""
        batch = shard.batch(indices)
        if self.dynamic_masking is not None:
            rng = np.random.default_rng([*key, self.rank])
            batch = remask(batch, self.dynamic_masking, rng)
        if self.pin_memory:
            batch = [tensor.pin_memory() for tensor in batch]
        return batch


class ShardPrefetcher:
    """Loads shards, reading the next one in a background thread while the current one trains."""

    def __init__(self, open_shard=PretrainingShard, enabled: bool = True) -> None:
        self.open_shard = open_shard
        self.pool = concurrent.futures.ThreadPoolExecutor(1) if enabled else None
        self.pending: tuple[Path, concurrent.futures.Future] | None = None

    def get(self, path: Path, next_path: Path | None) -> PretrainingShard:
        if self.pending is not None and self.pending[0] == path:
            shard = self.pending[1].result()
        else:
            shard = self.open_shard(path)
        self.pending = None
        if next_path is not None and self.pool is not None:
            self.pending = (next_path, self.pool.submit(self.open_shard, next_path))
        return shard

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def remask(
    batch: list[torch.Tensor], masking: DynamicMasking, rng: np.random.Generator
) -> list[torch.Tensor]:
    """Dynamic masking: restore the original tokens, then mask afresh (80% [MASK], 10% random,
    10% kept) at Bernoulli(`probability`) positions among real, non-special tokens."""
    input_ids, segment_ids, input_mask, labels, next_sentence = batch
    original = torch.where(labels >= 0, labels, input_ids).numpy()
    candidates = (input_mask.numpy() == 1) & ~np.isin(original, masking.special_ids)
    chosen = candidates & (rng.random(original.shape) < masking.probability)
    action = rng.random(original.shape)
    masked = original.copy()
    masked[chosen & (action < 0.8)] = masking.mask_id
    randomise = chosen & (action >= 0.9)
    masked[randomise] = rng.integers(0, masking.vocab_size, int(randomise.sum()))
    new_labels = np.where(chosen, original, -1)
    return [
        torch.from_numpy(masked),
        segment_ids,
        input_mask,
        torch.from_numpy(new_labels),
        next_sentence,
    ]
