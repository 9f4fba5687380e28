"""Pre-training instances from text: documents, A/B pairs, masking, and writing HDF5 shards.

Owns Google's instance algorithm as NVIDIA ships it, draw for draw: documents shuffled,
`dupe_factor` passes, short target lengths, A/B pairs with random next sentences and NVIDIA's
same-document rule, truncation from either end, 80/10/10 masking at sorted positions capped at
`max_predictions_per_seq` (whole words with `do_whole_word_mask`, Google's rules), instances
shuffled. Also owns reading the text (one sentence per line, a blank line between documents;
a folder file by file, so memory is bounded by one file) and writing shards in the layout of
`shard_format.py`, one job per output file, jobs in parallel processes (a write that fails, on a
full disk or past a file-size limit, is one error naming the shard). The command line is
`create_pretraining_data.py`'s, which the README's differences table covers.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

import cli
import shard_format
from errors import BertError, UsageError
from fileio import atomic_path, check_regular_file, sha256_file
from shard_format import SHARD_DTYPES
from tokenization import BertTokenizer

#: Lines tokenized per call, so the fast backend can batch without holding a whole file.
TOKENIZE_BLOCK_LINES = 4096


class DataError(BertError, ValueError):
    """Bad input data or settings; the message names the file (and line) or the flag."""


@dataclasses.dataclass(frozen=True)
class InstanceOptions:
    """Settings of the instance and masking algorithm (NVIDIA's flags and defaults)."""

    max_seq_length: int = 128
    dupe_factor: int = 10
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    random_seed: int = 12345
    do_whole_word_mask: bool = False

    @classmethod
    def from_settings(cls, settings: object) -> InstanceOptions:
        """Options from any object with attributes of the same names (parsed flags, settings)."""
        options = cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)})
        options.validate()
        return options

    def validate(self) -> None:
        if self.max_seq_length < 5:
            raise DataError(
                f"--max_seq_length {self.max_seq_length} is too small: an instance needs "
                "[CLS] A [SEP] B [SEP] with at least 2 text tokens, so at least 5"
            )
        if self.dupe_factor < 1:
            raise DataError(f"--dupe_factor must be at least 1, got {self.dupe_factor}")
        if self.max_predictions_per_seq < 1:
            raise DataError(
                f"--max_predictions_per_seq must be at least 1, got {self.max_predictions_per_seq}"
            )
        if not 0 < self.masked_lm_prob <= 1:
            raise DataError(f"--masked_lm_prob must be in (0, 1], got {self.masked_lm_prob}")
        if not 0 <= self.short_seq_prob <= 1:
            raise DataError(f"--short_seq_prob must be in [0, 1], got {self.short_seq_prob}")


# --------------------------------------------------------------------------------------------
# Reading documents.
# --------------------------------------------------------------------------------------------


def input_files(input_path: str | os.PathLike) -> list[Path]:
    """The `.txt` files of a folder in sorted order, or the one file given."""
    path = Path(input_path)
    check_regular_file(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".txt")
        if not files:
            raise DataError(f"--input_file {path}: the folder holds no .txt files")
        return files
    raise DataError(f"--input_file {path}: no such file or folder")


def decoded_lines(path: Path) -> Iterator[str]:
    """Stripped lines of a UTF-8 file; bad bytes stop with the file and line number."""
    with open(path, "rb") as reader:
        for line_number, raw in enumerate(reader, start=1):
            try:
                yield raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}:{line_number}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at "
                    f"column {err.start + 1}); convert the file to UTF-8"
                ) from None


def read_documents(path: Path, tokenizer: BertTokenizer) -> list[list[np.ndarray]]:
    """Documents of one file: lists of sentences, each the int32 token ids of one line.

    Google's rules: a blank line ends a document, a line that tokenizes to nothing is skipped,
    empty documents are dropped.
    """
    documents: list[list[np.ndarray]] = [[]]
    block: list[str] = []

    def flush() -> None:
        for line, tokens in zip(block, tokenizer.tokenize_batch(block), strict=True):
            if not line:
                documents.append([])
            elif tokens:
                documents[-1].append(
                    np.asarray(tokenizer.convert_tokens_to_ids(tokens), dtype=np.int32)
                )
        block.clear()

    for line in decoded_lines(path):
        block.append(line)
        if len(block) >= TOKENIZE_BLOCK_LINES:
            flush()
    flush()
    return [document for document in documents if document]


