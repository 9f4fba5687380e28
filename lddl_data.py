"""Pre-training batches from LDDL parquet shards, the data of NVIDIA's BERT at HEAD.

NVIDIA's HEAD launchers prepare data with LDDL (`preprocess_bert_pretrain`, then
`balance_dask_output`) into folders such as `pretrain/phase1/unbinned/parquet/` and
`pretrain/phase2/bin_size_64/parquet/`. This module owns that file format (`ParquetShard`),
read with pyarrow alone (the `lddl` package does not install on Python 3.11), and the draw of
one bin per batch in binned folders (`BinnedParquetLoader`); it hands
`pretraining_data.PretrainingDataLoader` shards that yield the same batches as NVIDIA's HDF5
shards. Epochs, rank sharding, prefetch and resume stay with the loader. The README lists where
this reader differs from LDDL's loader.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from errors import MissingDependency, UsageError, refuse_if_nothing_usable
from fileio import check_regular_file, read_json
from pretraining_data import (
    DynamicMasking,
    Piece,
    PretrainingBatch,
    PretrainingDataLoader,
    ShardChecks,
    ShardError,
    ShardPrefetcher,
)
from tokenization import load_vocab

logger = logging.getLogger(__name__)

#: Batches are padded to a multiple of this (LDDL's `sequence_length_alignment`).
SEQUENCE_ALIGNMENT = 8
BASE_COLUMNS = {"A": "string", "B": "string", "is_random_next": "bool"}
MASK_COLUMNS = {"masked_lm_positions": "binary", "masked_lm_labels": "string"}
NUM_SAMPLES_FILE = ".num_samples.json"


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise MissingDependency(
            "reading LDDL parquet shards needs pyarrow: pip install 'pyarrow>=14'"
        ) from None
    return pyarrow


# --------------------------------------------------------------------------------------------
# Files and bins.
# --------------------------------------------------------------------------------------------


def parquet_files(folder: str | os.PathLike) -> list[Path]:
    """LDDL's rule: files under `folder` (recursively) whose extension contains ".parquet"."""
    found = []
    for root, _, names in os.walk(folder):
        found.extend(Path(root, name) for name in names if ".parquet" in os.path.splitext(name)[1])
    return sorted(found, key=str)


def is_parquet_folder(folder: str | os.PathLike) -> bool:
    return Path(folder).is_dir() and bool(parquet_files(folder))


def check_has_samples(folder: str | os.PathLike, flag: str) -> None:
    """Refuse, from the files' footers alone, a folder whose parquet files hold no sample at
    all (training or evaluating on it would have nothing to read); stops at the first file
    with samples."""
    files = parquet_files(folder)
    for path in files:
        check_regular_file(path)
        if read_footer(path)[0]:
            return
    why = f"its {len(files)} parquet files hold 0 rows"
    refuse_if_nothing_usable(0, f"{flag} {os.fspath(folder)}", "samples", why, ShardError)


def check_parquet_input(folder: str | os.PathLike, flag: str, vocab_file: str | None) -> bool:
    """For a folder given to `flag`: False when it is not an LDDL parquet folder; else True once
    it is usable as one (its samples are WordPiece strings, so a vocabulary is needed, and its
    files hold samples), a UsageError or ShardError otherwise. Only footers are read."""
    if not is_parquet_folder(folder):
        return False
    if not vocab_file:
        raise UsageError(
            f"{flag} {os.fspath(folder)} holds LDDL parquet shards, whose samples are "
            "WordPiece strings: pass --vocab_file"
        )
    check_has_samples(folder, flag)
    return True


def bin_id(path: Path) -> int | None:
    """The bin of `shard-<i>.parquet_<bin>`; None for an unbinned `.parquet` file."""
    extension = os.path.splitext(path.name)[1]
    if extension == ".parquet":
        return None
    suffix = extension.removeprefix(".parquet_")
    if extension.startswith(".parquet_") and suffix.isdigit():
        return int(suffix)
    raise ShardError(f"{path}: not an LDDL shard name (*.parquet or *.parquet_<bin id>)")


