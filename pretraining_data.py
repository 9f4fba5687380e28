"""Pre-training shards: reading NVIDIA-layout HDF5 files into model inputs, and the loader.

A shard holds the six datasets of `shard_format.py`. `PretrainingShard` loads one file, checks
its layout and content once (`ShardChecks`: one error with the file, dataset and first bad row),
and turns each instance into the model's inputs the way NVIDIA's 21.11 `run_pretraining.py`
does: `masked_lm_labels` is -1 everywhere except at the masked positions, which end at the first
0. `PretrainingDataLoader` streams micro-batches for one rank: epochs of shuffled shards,
disjoint data per rank, the next shard read in a background thread, an exact resume position,
optional dynamic masking. It reads HDF5 unless given another shard format (`lddl_data.py`'s for
LDDL parquet). The README lists how it differs from NVIDIA's 21.11 loader.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import logging
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from errors import BertError, refuse_if_nothing_usable
from fileio import check_regular_file, sha256_file
from shard_format import SHARD_NDIMS, VOCAB_SHA256
from tokenization import load_vocab, warn_if_mostly_unknown

logger = logging.getLogger(__name__)


class ShardError(BertError, ValueError):
    """A shard whose layout is not NVIDIA's; the message names the file and the dataset."""


def data_elsewhere(shard: h5py.File) -> str | None:
    """Why a shard's datasets would be read from other files, or None: an external link, a
    virtual dataset or external raw storage names a file outside the shard (an absolute path,
    or one relative to wherever the run starts), which a shard from elsewhere must not make the
    run read. Checked on the links before any is followed."""
    for key in SHARD_NDIMS:
        if isinstance(shard.get(key, getlink=True), h5py.ExternalLink):
            return f"{key} is an external link to another file"
    for key in SHARD_NDIMS:
        dataset = shard.get(key)
        if isinstance(dataset, h5py.Dataset) and (dataset.is_virtual or dataset.external):
            return f"{key} is a virtual or externally stored dataset (its data is in other files)"
    return None