# --------------------------------------------------------------------------------------------
# The instance algorithm (Google/NVIDIA), on token ids.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Vocabulary:
    """What the masking needs from the tokenizer, as ids."""

    cls_id: int
    sep_id: int
    mask_id: int
    word_ids: list[int]  # id of each entry of list(vocab.keys()), for random replacements
    # ids of the tokens that start with "##" (Google's test for a word's continuation piece)
    continuation_ids: frozenset[int] = frozenset()

    @classmethod
    def from_tokenizer(cls, tokenizer: BertTokenizer) -> Vocabulary:
        vocab = tokenizer.vocab
        missing = [t for t in ("[CLS]", "[SEP]", "[MASK]") if t not in vocab]
        if missing:
            raise DataError(f"{tokenizer.vocab_file}: the vocabulary lacks {', '.join(missing)}")
        pieces = frozenset(i for token, i in vocab.items() if token.startswith("##"))
        return cls(vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"], list(vocab.values()), pieces)


class InstanceWriter:
    """Accumulates instances as fixed-width rows (the shard's own layout), growing in blocks."""

    def __init__(self, seq_length: int, max_predictions: int) -> None:
        self.seq_length = seq_length
        self.max_predictions = max_predictions
        self.count = 0
        self.arrays = self._allocate(1024)

    def _allocate(self, rows: int) -> dict[str, np.ndarray]:
        shapes = shard_format.shapes(rows, self.seq_length, self.max_predictions)
        return {key: np.zeros(shape, dtype=SHARD_DTYPES[key]) for key, shape in shapes.items()}

    def add(
        self,
        input_ids: np.ndarray,
        len_a: int,
        positions: list[int],
        labels: list[int],
        is_random_next: bool,
    ) -> None:
        if self.count == len(self.arrays["next_sentence_labels"]):
            grown = self._allocate(2 * self.count)
            for key, array in self.arrays.items():
                grown[key][: self.count] = array
            self.arrays = grown
        row, length = self.count, len(input_ids)
        self.arrays["input_ids"][row, :length] = input_ids
        self.arrays["input_mask"][row, :length] = 1
        self.arrays["segment_ids"][row, len_a + 2 : length] = 1  # B and the final [SEP]
        self.arrays["masked_lm_positions"][row, : len(positions)] = positions
        self.arrays["masked_lm_ids"][row, : len(labels)] = labels
        self.arrays["next_sentence_labels"][row] = int(is_random_next)
        self.count += 1

    def shuffled(self, rng: random.Random) -> dict[str, np.ndarray]:
        """The rows in Google's final `rng.shuffle(instances)` order."""
        order = list(range(self.count))
        rng.shuffle(order)  # the permutation depends only on the length: same as shuffling rows
        return {key: array[order] for key, array in self.arrays.items()}


def _truncate_pair(len_a: int, len_b: int, max_tokens: int, rng: random.Random) -> tuple:
    """Google's truncate_seq_pair on spans: (cut_front_a, cut_back_a, cut_front_b, cut_back_b)."""
    cuts = [0, 0, 0, 0]
    while len_a + len_b > max_tokens:
        truncate_a = len_a > len_b
        front = rng.random() < 0.5
        cuts[(0 if truncate_a else 2) + (0 if front else 1)] += 1
        if truncate_a:
            len_a -= 1
        else:
            len_b -= 1
    return tuple(cuts)


def _mask_candidates(tokens: np.ndarray, whole_word: bool, vocab: Vocabulary) -> list[list[int]]:
    """Google's candidate index lists: every token but [CLS] and [SEP] alone, or with
    `whole_word` a "##" piece appended to the candidate before it (across a [SEP] too)."""
    candidates: list[list[int]] = []
    for i, token in enumerate(tokens.tolist()):
        if token == vocab.cls_id or token == vocab.sep_id:
            continue
        if whole_word and candidates and token in vocab.continuation_ids:
            candidates[-1].append(i)
        else:
            candidates.append([i])
    return candidates


def _mask_tokens(
    tokens: np.ndarray, options: InstanceOptions, vocab: Vocabulary, rng: random.Random
) -> tuple[list[int], list[int]]:
    """Google's create_masked_lm_predictions; masks `tokens` in place, returns (positions, ids).

    Without whole-word masking every candidate is one index, so the walk takes the first
    `num_to_predict` of them: NVIDIA's draws exactly.
    """
    candidates = _mask_candidates(tokens, options.do_whole_word_mask, vocab)
    rng.shuffle(candidates)  # the permutation depends only on the length, as with plain indexes
    num_to_predict = min(
        options.max_predictions_per_seq,
        max(1, round(len(tokens) * options.masked_lm_prob)),
    )
    masked = []
    for group in candidates:
        if len(masked) >= num_to_predict:
            break
        if len(masked) + len(group) > num_to_predict:  # Google skips a word that would not fit
            continue
        # Google also skips a group holding an index already masked: the groups are disjoint.
        for index in group:
            original = int(tokens[index])
            if rng.random() < 0.8:
                tokens[index] = vocab.mask_id
            elif rng.random() >= 0.5:  # else: 10% keep the original token
                tokens[index] = vocab.word_ids[rng.randint(0, len(vocab.word_ids) - 1)]
            masked.append((index, original))
    masked.sort()
    return [index for index, _ in masked], [original for _, original in masked]


def instances_from_document(
    documents: Sequence[list[np.ndarray]],
    document_index: int,
    options: InstanceOptions,
    vocab: Vocabulary,
    rng: random.Random,
    writer: InstanceWriter,
) -> None:
    """Google's create_instances_from_document, with NVIDIA's same-document rule."""
    document = documents[document_index]
    max_num_tokens = options.max_seq_length - 3
    target_seq_length = max_num_tokens
    if rng.random() < options.short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    chunk: list[np.ndarray] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        chunk.append(document[i])
        chunk_length += len(document[i])
        if i == len(document) - 1 or chunk_length >= target_seq_length:
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = np.concatenate(chunk[:a_end])
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random_next = True
                target_b_length = target_seq_length - len(tokens_a)
                for _ in range(10):
                    random_index = rng.randint(0, len(documents) - 1)
                    if random_index != document_index:
                        break
                if random_index == document_index:  # NVIDIA: then it is not a random next
                    is_random_next = False
                random_document = documents[random_index]
                pieces, length = [], 0
                for sentence in random_document[rng.randint(0, len(random_document) - 1) :]:
                    pieces.append(sentence)
                    length += len(sentence)
                    if length >= target_b_length:
                        break
                tokens_b = np.concatenate(pieces)
                i -= len(chunk) - a_end  # the unused sentences are put back
            else:
                is_random_next = False
                tokens_b = np.concatenate(chunk[a_end:])
            front_a, back_a, front_b, back_b = _truncate_pair(
                len(tokens_a), len(tokens_b), max_num_tokens, rng
            )
            tokens_a = tokens_a[front_a : len(tokens_a) - back_a]
            tokens_b = tokens_b[front_b : len(tokens_b) - back_b]
            tokens = np.concatenate(
                [[vocab.cls_id], tokens_a, [vocab.sep_id], tokens_b, [vocab.sep_id]]
            ).astype(np.int32)
            positions, labels = _mask_tokens(tokens, options, vocab, rng)
            writer.add(tokens, len(tokens_a), positions, labels, is_random_next)
            chunk, chunk_length = [], 0
        i += 1


def create_instances(
    documents: list[list[np.ndarray]],
    options: InstanceOptions,
    vocab: Vocabulary,
    rng: random.Random,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """All instances of a document pool, shuffled, as shard arrays (Google's algorithm)."""
    rng.shuffle(documents)
    writer = InstanceWriter(options.max_seq_length, options.max_predictions_per_seq)
    total = options.dupe_factor * len(documents)
    with tqdm(total=total, desc="instances", unit="doc", disable=not progress, leave=False) as bar:
        for _ in range(options.dupe_factor):
            for document_index in range(len(documents)):
                instances_from_document(documents, document_index, options, vocab, rng, writer)
                bar.update()
    return writer.shuffled(rng)


# --------------------------------------------------------------------------------------------
# Writing shards.
# --------------------------------------------------------------------------------------------


def check_writable(output: Path) -> None:
    """Fail before any work if `output` cannot be written (a real write test in the folder it
    goes to, or the nearest one that exists; nothing is created)."""
    try:
        cli.check_output_file(output, "")
    except UsageError as err:
        raise DataError(f"cannot write {err}") from None


class _GuardedFile:
    """The file object HDF5 writes a shard through (h5py's file-object driver).

    HDF5 cannot recover from a failed write: the file can no longer be closed, and the process
    crashes when it exits. So the first OSError (no space, file-size limit, I/O error) is kept
    in `failure` and not passed on; from then on what HDF5 writes stays in memory, where it
    reads it back, so that the file closes cleanly. `ShardFile` then raises the error."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = open(path, "w+b", buffering=0)  # noqa: SIM115 (closed by ShardFile)
        self.failure: OSError | None = None
        self.kept: dict[int, bytes] = {}  # offset -> bytes HDF5 wrote after the failure
        self.position = 0
        self.size = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = base + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        if self.failure is None:
            try:
                self.raw.seek(self.position)
                done = 0
                while done < len(view):
                    done += self.raw.write(view[done:]) or 0
            except OSError as err:
                self._failed(err)
        if self.failure is not None:
            self.kept[self.position] = bytes(view)
        self.position += len(view)
        self.size = max(self.size, self.position)
        return len(view)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        view = memoryview(buffer).cast("B")
        self.raw.seek(self.position)
        got = self.raw.readinto(view) or 0
        view[got:] = bytes(len(view) - got)
        for start, data in self.kept.items():  # only after a failure
            low, high = max(start, self.position), min(start + len(data), self.position + len(view))
            if low < high:
                view[low - self.position : high - self.position] = data[low - start : high - start]
        count = max(0, min(len(view), self.size - self.position))
        self.position += count
        return count

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(max(0, self.size - self.position) if size < 0 else size)
        return bytes(buffer[: self.readinto(buffer)])

    def truncate(self, size: int) -> int:
        if self.failure is None:
            try:
                self.raw.truncate(size)
            except OSError as err:
                self._failed(err)
        self.size = size
        return size

    def flush(self) -> None:
        """Nothing to do: the file is unbuffered."""

    def _failed(self, err: OSError) -> None:
        self.failure = OSError(err.errno, err.strerror, str(self.path))

    def close(self) -> None:
        self.raw.close()


class ShardFile:
    """An HDF5 shard being written at `path`: the six datasets grow as instances are appended.

    Compressed with gzip, as NVIDIA's are. A context manager that closes the file; `create_shard`
    opens it on a temporary path from `fileio.atomic_path`, so a failure never leaves a
    half-written shard under the real name. A failed write raises its OSError (naming `path`)
    from `append` or on closing, after HDF5 has let go of the file.
    """

    def __init__(self, path: Path, seq_length: int, max_predictions: int) -> None:
        self.sink = _GuardedFile(path)
        self.file = h5py.File(self.sink, "w")
        for key, shape in shard_format.shapes(0, seq_length, max_predictions).items():
            width = shape[1:]
            self.file.create_dataset(
                key,
                shape=(0, *width),
                maxshape=(None, *width),
                chunks=(256, *width),
                dtype=SHARD_DTYPES[key],
                compression="gzip",
            )
        self.count = 0

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        rows = len(arrays["next_sentence_labels"])
        for key in SHARD_DTYPES:
            dataset = self.file[key]
            dataset.resize(self.count + rows, axis=0)
            dataset[self.count :] = arrays[key]
        self.count += rows
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self.sink.failure is not None:
            raise self.sink.failure

    def set_attributes(self, attributes: dict[str, object]) -> None:
        for name, value in attributes.items():
            self.file.attrs[name] = value

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.file.close()
        finally:
            self.sink.close()
        if exc_info[0] is None:
            self._raise_failure()


@dataclasses.dataclass(frozen=True)
class ShardJob:
    """One output shard from one or more input files (picklable, for worker processes)."""

    inputs: tuple[Path, ...]
    output: Path
    vocab_file: Path
    do_lower_case: bool
    options: InstanceOptions
    tokenizer_backend: str = "python"
    progress: bool = False


def create_shard(job: ShardJob) -> dict[str, object]:
    """Build and write one shard; returns a summary (instances, tokens, bytes, seconds)."""
    started = time.perf_counter()
    tokenizer = BertTokenizer(
        job.vocab_file, do_lower_case=job.do_lower_case, backend=job.tokenizer_backend
    )
    vocab = Vocabulary.from_tokenizer(tokenizer)
    check_writable(job.output)
    # Each file is its own document pool with its own RNG, as NVIDIA's pipeline runs one process
    # per text shard with the same seed: a folder gives the per-file shards concatenated.
    options = job.options
    with (
        atomic_path(job.output) as tmp,
        ShardFile(tmp, options.max_seq_length, options.max_predictions_per_seq) as shard,
    ):
        documents_total = 0
        for path in job.inputs:
            documents = read_documents(path, tokenizer)
            documents_total += len(documents)
            if documents:
                rng = random.Random(options.random_seed)
                shard.append(create_instances(documents, options, vocab, rng, job.progress))
        if documents_total == 0:
            names = ", ".join(str(p) for p in job.inputs)
            raise DataError(
                f"{names}: no text found (expected one sentence per line, a blank line between "
                "documents)"
            )
        shard.set_attributes(
            {
                "created_by": shard_format.CREATED_BY,
                shard_format.VOCAB_SHA256: sha256_file(job.vocab_file),
                "vocab_size": len(tokenizer),
                "do_lower_case": job.do_lower_case,
                "input_files": [p.name for p in job.inputs],
                **dataclasses.asdict(options),
            }
        )
    return {
        "output": str(job.output),
        "instances": shard.count,
        "documents": documents_total,
        "input_bytes": sum(p.stat().st_size for p in job.inputs),
        "seconds": time.perf_counter() - started,
    }


def create_shards(jobs: Sequence[ShardJob], processes: int = 1, progress: bool = True) -> list:
    """Run shard jobs, `processes` at a time; every job is awaited and any failure is raised."""
    if processes <= 1 or len(jobs) <= 1:
        return [create_shard(job) for job in tqdm(jobs, desc="shards", disable=not progress)]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        results = pool.map(create_shard, jobs)
        return list(tqdm(results, total=len(jobs), desc="shards", disable=not progress))