def files_by_bin(files: list[Path]) -> dict[int | None, list[Path]]:
    """Files grouped by bin id (None: an unbinned folder); bins must be 0, 1, ..., n - 1."""
    groups: dict[int | None, list[Path]] = collections.defaultdict(list)
    for path in files:
        groups[bin_id(path)].append(path)
    if None in groups and len(groups) > 1:
        raise ShardError(
            f"{files[0].parent}: binned (*.parquet_<bin>) and unbinned (*.parquet) shards mixed"
        )
    if None not in groups and sorted(groups) != list(range(len(groups))):
        raise ShardError(
            f"{files[0].parent}: bin ids {sorted(groups)} do not run 0, 1, ... (a bin is missing)"
        )
    return dict(sorted(groups.items(), key=lambda item: -1 if item[0] is None else item[0]))


# --------------------------------------------------------------------------------------------
# One shard.
# --------------------------------------------------------------------------------------------


class Vocabulary:
    """Token strings -> ids, vectorised with pyarrow; unknown tokens become [UNK]."""

    def __init__(self, vocab_file: str | os.PathLike) -> None:
        pa = _pyarrow()
        vocab = load_vocab(vocab_file)
        for token in ("[CLS]", "[SEP]", "[UNK]"):
            if token not in vocab:
                raise ShardError(f"{vocab_file}: the vocabulary has no {token}")
        self.path = Path(vocab_file)
        self.tokens = pa.array(list(vocab))
        # Position in `tokens` -> id; one more entry, for tokens not found, holds [UNK]'s id.
        self.ids = np.array([*vocab.values(), vocab["[UNK]"]], dtype=np.int32)
        self.cls_id, self.sep_id, self.unk_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[UNK]"]
        self.size = int(self.ids.max()) + 1  # ids are line numbers

    def encode(self, column) -> tuple[np.ndarray, np.ndarray, int]:
        """A string column -> (ids of all its tokens, tokens per row, unknown tokens)."""
        pc = _pyarrow().compute
        # Python's str.split() (LDDL's): trimmed first, and an empty cell has no tokens.
        trimmed = pc.utf8_trim_whitespace(column)
        lists = pc.utf8_split_whitespace(trimmed)
        counts = pc.list_value_length(lists).to_numpy(zero_copy_only=False).astype(np.int64)
        counts -= (pc.utf8_length(trimmed).to_numpy(zero_copy_only=False) == 0).astype(np.int64)
        flat = pc.list_flatten(lists)
        positions = pc.index_in(pc.filter(flat, pc.not_equal(flat, "")), value_set=self.tokens)
        found = positions.fill_null(len(self.ids) - 1).to_numpy(zero_copy_only=False)
        return self.ids[found], counts, positions.null_count


def _check_schema(path: Path, schema, static: bool | None) -> bool:
    """Required columns and types; returns whether the file has static masks."""
    pa = _pyarrow()
    kinds = {
        "string": (pa.string(), pa.large_string()),
        "binary": (pa.binary(), pa.large_binary()),
        "bool": (pa.bool_(),),
    }
    has_masks = any(name in schema.names for name in MASK_COLUMNS)
    expected = BASE_COLUMNS | (MASK_COLUMNS if has_masks else {})
    for name, kind in expected.items():
        if name not in schema.names:
            columns = ", ".join(expected)
            raise ShardError(f"{path}: column {name} is missing (LDDL shards have {columns})")
        if schema.field(name).type not in kinds[kind]:
            raise ShardError(
                f"{path}: column {name} has type {schema.field(name).type}, expected {kind}"
            )
    for name in ("num_tokens", "bin_id"):  # optional, but compared as numbers when present
        if name in schema.names and not pa.types.is_integer(schema.field(name).type):
            raise ShardError(
                f"{path}: column {name} has type {schema.field(name).type}, expected integers"
            )
    if static is not None and has_masks != static:
        state = "has" if has_masks else "lacks"
        raise ShardError(
            f"{path}: {state} the masked_lm_positions/labels columns, unlike the shards before "
            "it; static and dynamic masking are mixed in one folder"
        )
    return has_masks