def read_shard(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The six arrays of a shard, loaded into memory, with their layout checked."""
    path = Path(path)
    check_regular_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard not found: {path}")
    try:
        with h5py.File(path, "r") as shard:
            if elsewhere := data_elsewhere(shard):
                raise ShardError(f"{path}: {elsewhere}; refusing to follow it")
            missing = [key for key in SHARD_NDIMS if key not in shard]
            if missing:
                raise ShardError(f"{path}: missing dataset(s) {', '.join(missing)}")
            groups = [key for key in SHARD_NDIMS if not isinstance(shard[key], h5py.Dataset)]
            if groups:
                raise ShardError(f"{path}: {groups[0]} is an HDF5 group, not a dataset")
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


#: Rows of a shard whose [UNK] share is measured (spread over the shard; NVIDIA's writer
#: shuffles instances, so any rows would do): 1,024 rows of 128 tokens put the share of a
#: shard within about 1% of its true value.
UNKNOWN_SAMPLE_ROWS = 1024


@dataclasses.dataclass
class ShardChecks:
    """What shard content is checked against when a shard is loaded (`check_shard`).

    `vocab_size`: token ids must be below it (None: only negative ids are refused);
    `vocab_file` and `vocab_sha256`: the run's vocabulary, compared with the sha256 a shard
    records (`shard_format.VOCAB_SHA256`); `unk_id`: [UNK]'s id, for the warning about shards
    that are mostly [UNK]. The warning and the note about shards without a recorded vocabulary
    are given once per `ShardChecks`.
    """

    vocab_size: int | None = None
    vocab_file: str | None = None
    vocab_sha256: str | None = None
    unk_id: int | None = None
    warned_unknown: bool = dataclasses.field(default=False, compare=False)
    noted_unrecorded: bool = dataclasses.field(default=False, compare=False)

    @classmethod
    def for_run(
        cls, vocab_file: str | os.PathLike | None = None, model_vocab_size: int | None = None
    ) -> ShardChecks:
        """The checks of a run with this vocabulary file and model vocabulary size (either may
        be unknown). A vocabulary with more ids than the model's is refused: its ids would
        index past the embedding."""
        if vocab_file is None:
            return cls(vocab_size=model_vocab_size)
        vocab = load_vocab(vocab_file)
        size = max(vocab.values()) + 1  # ids are line numbers
        if model_vocab_size is not None and size > model_vocab_size:
            raise ShardError(
                f"--vocab_file {vocab_file} has {size} tokens, more than the model's vocab_size "
                f"{model_vocab_size} (--config_file); they must be the same vocabulary"
            )
        return cls(size, os.fspath(vocab_file), sha256_file(vocab_file), vocab.get("[UNK]"))

    def check_recorded_vocab(self, path: Path, recorded: object) -> None:
        """Refuse a shard that records another vocabulary's sha256 than `vocab_file`'s."""
        if self.vocab_sha256 is None:
            return
        if recorded is None:
            if not self.noted_unrecorded:
                self.noted_unrecorded = True
                logger.info(
                    "%s (and maybe other shards) records no vocabulary, as NVIDIA's shards do; "
                    "it is not compared with --vocab_file %s",
                    path,
                    self.vocab_file,
                )
            return
        if isinstance(recorded, bytes | np.bytes_):
            recorded = recorded.decode("utf-8", "replace")
        if str(recorded) != self.vocab_sha256:
            raise ShardError(
                f"{path} was made with another vocabulary than --vocab_file {self.vocab_file}: "
                f"its {VOCAB_SHA256} attribute is {str(recorded)[:16]}..., the file's sha256 "
                f"{self.vocab_sha256[:16]}...; pass the vocabulary the shards were made with, "
                "or remake them"
            )

    def warn_if_mostly_unknown(
        self, where: str, unknown: int, total: int, vocab_file: str | os.PathLike | None = None
    ) -> None:
        """The once-per-`ShardChecks` warning about a shard whose tokens are mostly [UNK]."""
        if self.warned_unknown:
            return
        vocab_file = vocab_file or self.vocab_file
        advice = (
            "the shards were probably made with another vocabulary or casing than "
            f"{vocab_file or 'the run'}'s; remake them with the run's vocabulary and casing"
        )
        self.warned_unknown = warn_if_mostly_unknown(where, unknown, total, advice=advice)


def _first_row(bad: np.ndarray) -> int:
    """The first row where `bad` ([N] or [N, X] booleans) holds."""
    rows = bad if bad.ndim == 1 else bad.any(axis=1)
    return int(np.flatnonzero(rows)[0])


def _refuse_outside(
    path: Path, key: str, values: np.ndarray, low: int, high: int | None, what: str
) -> None:
    """ShardError naming the first row where `values` leave [low, high); min/max first, so a
    good shard costs two passes without temporaries."""
    if not values.size:
        return
    below, above = values.min() < low, high is not None and values.max() >= high
    if below or above:
        bad = (values < low) | (values >= high if high is not None else False)
        row = _first_row(bad)
        value = values[row][bad[row]].flat[0] if values.ndim > 1 else values[row]
        raise ShardError(f"{path}: dataset {key}, row {row}: {value} {what}")


def layout_problems(
    input_ids: np.ndarray, input_mask: np.ndarray, positions: np.ndarray
) -> Iterator[tuple[str, np.ndarray]]:
    """(problem, [N] bad rows) for each way a row's arrays can contradict one another, computed
    one at a time so a caller that stops at the first pays for no more: rows of padding only,
    an input_mask that is not ones then zeros, non-zero ids on the padding, and a masked
    position given twice (two labels for one token). NVIDIA's entries end at the first 0
    position; what follows is ignored, as NVIDIA's loader ignores it. Values are not bounded
    here (`check_shard` does that first). The one definition of these rules that the training
    readers (`check_shard`) and `data/verify.py` share."""
    yield "holds no real token (input_mask all 0)", ~input_mask.any(axis=1)
    yield "input_mask is not ones then zeros", (np.diff(input_mask, axis=1) > 0).any(axis=1)
    yield "token ids on the padding are not 0", ((input_ids != 0) & (input_mask == 0)).any(axis=1)
    real = np.cumprod(positions != 0, axis=1).astype(bool)  # [N, P]: before the first 0
    filler = -1 - np.arange(positions.shape[1])  # distinct negative stand-ins for the rest
    ordered = np.sort(np.where(real, positions, filler), axis=1)
    yield "a masked position is repeated", (np.diff(ordered, axis=1) == 0).any(axis=1)


def check_shard(path: Path, arrays: dict[str, np.ndarray], checks: ShardChecks) -> None:
    """Refuse a shard whose content would train silently on wrong data, naming the file, the
    dataset and the first bad row: token ids outside the vocabulary (or negative), input_mask,
    segment ids or next-sentence labels other than 0/1, masked positions negative, past the
    sequence or on padding, masked ids outside the vocabulary, and rows whose arrays contradict
    one another (`layout_problems`). Warns once when a sample of
    rows is mostly [UNK]. Vectorised (min/max passes first): about 0.2 s per 10^5 rows of 128
    tokens on two CPU cores, against seconds to read them.
    """
    vocab = checks.vocab_size
    beyond = f"is outside the vocabulary of {vocab} ids" if vocab else "is a negative token id"
    input_ids, input_mask = arrays["input_ids"], arrays["input_mask"]
    _refuse_outside(path, "input_ids", input_ids, 0, vocab, beyond)
    _refuse_outside(path, "input_mask", input_mask, 0, 2, "is not 0 or 1")
    _refuse_outside(path, "segment_ids", arrays["segment_ids"], 0, 2, "is not 0 or 1")
    _refuse_outside(
        path, "next_sentence_labels", arrays["next_sentence_labels"], 0, 2, "is not 0 or 1"
    )
    positions, ids = arrays["masked_lm_positions"], arrays["masked_lm_ids"]
    real = np.cumprod(positions != 0, axis=1).astype(bool)  # [N, P]: NVIDIA's entries
    seq_length = input_ids.shape[1]
    _refuse_outside(
        path,
        "masked_lm_positions",
        np.where(real, positions, 1),
        0,
        seq_length,
        f"is not a position in a sequence of {seq_length} tokens",
    )
    rows = np.broadcast_to(np.arange(len(positions))[:, None], positions.shape)
    on_padding = real & (input_mask[rows, np.where(real, positions, 0)] != 1)
    if on_padding.any():
        row = _first_row(on_padding)
        raise ShardError(
            f"{path}: dataset masked_lm_positions, row {row}: position "
            f"{positions[row][on_padding[row]][0]} is past the row's real tokens (input_mask)"
        )
    _refuse_outside(path, "masked_lm_ids", np.where(real, ids, 0), 0, vocab, beyond)
    for problem, bad in layout_problems(input_ids, input_mask, positions):
        if bad.any():
            raise ShardError(f"{path}: row {_first_row(bad)}: {problem}")
    if checks.unk_id is not None and not checks.warned_unknown and len(input_ids):
        sample = np.unique(np.linspace(0, len(input_ids) - 1, UNKNOWN_SAMPLE_ROWS).astype(int))
        real_tokens = input_mask[sample] == 1
        unknown = int(((input_ids[sample] == checks.unk_id) & real_tokens).sum())
        where = f"{path} (a sample of {len(sample)} rows)"
        checks.warn_if_mostly_unknown(where, unknown, int(real_tokens.sum()))


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


class PretrainingBatch(NamedTuple):
    """One micro-batch of pre-training inputs, in the order of NVIDIA's items and of the model's
    `forward`: four [B, S] int64 tensors and the [B] next-sentence labels. Masked-LM labels are
    -1 where nothing is predicted."""

    input_ids: torch.Tensor
    segment_ids: torch.Tensor
    input_mask: torch.Tensor
    masked_lm_labels: torch.Tensor
    next_sentence_labels: torch.Tensor

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> PretrainingBatch:
        """The batch with `function` applied to every tensor (a device copy, a trim, ...)."""
        return PretrainingBatch(*(function(tensor) for tensor in self))


class PretrainingShard(Dataset):
    """One shard as a map-style dataset of NVIDIA's items, its content checked (`check_shard`).

    Each item is `[input_ids, segment_ids, input_mask, masked_lm_labels, next_sentence_labels]`,
    int64 tensors of shapes [S], [S], [S], [S] and [] (NVIDIA's order).
    """

    def __init__(self, path: str | os.PathLike, checks: ShardChecks | None = None) -> None:
        self.path = Path(path)
        self.arrays = read_shard(self.path)
        check_shard(self.path, self.arrays, checks or ShardChecks())
        self.seq_length = self.arrays["input_ids"].shape[1]
        self.max_predictions = self.arrays["masked_lm_positions"].shape[1]
        self.lengths = self.arrays["input_mask"].sum(axis=1)  # real tokens per instance

    def __len__(self) -> int:
        return len(self.arrays["next_sentence_labels"])

    def batch(self, indices: np.ndarray | list[int]) -> PretrainingBatch:
        """The items at `indices`, stacked: [B, S] x 4 and [B], in one numpy pass."""
        a = {key: value[indices] for key, value in self.arrays.items()}
        labels = masked_lm_labels(a["masked_lm_positions"], a["masked_lm_ids"], self.seq_length)
        return PretrainingBatch(
            torch.from_numpy(a["input_ids"].astype(np.int64)),
            torch.from_numpy(a["segment_ids"].astype(np.int64)),
            torch.from_numpy(a["input_mask"].astype(np.int64)),
            torch.from_numpy(labels),
            torch.from_numpy(a["next_sentence_labels"].astype(np.int64)),
        )

    def __getitem__(self, index: int) -> PretrainingBatch:
        return self.batch([index]).map(lambda tensor: tensor[0])

    def check_has_masked_positions(self, remedy: str) -> None:
        """Refuse a shard none of whose instances has a masked position (every entry is the
        0 padding): its masked-LM loss and accuracy would come from nothing."""
        masked = int(np.count_nonzero(self.arrays["masked_lm_positions"][:, :1]))  # [N, 1]
        refuse_unmasked(self.path, masked, len(self), remedy)


def refuse_unmasked(path: Path, masked: int, rows: int, remedy: str) -> None:
    """The error for a shard of `rows` instances of which `masked` have a masked position."""
    why = f"every masked_lm_positions row of its {rows} instances is padding; {remedy}"
    refuse_if_nothing_usable(masked, path, "masked positions", why, ShardError)


# --------------------------------------------------------------------------------------------
# The pre-training loader: epochs of shards, rank sharding, prefetch, exact resume.
# --------------------------------------------------------------------------------------------


#: What to do about a training shard without masked positions.
UNMASKED_REMEDY = "--dynamic_masking masks it as it loads"


def masked_instances(path: Path, rows: int) -> int:
    """How many of a shard's first `rows` instances have a masked position (the first entry
    of each row only: positions are packed to the front, 0 is padding)."""
    try:
        with h5py.File(path, "r") as shard:
            first = shard["masked_lm_positions"][:rows, :1]
    except (OSError, KeyError) as err:
        raise ShardError(f"{path}: masked_lm_positions unreadable ({err})") from None
    return int(np.count_nonzero(first))


def training_files(input_dir: str | os.PathLike) -> list[Path]:
    """NVIDIA's rule: the regular files of `input_dir` whose name contains "training", sorted."""
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"--input_dir {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and "training" in p.name)
    if not files:
        raise ShardError(f"--input_dir {folder}: no file with 'training' in its name")
    return files


def shard_shape(path: Path, checks: ShardChecks | None = None) -> tuple[int, int, int]:
    """(instances, sequence length, max predictions) from a shard's metadata, checked; with
    `checks`, the vocabulary the shard records too."""
    check_regular_file(path)
    try:
        with h5py.File(path, "r") as shard:
            if elsewhere := data_elsewhere(shard):
                raise ShardError(f"{path}: {elsewhere}; refusing to follow it")
            missing = [key for key in SHARD_NDIMS if key not in shard]
            if missing:
                raise ShardError(f"{path}: missing dataset(s) {', '.join(missing)}")
            for key, ndim in SHARD_NDIMS.items():
                if not isinstance(shard[key], h5py.Dataset):
                    raise ShardError(f"{path}: {key} is an HDF5 group, not a dataset")
                if shard[key].ndim != ndim:
                    raise ShardError(
                        f"{path}: dataset {key} has {shard[key].ndim} dimension(s), expected {ndim}"
                    )
            rows = shard["next_sentence_labels"].shape[0]
            seq = shard["input_ids"].shape[1]
            pred = shard["masked_lm_positions"].shape[1]
            recorded = shard.attrs.get(VOCAB_SHA256)
    except OSError as err:
        raise ShardError(
            f"{path}: not a readable HDF5 shard (truncated or corrupt?): {err}"
        ) from None
    if rows == 0:
        raise ShardError(f"{path}: holds no instances")
    if checks is not None:
        checks.check_recorded_vocab(path, recorded)
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
    """Re-mask each batch (Bernoulli 0.15 over the real, non-special tokens; 80/10/10).

    With `whole_word`, the Bernoulli draw is per word instead of per token: a word is a token
    and the "##" pieces after it (a piece joins the word of the real, non-special token before
    it, across a [SEP] too, as Google's whole-word candidates do). `continuation` marks, per id,
    the tokens that start with "##".
    """

    vocab_size: int
    mask_id: int
    special_ids: tuple[int, ...]
    probability: float = 0.15
    whole_word: bool = False
    # [V] bool, needed with `whole_word`; left out of == and repr (an array of the vocabulary)
    continuation: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.whole_word and self.continuation is None:
            raise ValueError("whole-word masking needs `continuation`, the '##' pieces' ids")

    @classmethod
    def from_vocab_file(
        cls, vocab_file: str | os.PathLike, whole_word: bool = False
    ) -> DynamicMasking:
        """Masking with the [MASK] id and the special ids of a vocabulary file."""
        vocab = load_vocab(vocab_file)
        if "[MASK]" not in vocab:
            raise ShardError(f"{vocab_file}: the vocabulary has no [MASK] token")
        specials = tuple(vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]") if t in vocab)
        size = max(vocab.values()) + 1  # ids are line numbers
        continuation = np.zeros(size, dtype=bool)
        continuation[[i for token, i in vocab.items() if token.startswith("##")]] = True
        return cls(
            size, vocab["[MASK]"], specials, whole_word=whole_word, continuation=continuation
        )


class HDF5Shards:
    """NVIDIA's HDF5 shards, the files `PretrainingDataLoader` reads unless told otherwise.

    A shard format tells the loader each file's shape (instances, sequence length, masked
    positions per sequence; None where the files do not fix it) and opens a file as a shard with
    `len()`, `lengths` (real tokens per instance) and `batch(indices)`. The shape check also
    compares the vocabulary a shard records with the run's, and opening checks the content.
    """

    def __init__(self, checks: ShardChecks | None = None) -> None:
        self.checks = checks or ShardChecks()

    def shape(self, path: Path) -> tuple[int, int | None, int | None]:
        return shard_shape(path, self.checks)

    def open(self, path: Path) -> PretrainingShard:
        return PretrainingShard(path, self.checks)


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
    there. Each HDF5 shard's content is checked when it is read, against `checks` (the run's
    vocabulary); another `shard_format` does its own checks.
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
        checks: ShardChecks | None = None,
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
        self.shard_format = shard_format or HDF5Shards(checks)
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
        self._check_every_rank_gets_data(sizes)
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

    def _batches_per_epoch(self) -> int:
        """Micro-batches of one epoch over all ranks, at least (bins can only add some)."""
        return sum(-(-(piece.stop - piece.start) // self.micro_batch) for piece in self.pieces)

    def _ranks_with_data(self) -> int:
        """How many ranks get at least one micro-batch in every epoch (the same on all ranks)."""
        if self.sharding == "files":
            return len(self.pieces)  # rank r trains on pieces r, r + W, ...
        return self._batches_per_epoch()  # rank r keeps micro-batches r, r + W, ...

    def _check_every_rank_gets_data(self, sizes: dict[Path, int]) -> None:
        """Refuse, on every rank alike, a layout that leaves some rank without data in an epoch:
        that rank would loop over empty epochs while the others wait for it at their first
        all-reduce, a hang without a message."""
        served = self._ranks_with_data()
        if served >= self.world_size:
            return
        if self.sharding == "files":
            unit, change = "shard pieces", "more or larger shards"
            if self._batches_per_epoch() >= self.world_size:
                change += ", or --data_sharding interleaved"
        else:
            unit = f"micro-batches of {self.micro_batch}"
            change = "a smaller micro-batch (--train_batch_size), or more data"
        last = self.world_size - 1
        idle = f"rank {last} would" if served == last else f"ranks {served} to {last} would"
        raise ShardError(
            f"{sum(sizes.values())} samples in {len(sizes)} file(s) make {served} {unit} per "
            f"epoch for {self.world_size} ranks (micro-batch {self.micro_batch}, --data_sharding "
            f"{self.sharding}): {idle} get no data and the others would wait forever; use at "
            f"most {served} ranks, {change}"
        )

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
                    if self.dynamic_masking is None and isinstance(shard, PretrainingShard):
                        shard.check_has_masked_positions(UNMASKED_REMEDY)
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
    ) -> PretrainingBatch:
        """The batch at `indices`, re-masked with a generator keyed by `key` and the rank."""
        batch = shard.batch(indices)
        if self.dynamic_masking is not None:
            rng = np.random.default_rng([*key, self.rank])
            batch = remask(batch, self.dynamic_masking, rng)
        if self.pin_memory:
            batch = batch.map(torch.Tensor.pin_memory)
        return batch


def check_first_shard_masked(loader: PretrainingDataLoader) -> None:
    """Refuse, from one column of the first shard, a folder whose first shard has no masked
    position, before the run creates anything (the others are checked as they load)."""
    piece = loader.pieces[0]
    masked = masked_instances(piece.file, piece.stop)
    refuse_unmasked(piece.file, masked, piece.stop, UNMASKED_REMEDY)


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
    batch: PretrainingBatch, masking: DynamicMasking, rng: np.random.Generator
) -> PretrainingBatch:
    """Dynamic masking: restore the original tokens, then mask afresh (80% [MASK], 10% random,
    10% kept, drawn per token) at Bernoulli(`probability`) positions among real, non-special
    tokens, or with `masking.whole_word` every token of the words drawn."""
    input_ids, segment_ids, input_mask, labels, next_sentence = batch
    original = torch.where(labels >= 0, labels, input_ids).numpy()
    candidates = (input_mask.numpy() == 1) & ~np.isin(original, masking.special_ids)
    draws = rng.random(original.shape)
    if masking.whole_word:  # every piece takes the draw of its word's first piece
        draws = np.take(draws, word_starts(original, candidates, masking))
    chosen = candidates & (draws < masking.probability)
    action = rng.random(original.shape)
    masked = original.copy()
    masked[chosen & (action < 0.8)] = masking.mask_id
    randomise = chosen & (action >= 0.9)
    masked[randomise] = rng.integers(0, masking.vocab_size, int(randomise.sum()))
    new_labels = np.where(chosen, original, -1)
    return PretrainingBatch(
        torch.from_numpy(masked),
        segment_ids,
        input_mask,
        torch.from_numpy(new_labels),
        next_sentence,
    )


def word_starts(
    original: np.ndarray, candidates: np.ndarray, masking: DynamicMasking
) -> np.ndarray:
    """[B, S] original ids and candidate flags -> [B, S] index, into the flattened batch, of the
    first token of each candidate's word (meaningless where not a candidate).

    A candidate starts a word unless it is a "##" piece with a candidate before it in its row;
    a piece's word is then the one started last before it, specials and padding skipped.
    """
    table = np.append(masking.continuation, False)  # ids past the table are not pieces
    piece = table[np.minimum(original, len(table) - 1)]
    earlier = np.cumsum(candidates, axis=1) > candidates  # a candidate before this one
    starts = candidates & ~(piece & earlier)
    flat = np.arange(original.size).reshape(original.shape)
    return np.maximum.accumulate(np.where(starts, flat, 0), axis=1)