def _read_positions(path: Path, cells: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """masked_lm_positions cells (numpy.save bytes) -> (all positions, positions per row)."""
    arrays = []
    for row, cell in enumerate(cells):
        try:
            array = np.lib.format.read_array(io.BytesIO(cell), allow_pickle=False)
        except (ValueError, TypeError, OSError, EOFError) as err:
            raise ShardError(
                f"{path}: column masked_lm_positions, row {row}: not a saved numpy array ({err})"
            ) from None
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ShardError(
                f"{path}: column masked_lm_positions, row {row}: expected a 1-D integer array, "
                f"got {array.dtype} of shape {array.shape}"
            )
        arrays.append(array.astype(np.int64))
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    return flat, counts


class ParquetShard:
    """One LDDL parquet file in memory, as token ids; `batch(indices)` builds padded tensors.

    Each sample is kept as `[CLS] A [SEP] B [SEP]` ids; `lengths` counts them per sample.

    The format, as LDDL writes it: every file under the folder (recursively) whose extension
    contains `.parquet`, sorted by path: `shard-<i>.parquet` after balancing (`part.<i>.parquet`
    before), `shard-<i>.parquet_<bin>` when binned, bin ids 0, 1, ...; a `.num_samples.json`
    beside them maps file names to sample counts. Columns: `A` and `B` (strings: WordPiece
    tokens joined by single spaces, already masked when masking was static), `is_random_next`
    (bool), `num_tokens` (uint16, len(A) + len(B) + 3); with static masking also
    `masked_lm_positions` (binary: a uint16 numpy array saved with `numpy.save`, positions in
    `[CLS] A [SEP] B [SEP]`, sorted) and `masked_lm_labels` (the original tokens,
    space-joined); binned files also `bin_id` (int64). Segment 1 runs from B to the last [SEP];
    tokens missing from the vocabulary become [UNK] (as LDDL's tokenizer does); a batch is
    `[input_ids, segment_ids, input_mask, masked_lm_labels, next_sentence_labels]`, int64,
    [B, S] x 4 and [B], padded to its longest sample rounded up to a multiple of 8, labels -1
    where nothing is predicted. Without masked columns, each batch is masked afresh (Bernoulli
    0.15 over the non-special tokens, then 80% [MASK], 10% a random id, 10% kept).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        vocab: Vocabulary,
        static: bool | None = None,
        max_seq_length: int | None = None,
        checks: ShardChecks | None = None,
    ) -> None:
        self.path = Path(path)
        pq = _pyarrow().parquet
        check_regular_file(self.path)
        try:
            table = pq.read_table(self.path)
        except Exception as err:  # pyarrow raises several types for a damaged file
            raise ShardError(f"{self.path}: not a readable parquet file ({err})") from None
        self.static = _check_schema(self.path, table.schema, static)
        for name in (*BASE_COLUMNS, *(MASK_COLUMNS if self.static else ())):
            if table.column(name).null_count:
                raise ShardError(f"{self.path}: column {name} has empty (null) cells")
        ids_a, len_a, unknown_a = vocab.encode(table.column("A"))
        ids_b, len_b, unknown_b = vocab.encode(table.column("B"))
        self.len_a = len_a
        self.lengths = len_a + len_b + 3
        self._check_lengths(table, len_a, len_b, max_seq_length)
        self.tokens, self.offsets = self._join(ids_a, len_a, ids_b, len_b, vocab)
        nsp = table.column("is_random_next").to_numpy(zero_copy_only=False)
        self.next_sentence = nsp.astype(np.int64)
        unknown = unknown_a + unknown_b + (self._read_masks(table, vocab) if self.static else 0)
        self.unknown_tokens = unknown
        if unknown:
            logger.warning(
                "%s: %d token(s) are not in %s and become [UNK]; was another vocabulary used?",
                self.path,
                unknown,
                vocab.path,
            )
        if checks is not None:  # [UNK] from the text itself or from tokens missing above
            unknown_ids = int(np.count_nonzero(self.tokens == vocab.unk_id))
            words = len(self.tokens) - 3 * len(self.lengths)  # [CLS] and two [SEP] aside
            checks.warn_if_mostly_unknown(str(self.path), unknown_ids, words, vocab.path)
        self.bin_ids = None
        if "bin_id" in table.column_names:
            self.bin_ids = table.column("bin_id").to_numpy(zero_copy_only=False)

    def _check_lengths(self, table, len_a, len_b, max_seq_length: int | None) -> None:
        empty = np.flatnonzero((len_a == 0) | (len_b == 0))
        if len(empty):
            raise ShardError(f"{self.path}: row {empty[0]}: column A or B holds no tokens")
        if "num_tokens" in table.column_names:
            stored = table.column("num_tokens").to_numpy(zero_copy_only=False)
            wrong = np.flatnonzero(stored != self.lengths)
            if len(wrong):
                row = wrong[0]
                raise ShardError(
                    f"{self.path}: column num_tokens, row {row}: {stored[row]}, but A and B "
                    f"hold {self.lengths[row] - 3} tokens (+3 special); another vocabulary?"
                )
        if max_seq_length is not None and len(self.lengths) and self.lengths.max() > max_seq_length:
            row = int(self.lengths.argmax())
            raise ShardError(
                f"{self.path}: row {row} has {self.lengths[row]} tokens, more than "
                f"--max_seq_length {max_seq_length}"
            )

    @staticmethod
    def _join(ids_a, len_a, ids_b, len_b, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
        """Flat `[CLS] A [SEP] B [SEP]` ids of every row, and each row's start (and the end)."""
        lengths = len_a + len_b + 3
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.empty(offsets[-1], dtype=np.int32)
        starts = offsets[:-1]
        tokens[starts] = vocab.cls_id
        tokens[starts + len_a + 1] = vocab.sep_id
        tokens[offsets[1:] - 1] = vocab.sep_id
        a_rows = np.repeat(np.arange(len(lengths)), len_a)
        a_within = np.arange(len(ids_a)) - np.repeat(np.cumsum(len_a) - len_a, len_a)
        tokens[starts[a_rows] + 1 + a_within] = ids_a
        b_rows = np.repeat(np.arange(len(lengths)), len_b)
        b_within = np.arange(len(ids_b)) - np.repeat(np.cumsum(len_b) - len_b, len_b)
        tokens[starts[b_rows] + len_a[b_rows] + 2 + b_within] = ids_b
        return tokens, offsets

    def _read_masks(self, table, vocab: Vocabulary) -> int:
        """Masked positions and label ids; returns the number of labels not in the vocab."""
        cells = table.column("masked_lm_positions").to_pylist()
        positions, counts = _read_positions(self.path, cells)
        labels, label_counts, unknown = vocab.encode(table.column("masked_lm_labels"))
        bad = np.flatnonzero(counts != label_counts)
        if len(bad):
            row = bad[0]
            raise ShardError(
                f"{self.path}: column masked_lm_labels, row {row}: {label_counts[row]} labels "
                f"for {counts[row]} masked_lm_positions"
            )
        rows = np.repeat(np.arange(len(counts)), counts)
        outside = np.flatnonzero((positions < 1) | (positions >= self.lengths[rows] - 1))
        if len(outside):
            row = rows[outside[0]]
            raise ShardError(
                f"{self.path}: column masked_lm_positions, row {row}: position "
                f"{positions[outside[0]]} is outside the {self.lengths[row]} tokens"
            )
        order = np.lexsort((positions, rows))  # by row, then position
        twice = np.flatnonzero((np.diff(rows[order]) == 0) & (np.diff(positions[order]) == 0))
        if len(twice):
            row = rows[order][twice[0]]
            raise ShardError(
                f"{self.path}: column masked_lm_positions, row {row}: position "
                f"{positions[order][twice[0]]} is masked twice (two labels for one token)"
            )
        self.mask_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.mask_offsets[1:])
        self.mask_positions, self.mask_labels = positions, labels.astype(np.int64)
        return unknown

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, indices: np.ndarray | list[int]) -> PretrainingBatch:
        """The samples at `indices`: [B, S] x 4 and [B], S the longest rounded up to 8."""
        indices = np.asarray(indices, dtype=np.int64)
        longest = int(self.lengths[indices].max())
        width = -(-longest // SEQUENCE_ALIGNMENT) * SEQUENCE_ALIGNMENT
        input_ids = np.zeros((len(indices), width), dtype=np.int64)
        segment_ids = np.zeros_like(input_ids)
        input_mask = np.zeros_like(input_ids)
        labels = np.full_like(input_ids, -1)
        for i, row in enumerate(indices):
            start, stop = self.offsets[row], self.offsets[row + 1]
            length = stop - start
            input_ids[i, :length] = self.tokens[start:stop]
            segment_ids[i, self.len_a[row] + 2 : length] = 1  # B and the final [SEP]
            input_mask[i, :length] = 1
            if self.static:
                first, last = self.mask_offsets[row], self.mask_offsets[row + 1]
                labels[i, self.mask_positions[first:last]] = self.mask_labels[first:last]
        return PretrainingBatch(
            torch.from_numpy(input_ids),
            torch.from_numpy(segment_ids),
            torch.from_numpy(input_mask),
            torch.from_numpy(labels),
            torch.from_numpy(self.next_sentence[indices]),
        )


class ParquetShards:
    """The shard format of LDDL parquet files for `PretrainingDataLoader`.

    Sample counts come from `.num_samples.json` where it lists the file (LDDL's rule, which
    spares opening every file), else from the file's footer, whose schema is then checked too.
    A shard's columns are always checked when it is read.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        static: bool,
        max_seq_length: int | None = None,
        checks: ShardChecks | None = None,
    ):
        self.vocab, self.static, self.max_seq_length = vocab, static, max_seq_length
        self.checks = checks or ShardChecks()
        self._counts: dict[Path, dict] = {}

    def shape(self, path: Path) -> tuple[int, None, None]:
        listed = self._listed_counts(path.parent).get(path.name)
        if listed is not None:
            return int(listed), None, None
        return read_footer(path, self.static)[0], None, None

    def _listed_counts(self, folder: Path) -> dict:
        if folder not in self._counts:
            try:
                self._counts[folder] = read_json(folder / NUM_SAMPLES_FILE)
            except (OSError, ValueError):
                self._counts[folder] = {}
        return self._counts[folder]

    def open(self, path: Path) -> ParquetShard:
        shard = ParquetShard(path, self.vocab, self.static, self.max_seq_length, self.checks)
        self.check_count(shard)
        return shard

    def check_count(self, shard: ParquetShard) -> None:
        path = shard.path
        expected = self._listed_counts(path.parent).get(path.name)
        if expected is not None and int(expected) != len(shard):
            raise ShardError(
                f"{path}: {len(shard)} samples, but {path.parent / NUM_SAMPLES_FILE} says "
                f"{expected}; remove the stale {NUM_SAMPLES_FILE}"
            )


def read_footer(path: Path, static: bool | None = None) -> tuple[int, bool]:
    """(samples, static masks) of a parquet file from its footer, with the schema checked."""
    pq = _pyarrow().parquet
    try:
        metadata = pq.ParquetFile(path).metadata
        schema = metadata.schema.to_arrow_schema()
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ShardError(f"{path}: not a readable parquet file ({err})") from None
    return metadata.num_rows, _check_schema(path, schema, static)


# --------------------------------------------------------------------------------------------
# The loader of binned folders.
# --------------------------------------------------------------------------------------------


class BinnedParquetLoader(PretrainingDataLoader):
    """Endless micro-batches of a binned LDDL folder: each batch from one bin, every sample once
    per epoch, resumable at the next batch.

    The bin of each step is drawn with probability proportional to the samples it has left in
    the epoch, counted over all ranks, among the bins every rank still has batches in, by a
    generator seeded with `seed + epoch` that is the same on every rank, so all ranks train on
    the same bin at each step (LDDL's draws when ranks hold equal counts, as LDDL requires).
    Batches a rank has left after that are drawn from its own bins.

    `sharding="files"`: each rank walks its own files of every bin (files split into parts when
    a bin has fewer files than ranks). `sharding="interleaved"`: every rank walks the stream of
    a single process and keeps every W-th batch. `state()["batch_index"]` is the position in
    this rank's stream of the epoch.
    """

    def __init__(self, files_of_bin: dict[int, list[Path]], micro_batch: int, **options) -> None:
        self.bin_of = {path: b for b, paths in files_of_bin.items() for path in paths}
        if options.get("bin_size"):
            raise ShardError(
                f"{next(iter(self.bin_of)).parent}: the folder is binned by LDDL already; drop "
                "--bin_size"
            )
        files = [path for paths in files_of_bin.values() for path in paths]
        super().__init__(files, micro_batch, **options)
        self.bins = sorted(files_of_bin)

    def _make_pieces(self, sizes: dict[Path, int]) -> list[Piece]:
        """The pieces of each bin apart, so that every rank gets files of every bin."""
        pieces: list[Piece] = []
        for b in sorted(set(self.bin_of.values())):
            of_bin = {path: rows for path, rows in sizes.items() if self.bin_of[path] == b}
            for piece in super()._make_pieces(of_bin):
                pieces.append(Piece(piece.file, piece.start, piece.stop, len(pieces)))
        return pieces

    def _ranks_with_data(self) -> int:
        """With `sharding="files"` rank r gets pieces of a bin when the bin has more than r."""
        if self.sharding == "interleaved":
            return self._batches_per_epoch()
        return max(collections.Counter(self.bin_of[piece.file] for piece in self.pieces).values())

    def _streams(self, epoch: int) -> list[dict[int, list[Piece]]]:
        """Per stream (a rank, or the one interleaved stream), its pieces of each bin in order."""
        order = list(self.pieces)
        random.Random(self.seed + epoch).shuffle(order)
        count = self.world_size if self.sharding == "files" else 1
        streams: list[dict[int, list[Piece]]] = [{b: [] for b in self.bins} for _ in range(count)]
        seen = collections.Counter()
        for piece in order:
            b = self.bin_of[piece.file]
            streams[seen[b] % count][b].append(piece)
            seen[b] += 1
        return streams

    def _batch_sizes(self, pieces: list[Piece]) -> np.ndarray:
        step = self.micro_batch
        sizes = []
        for piece in pieces:
            full, rest = divmod(piece.stop - piece.start, step)
            sizes.extend([step] * full + ([rest] if rest else []))
        return np.asarray(sizes, dtype=np.int64)

    def schedule(self, epoch: int) -> list[int]:
        """The bin of each batch of this rank's stream in `epoch` (the same on every rank while
        every rank has batches of the drawn bins)."""
        streams = self._streams(epoch)
        sizes = [{b: self._batch_sizes(stream[b]) for b in self.bins} for stream in streams]
        rng = random.Random(self.seed + epoch)  # LDDL's bin generator, the same on every rank
        # Lock-step: every stream takes its next batch of the drawn bin, while all have one.
        steps = {b: min(len(stream[b]) for stream in sizes) for b in self.bins}
        step_samples = {b: sum(stream[b][: steps[b]] for stream in sizes) for b in self.bins}
        left = {b: int(sum(stream[b].sum() for stream in sizes)) for b in self.bins}
        drawn = dict.fromkeys(self.bins, 0)
        plan = []
        while any(drawn[b] < steps[b] for b in self.bins):
            weights = [left[b] if drawn[b] < steps[b] else 0 for b in self.bins]
            b = rng.choices(self.bins, weights)[0]
            left[b] -= int(step_samples[b][drawn[b]])
            drawn[b] += 1
            plan.append(b)
        # Then this rank's own leftover batches, weighted by what it has left.
        mine = sizes[self.rank if self.sharding == "files" else 0]
        own = {b: int(mine[b][drawn[b] :].sum()) for b in self.bins}
        while any(own.values()):
            b = rng.choices(self.bins, [own[b] for b in self.bins])[0]
            own[b] -= int(mine[b][drawn[b]])
            drawn[b] += 1
            plan.append(b)
        return plan

    def __iter__(self):
        prefetchers = {b: ShardPrefetcher(self.shard_format.open, self.prefetch) for b in self.bins}
        try:
            while True:
                yield from self._epoch_batches(prefetchers)
                self.epoch += 1
                self.batch_index = 0
        finally:
            for prefetcher in prefetchers.values():
                prefetcher.close()

    def _epoch_batches(self, prefetchers: dict):
        plan = self.schedule(self.epoch)
        if not plan:
            raise ShardError(f"rank {self.rank} gets no samples: the folder has fewer than ranks")
        me = self.rank if self.sharding == "files" else 0
        pieces = self._streams(self.epoch)[me]
        done = collections.Counter(plan[: self.batch_index])
        batches = {b: self._bin_batches(pieces[b], done[b]) for b in self.bins}
        current: dict[int, tuple[Path, object]] = {}
        for k in range(self.batch_index, len(plan)):
            b = plan[k]
            piece, indices, upcoming = next(batches[b])
            self.batch_index = k + 1
            if self.sharding == "interleaved" and k % self.world_size != self.rank:
                continue
            if b not in current or current[b][0] != piece.file:
                current[b] = (piece.file, prefetchers[b].get(piece.file, upcoming))
            yield self._batch(current[b][1], indices, [self.seed, self.epoch, piece.index, k])

    def _bin_batches(self, pieces: list[Piece], skip: int):
        """(piece, row indices, the next piece's file) of each batch of one bin, in order."""
        for position, piece in enumerate(pieces):
            upcoming = pieces[position + 1].file if position + 1 < len(pieces) else None
            for indices in self._batches(self.epoch, piece, None):
                if skip:
                    skip -= 1
                    continue
                yield piece, indices, upcoming


# --------------------------------------------------------------------------------------------
# Building a loader for a folder.
# --------------------------------------------------------------------------------------------


def parquet_loader(
    input_dir: str | os.PathLike,
    micro_batch: int,
    vocab_file: str | os.PathLike | None,
    *,
    dynamic_masking: DynamicMasking | None = None,
    max_seq_length: int | None = None,
    checks: ShardChecks | None = None,
    **options,
) -> PretrainingDataLoader:
    """The loader of an LDDL folder (binned or not); `options` go to `PretrainingDataLoader`.

    Folders without masked columns are masked dynamically, as LDDL does, unless
    `dynamic_masking` is given (which re-masks statically masked folders too). `checks` gives
    the model's vocabulary size, which the vocabulary's ids must fit, and warns once about a
    shard that is mostly [UNK].
    """
    files = parquet_files(input_dir)
    if not files:
        raise ShardError(f"--input_dir {input_dir}: no *.parquet files")
    if vocab_file is None:
        raise ShardError(
            f"--input_dir {input_dir} holds LDDL parquet shards, whose samples are WordPiece "
            "strings: pass --vocab_file (NVIDIA's launchers pass vocab/vocab)"
        )
    vocab = Vocabulary(vocab_file)
    checks = checks or ShardChecks()
    if checks.vocab_size is not None and vocab.size > checks.vocab_size:
        raise ShardError(
            f"--vocab_file {vocab_file} has {vocab.size} tokens, more than the model's "
            f"{checks.vocab_size}; the parquet shards' ids would index past the embedding"
        )
    groups = files_by_bin(files)
    static = None
    for paths in groups.values():  # one file of each bin checked before anything is loaded
        static = read_footer(paths[0], static)[1]
    if not static and dynamic_masking is None:
        dynamic_masking = DynamicMasking.from_vocab_file(vocab_file)
        logger.info("%s has no masked columns: masking each batch dynamically", input_dir)
    shard_format = ParquetShards(vocab, static, max_seq_length, checks)
    options = {**options, "dynamic_masking": dynamic_masking, "shard_format": shard_format}
    if None in groups:
        loader = PretrainingDataLoader(files, micro_batch, **options)
    else:
        loader = BinnedParquetLoader(groups, micro_batch, **options)
    if not loader.pieces:  # LDDL writes empty files for empty bins; all empty is an error
        raise ShardError(f"--input_dir {input_dir}: the parquet files hold no samples")
    return loader
