"""GLUE fine-tuning data: the nine tasks' readers, BERT features, metrics and submission files.

Owns everything task-specific that ``run_glue.py`` needs, all testable without a trained model:
one processor per task (``get_processor``) that reads and checks GLUE's TSV files, so a wrong
file fails with one ``GlueError`` naming the file and line; ``convert_examples_to_features``
(NVIDIA's rules) and ``collate``, which pads one batch to its longest sequence; the model calls
the loops take (``classification_loss``, ``logits_forward``); the metrics (``compute_metrics``,
numpy only); and ``write_submission``. The model, the training loop, logging, ``results.txt``
and ``predictions.json`` belong to ``run_glue.py``. The README lists how it differs from
NVIDIA's ``processors/glue.py``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
import numpy.typing as npt
import torch

from errors import BertError, refuse_if_nothing_usable
from fileio import atomic_write_text, check_regular_file
from tokenization import require_tokens, warn_if_mostly_unknown

logger = logging.getLogger(__name__)

#: Canonical task names, in the GLUE paper's order; ``mnli-mm`` is MNLI's mismatched evaluation.
TASK_NAMES = ("cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli")
TASK_ALIASES = {"sst2": "sst-2", "stsb": "sts-b"}

#: NVIDIA's final dllogger keys for two of our metric names (its log parsers read these);
#: other metrics keep their own names.
NVIDIA_DLLOGGER_KEYS = {"acc": "exact_match", "f1": "F1"}

# Longest field a GLUE file may hold; csv's default (128 KiB) is raised to this while reading.
_FIELD_SIZE_LIMIT = 2**31 - 1
# QQP: the most rows with the wrong number of columns that are skipped rather than an error.
_MAX_SKIPPED_FRACTION = 0.01
_MIN_SKIPPED_ALLOWED = 10
# Examples tokenized per call, which bounds the memory held by token lists.
_TOKENIZE_CHUNK = 4096


class GlueError(BertError, ValueError):
    """Bad GLUE input: an unknown task, a missing file, a file not in GLUE's layout, bad values."""


@dataclass(frozen=True, slots=True)
class InputExample:
    """One GLUE example.

    Args:
        guid: ``<split>-<row or index>`` for train and dev; the ``index`` column for test.
        text_a: the first (or only) sentence.
        text_b: the second sentence of a pair task; ``None`` for single-sentence tasks.
        label: a label string from ``get_labels()``, a float score (STS-B), or ``None`` (test).
    """

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | None = None


@dataclass(frozen=True, slots=True)
class InputFeatures:
    """Model inputs of one example, unpadded: ``[CLS] a [SEP] (b [SEP])``.

    ``label_id`` is the index in ``get_labels()`` (classification), the score (regression) or
    ``None`` (test). The attention mask is all ones over ``length`` tokens, so it is not stored.
    """

    input_ids: list[int]
    segment_ids: list[int]
    label_id: int | float | None

    @property
    def length(self) -> int:
        """Number of tokens, special tokens included."""
        return len(self.input_ids)


# --------------------------------------------------------------------------------------------
# Reading GLUE files.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where one kind of GLUE file keeps its fields; positions count from 0, -1 is the last.

    ``header`` maps the positions read to the names GLUE's header line gives them, and the
    header's length is the number of columns every row must have. ``header=None`` means the file
    has no header line and exactly ``num_columns`` columns.
    """

    text_a: int
    text_b: int | None = None
    label: int | None = None
    index: int | None = None
    header: Mapping[int, str] | None = None
    num_columns: int | None = None


def _read_tsv(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, cells) of each non-blank line; quotes are ordinary characters."""
    # GLUE text holds unbalanced quotes, so quoting is off, as in NVIDIA's reader (quotechar=None).
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))
    rows: list[tuple[int, list[str]]] = []
    check_regular_file(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter="\t", quotechar=None, quoting=csv.QUOTE_NONE)
            for row in reader:
                if row:
                    rows.append((reader.line_num, row))
    except UnicodeDecodeError as err:
        raise GlueError(f"{path}: not valid UTF-8 text ({err})") from None
    except csv.Error as err:
        raise GlueError(f"{path}: unreadable as TSV ({err})") from None
    return rows


def _data_file(data_dir: str | os.PathLike[str], file_name: str, task: str) -> Path:
    directory = Path(data_dir)
    if not directory.is_dir():
        raise GlueError(f"{task}: GLUE data directory not found: {directory}")
    path = directory / file_name
    if not path.is_file():
        raise GlueError(f"{task}: {file_name} not found in {directory}")
    return path


class GlueProcessor:
    """Reads one GLUE task's files. Subclasses only declare the task's files and layouts.

    ``get_labels()`` is NVIDIA's label order (the classifier's output order); ``[None]`` marks
    a regression task (STS-B), whose ``num_labels`` is 1.
    """

    task_name: ClassVar[str]
    folder: ClassVar[str]  # the task's folder in GLUE's download
    submission_file: ClassVar[str]  # the file name the GLUE server expects
    labels: ClassVar[tuple[str | None, ...]]
    labelled_layout: ClassVar[_Layout]  # train and dev files
    test_layout: ClassVar[_Layout]
    train_file: ClassVar[str] = "train.tsv"
    dev_file: ClassVar[str] = "dev.tsv"
    test_file: ClassVar[str] = "test.tsv"
    dev_split: ClassVar[str] = "dev"
    test_split: ClassVar[str] = "test"
    skip_malformed_rows: ClassVar[bool] = False

    @property
    def is_regression(self) -> bool:
        return self.labels == (None,)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def get_labels(self) -> list[str | None]:
        return list(self.labels)

    def get_train_examples(self, data_dir: str | os.PathLike[str]) -> list[InputExample]:
        return self._read_examples(data_dir, self.train_file, "train", self.labelled_layout)

    def get_dev_examples(self, data_dir: str | os.PathLike[str]) -> list[InputExample]:
        return self._read_examples(data_dir, self.dev_file, self.dev_split, self.labelled_layout)

    def get_test_examples(self, data_dir: str | os.PathLike[str]) -> list[InputExample]:
        """Unlabelled examples whose guid is the file's ``index`` column."""
        return self._read_examples(data_dir, self.test_file, self.test_split, self.test_layout)

    def _read_examples(
        self, data_dir: str | os.PathLike[str], file_name: str, split: str, layout: _Layout
    ) -> list[InputExample]:
        path = _data_file(data_dir, file_name, self.task_name)
        rows = _read_tsv(path)
        if layout.header is not None:
            if not rows:
                raise GlueError(f"{path}: empty file, expected a {self.task_name} header line")
            self._check_header(path, rows[0], layout.header)
            num_columns = len(rows[0][1])
            rows = rows[1:]
        else:
            num_columns = layout.num_columns
        examples: list[InputExample] = []
        skipped: list[int] = []
        for line, row in rows:
            if len(row) != num_columns:
                # Test rows are never skipped: a submission needs every test index.
                if self.skip_malformed_rows and layout.label is not None:
                    skipped.append(line)
                    continue
                raise GlueError(
                    f"{path}, line {line}: {len(row)} columns, expected {num_columns} "
                    f"({self.task_name} layout)"
                )
            examples.append(self._example(path, line, row, split, layout))
        if skipped:
            self._report_skipped(path, skipped, len(rows), num_columns)
        why = (  # training or scoring on nothing would "succeed" with useless results
            f"all {len(skipped)} rows skipped: they do not have {num_columns} columns"
            if skipped
            else "no rows after the header line"
            if layout.header is not None
            else "no rows"
        )
        refuse_if_nothing_usable(len(examples), path, f"{self.task_name} examples", why, GlueError)
        texts = (text for e in examples for text in (e.text_a, e.text_b) if text is not None)
        if not any(text.strip() for text in texts):  # a model input of [CLS] [SEP] alone
            why = f"the text columns of all {len(examples)} rows are empty"
            refuse_if_nothing_usable(0, path, f"{self.task_name} examples", why, GlueError)
        if layout.label is not None:
            _warn_on_one_label(path, examples, split == "train")
        return examples

    def _check_header(
        self, path: Path, header: tuple[int, list[str]], names: Mapping[int, str]
    ) -> None:
        line, cells = header
        for position, name in names.items():
            found = cells[position].strip() if -len(cells) <= position < len(cells) else None
            if found != name:
                raise GlueError(
                    f"{path}, line {line}: not a {self.task_name} header: column {position} "
                    f"should be {name!r}, found {found!r} (header {cells!r})"
                )

    def _report_skipped(self, path: Path, skipped: list[int], total: int, num_columns: int) -> None:
        limit = max(_MIN_SKIPPED_ALLOWED, int(total * _MAX_SKIPPED_FRACTION))
        shown = ", ".join(str(line) for line in skipped[:10]) + (
            ", ..." if len(skipped) > 10 else ""
        )
        if len(skipped) > limit:
            raise GlueError(
                f"{path}: {len(skipped)} of {total} rows do not have {num_columns} columns "
                f"(lines {shown}); more than the {limit} tolerated, so this is not a "
                f"{self.task_name} file in GLUE's layout"
            )
        logger.warning(
            "%s: skipped %d of %d rows that do not have %d columns (lines %s)",
            path,
            len(skipped),
            total,
            num_columns,
            shown,
        )

    def _example(
        self, path: Path, line: int, row: list[str], split: str, layout: _Layout
    ) -> InputExample:
        text_b = None if layout.text_b is None else row[layout.text_b]
        if layout.label is None:
            return InputExample(row[layout.index], row[layout.text_a], text_b)
        # NVIDIA's guids: the index column where the file has one, else the 0-based row number.
        row_id = row[layout.index] if layout.index is not None else str(line - 1)
        label = self._parse_label(path, line, row[layout.label])
        return InputExample(f"{split}-{row_id}", row[layout.text_a], text_b, label)

    def _parse_label(self, path: Path, line: int, text: str) -> str | float:
        if self.is_regression:
            try:
                score = float(text)
            except ValueError:
                score = math.nan
            if not math.isfinite(score):
                raise GlueError(f"{path}, line {line}: score {text!r} is not a finite number")
            return score
        if text not in self.labels:
            raise GlueError(
                f"{path}, line {line}: label {text!r} is not one of {list(self.labels)} "
                f"({self.task_name})"
            )
        return text


def _warn_on_one_label(path: Path, examples: Sequence[InputExample], training: bool) -> None:
    """One warning when every example of a labelled file has the same label (or score).

    Not an error: a small hand-made split can be like that. But a classifier trained on it can
    only learn that label, and on a dev set accuracy is then the share of one class while F1,
    MCC and correlations say nothing; both usually mean a wrong file or a broken label column.
    """
    labels = {example.label for example in examples}
    if len(examples) < 2 or len(labels) != 1:
        return
    (label,) = labels
    consequence = (
        "a model trained on it can only learn to predict that"
        if training
        else "its metrics say nothing beyond the share of that one label"
    )
    logger.warning(
        "%s: all %d examples have the label %r; %s (a wrong file or label column?)",
        path,
        len(examples),
        label,
        consequence,
    )


def _nli_layouts(first: str, second: str) -> tuple[_Layout, _Layout]:
    """QNLI, RTE and WNLI: ``index, first, second, label`` (test: without the label)."""
    labelled = _Layout(
        1, 2, label=-1, index=0, header={0: "index", 1: first, 2: second, -1: "label"}
    )
    test = _Layout(1, 2, index=0, header={0: "index", 1: first, 2: second})
    return labelled, test


class ColaProcessor(GlueProcessor):
    """CoLA: train/dev have no header (source, label, original mark, sentence)."""

    task_name = "cola"
    folder = "CoLA"
    submission_file = "CoLA.tsv"
    labels = ("0", "1")
    labelled_layout = _Layout(3, label=1, num_columns=4)
    test_layout = _Layout(1, index=0, header={0: "index", 1: "sentence"})


class Sst2Processor(GlueProcessor):
    task_name = "sst-2"
    folder = "SST-2"
    submission_file = "SST-2.tsv"
    labels = ("0", "1")
    labelled_layout = _Layout(0, label=1, header={0: "sentence", 1: "label"})
    test_layout = _Layout(1, index=0, header={0: "index", 1: "sentence"})


class MrpcProcessor(GlueProcessor):
    """MRPC: train/dev start with a UTF-8 BOM (from the MSR corpus), stripped on reading."""

    task_name = "mrpc"
    folder = "MRPC"
    submission_file = "MRPC.tsv"
    labels = ("0", "1")
    labelled_layout = _Layout(3, 4, label=0, header={0: "Quality", 3: "#1 String", 4: "#2 String"})
    test_layout = _Layout(3, 4, index=0, header={0: "index", 3: "#1 String", 4: "#2 String"})


class StsbProcessor(GlueProcessor):
    """STS-B: a regression task; the label is the similarity score in [0, 5]."""

    task_name = "sts-b"
    folder = "STS-B"
    submission_file = "STS-B.tsv"
    labels = (None,)
    labelled_layout = _Layout(
        7, 8, label=-1, index=0, header={0: "index", 7: "sentence1", 8: "sentence2", -1: "score"}
    )
    test_layout = _Layout(7, 8, index=0, header={0: "index", 7: "sentence1", 8: "sentence2"})


class QqpProcessor(GlueProcessor):
    """QQP. Train and dev rows with the wrong number of columns are skipped with one warning.

    QQP comes from Quora's question dump, where a row broken upstream (a question split over two
    lines) reads as rows with too few columns; common readers (Hugging Face's processor) drop such
    rows silently. We drop them too, but count them, name their lines in the warning, and refuse
    a file where more than 1% of the rows (and more than 10) are broken: that is a wrong file,
    not a few bad rows. A row with the right number of columns but a bad label is still an error,
    and so is any bad row in the test file, because a submission needs every test index.
    """

    task_name = "qqp"
    folder = "QQP"
    submission_file = "QQP.tsv"
    labels = ("0", "1")
    labelled_layout = _Layout(
        3,
        4,
        label=5,
        index=0,
        header={0: "id", 3: "question1", 4: "question2", 5: "is_duplicate"},
    )
    test_layout = _Layout(1, 2, index=0, header={0: "id", 1: "question1", 2: "question2"})
    skip_malformed_rows = True


class MnliProcessor(GlueProcessor):
    """MNLI, matched: ``dev_matched.tsv`` and ``test_matched.tsv``."""

    task_name = "mnli"
    folder = "MNLI"
    submission_file = "MNLI-m.tsv"
    labels = ("contradiction", "entailment", "neutral")
    # train has 12 columns (label1, gold_label), dev 16 (label1-5, gold_label): the label is last.
    labelled_layout = _Layout(
        8,
        9,
        label=-1,
        index=0,
        header={0: "index", 8: "sentence1", 9: "sentence2", -1: "gold_label"},
    )
    test_layout = _Layout(8, 9, index=0, header={0: "index", 8: "sentence1", 9: "sentence2"})
    dev_file = "dev_matched.tsv"
    test_file = "test_matched.tsv"
    dev_split = "dev_matched"
    test_split = "test_matched"


class MnliMismatchedProcessor(MnliProcessor):
    """MNLI, mismatched: MNLI's training data, ``dev_mismatched.tsv``, ``test_mismatched.tsv``."""

    task_name = "mnli-mm"
    submission_file = "MNLI-mm.tsv"
    dev_file = "dev_mismatched.tsv"
    test_file = "test_mismatched.tsv"
    dev_split = "dev_mismatched"
    test_split = "test_mismatched"


class QnliProcessor(GlueProcessor):
    task_name = "qnli"
    folder = "QNLI"
    submission_file = "QNLI.tsv"
    labels = ("entailment", "not_entailment")
    labelled_layout, test_layout = _nli_layouts("question", "sentence")


class RteProcessor(GlueProcessor):
    task_name = "rte"
    folder = "RTE"
    submission_file = "RTE.tsv"
    labels = ("entailment", "not_entailment")
    labelled_layout, test_layout = _nli_layouts("sentence1", "sentence2")


class WnliProcessor(GlueProcessor):
    task_name = "wnli"
    folder = "WNLI"
    submission_file = "WNLI.tsv"
    labels = ("0", "1")
    labelled_layout, test_layout = _nli_layouts("sentence1", "sentence2")


PROCESSORS: dict[str, type[GlueProcessor]] = {
    cls.task_name: cls
    for cls in (
        ColaProcessor,
        Sst2Processor,
        MrpcProcessor,
        StsbProcessor,
        QqpProcessor,
        MnliProcessor,
        MnliMismatchedProcessor,
        QnliProcessor,
        RteProcessor,
        WnliProcessor,
    )
}


def normalize_task_name(task_name: str) -> str:
    """The canonical name of a task (``"SST2"`` -> ``"sst-2"``); unknown names raise GlueError."""
    name = task_name.strip().lower()
    name = TASK_ALIASES.get(name, name)
    if name not in PROCESSORS:
        raise GlueError(
            f"unknown GLUE task {task_name!r}; expected one of {', '.join(TASK_NAMES)} "
            f"(any case; aliases {', '.join(TASK_ALIASES)})"
        )
    return name


def get_processor(task_name: str) -> GlueProcessor:
    """The processor of a task, by any accepted name."""
    return PROCESSORS[normalize_task_name(task_name)]()


# --------------------------------------------------------------------------------------------
# Features and batches.
# --------------------------------------------------------------------------------------------


class Tokenizer(Protocol):
    """What features need from a tokenizer (``tokenization.BertTokenizer`` has it)."""

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]: ...

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]: ...


def _truncate_seq_pair(tokens_a: list[str], tokens_b: list[str], max_length: int) -> None:
    """Pop from the end of the longer list until both fit (a tie pops b), as NVIDIA does."""
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


def convert_examples_to_features(
    examples: Sequence[InputExample],
    label_list: Sequence[str | None],
    max_seq_length: int,
    tokenizer: Tokenizer,
    is_regression: bool = False,
    source: str = "GLUE examples",
) -> list[InputFeatures]:
    """Tokenize examples into unpadded ``[CLS] a [SEP] (b [SEP])`` features, NVIDIA's rules.

    A pair is cut to ``max_seq_length - 3`` tokens by popping from the end of the longer side;
    a single sentence is cut to ``max_seq_length - 2``. Segment ids are 0 up to and including
    the first [SEP], 1 after it. As in NVIDIA's code, an empty ``text_b`` counts as no second
    sentence. Labels become their index in ``label_list``, or a float when ``is_regression``;
    a test example (label ``None``) gets ``label_id=None``. Text that is mostly [UNK] (another
    vocabulary or casing than the tokenizer's) is warned about, naming ``source``.
    """
    if max_seq_length < 3:
        raise GlueError(
            f"max_seq_length must be at least 3 ([CLS] and two [SEP]), got {max_seq_length}"
        )
    vocab_file = getattr(tokenizer, "vocab_file", None)
    if hasattr(tokenizer, "vocab"):  # a missing [CLS]/[SEP] would silently become [UNK] ids
        require_tokens(tokenizer.vocab, ("[CLS]", "[SEP]"), vocab_file, "GLUE features")
    label_map = {label: i for i, label in enumerate(label_list)}
    features: list[InputFeatures] = []
    unknown = total = 0
    for start in range(0, len(examples), _TOKENIZE_CHUNK):
        chunk = examples[start : start + _TOKENIZE_CHUNK]
        tokens_a_all = tokenizer.tokenize_batch([example.text_a for example in chunk])
        pairs = [i for i, example in enumerate(chunk) if example.text_b]
        tokens_b_list = tokenizer.tokenize_batch([chunk[i].text_b for i in pairs])
        tokens_b_all = dict(zip(pairs, tokens_b_list, strict=True))
        for i, example in enumerate(chunk):
            tokens_a = tokens_a_all[i]
            tokens_b = tokens_b_all.get(i)
            if tokens_b is not None:
                tokens_a, tokens_b = list(tokens_a), list(tokens_b)  # popped below
                _truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
            else:
                tokens_a = tokens_a[: max_seq_length - 2]
            tokens = ["[CLS]", *tokens_a, "[SEP]"]
            segment_ids = [0] * len(tokens)
            if tokens_b:
                tokens += [*tokens_b, "[SEP]"]
                segment_ids += [1] * (len(tokens_b) + 1)
            unknown += tokens.count("[UNK]")
            total += len(tokens) - 3 if tokens_b else len(tokens) - 2  # [CLS] and [SEP] aside
            label_id = _label_id(example, label_map, is_regression)
            features.append(
                InputFeatures(tokenizer.convert_tokens_to_ids(tokens), segment_ids, label_id)
            )
    do_lower_case = getattr(tokenizer, "do_lower_case", None)
    warn_if_mostly_unknown(source, unknown, total, vocab_file, do_lower_case)
    return features


def _label_id(
    example: InputExample, label_map: Mapping[str | None, int], is_regression: bool
) -> int | float | None:
    if example.label is None:
        return None
    if is_regression:
        return float(example.label)
    try:
        return label_map[example.label]  # type: ignore[index]
    except KeyError:
        raise GlueError(
            f"example {example.guid}: label {example.label!r} is not in the label list "
            f"{list(label_map)}"
        ) from None


def collate(
    features: Sequence[InputFeatures], pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest sequence (rounded up to ``pad_to_multiple_of`` if given).

    Returns ``input_ids``, ``segment_ids`` and ``input_mask`` (1 = token, 0 = padding), all
    int64 [B, S] and zero-padded as NVIDIA pads, and ``labels`` [B]: int64 class indices, or
    float32 scores when the labels are floats (regression). ``labels`` is left out when the
    features have none (test sets). Use it as a DataLoader's ``collate_fn``, with
    ``functools.partial`` to set ``pad_to_multiple_of`` (8 suits tensor cores).
    """
    if not features:
        raise GlueError("collate: empty batch")
    if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
        raise GlueError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
    seq_len = max(feature.length for feature in features)
    if pad_to_multiple_of:
        seq_len = -(-seq_len // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.zeros(len(features), seq_len, dtype=torch.long)  # [B, S]
    segment_ids = torch.zeros_like(input_ids)  # [B, S]
    input_mask = torch.zeros_like(input_ids)  # [B, S]
    for row, feature in enumerate(features):
        length = feature.length
        input_ids[row, :length] = torch.tensor(feature.input_ids, dtype=torch.long)
        segment_ids[row, :length] = torch.tensor(feature.segment_ids, dtype=torch.long)
        input_mask[row, :length] = 1
    batch = {"input_ids": input_ids, "segment_ids": segment_ids, "input_mask": input_mask}
    label_ids = [feature.label_id for feature in features]
    missing = sum(label is None for label in label_ids)
    if missing == len(label_ids):
        return batch
    if missing:
        raise GlueError(f"collate: {missing} of {len(label_ids)} features have no label")
    if any(isinstance(label, float) for label in label_ids):
        batch["labels"] = torch.tensor(label_ids, dtype=torch.float32)  # [B]
    else:
        batch["labels"] = torch.tensor(label_ids, dtype=torch.long)  # [B]
    return batch


# --------------------------------------------------------------------------------------------
# Model calls.
# --------------------------------------------------------------------------------------------


def features_to_arrays(features: Sequence[InputFeatures], width: int) -> dict[str, np.ndarray]:
    """int64 [N, width] ``input_ids``, ``segment_ids`` and ``input_mask``, zero-padded, for
    prediction (``finetuning.predict`` trims each batch to its longest sequence again)."""
    arrays = {k: np.zeros((len(features), width), np.int64) for k in ("input_ids", "segment_ids")}
    arrays["input_mask"] = np.zeros((len(features), width), np.int64)
    for row, feature in enumerate(features):
        arrays["input_ids"][row, : feature.length] = feature.input_ids
        arrays["segment_ids"][row, : feature.length] = feature.segment_ids
        arrays["input_mask"][row, : feature.length] = 1
    return arrays


def classification_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The classifier's training loss on a ``collate`` batch (cross-entropy, or MSE for STS-B)."""
    return model(batch["input_ids"], batch["segment_ids"], batch["input_mask"], batch["labels"])[0]


def logits_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
    """Per row: the classifier's float32 logits [num_labels], as numpy arrays."""
    logits = model(batch["input_ids"], batch["segment_ids"], batch["input_mask"])
    return list(logits.float().cpu().numpy())


def predictions_from_logits(logits: Sequence[np.ndarray], regression: bool) -> np.ndarray:
    """Predicted class ids (argmax), or the single score of a regression head."""
    stacked = np.stack(logits)
    return stacked[:, 0] if regression else stacked.argmax(axis=1)


def inference_results(batch_seconds: list[float], batch_size: int) -> dict[str, float]:
    """NVIDIA's `infer:*` keys from per-batch latencies: percentiles of the sorted latencies in
    ms (index int(n * q) - 1, clamped), their mean, population std and sum, and throughput as
    the batch size over the mean latency."""
    latencies = sorted(1000.0 * s for s in batch_seconds) or [0.0]

    def percentile(q: float) -> float:
        return latencies[min(max(int(len(latencies) * q) - 1, 0), len(latencies) - 1)]

    results = {
        f"infer:latency(ms):{int(q * 100)}%": percentile(q) for q in (0.5, 0.9, 0.95, 0.99, 1.0)
    }
    mean = float(np.mean(latencies))
    results |= {
        "infer:latency(ms):avg": mean,
        "infer:latency(ms):std": float(np.std(latencies)),
        "infer:latency(ms):sum": float(np.sum(latencies)),
        "infer:throughput(samples/s):avg": batch_size / (mean / 1000) if mean > 0 else 0.0,
    }
    return results


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------


def _vectors(preds: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    preds_array, labels_array = np.asarray(preds), np.asarray(labels)
    if preds_array.ndim != 1 or labels_array.ndim != 1:
        raise GlueError(
            f"metrics take 1-D predictions and labels (class ids or scores; take the argmax of "
            f"logits first), got shapes {preds_array.shape} and {labels_array.shape}"
        )
    if len(preds_array) != len(labels_array):
        raise GlueError(f"{len(preds_array)} predictions for {len(labels_array)} labels")
    if len(preds_array) == 0:
        raise GlueError("metrics of an empty set are undefined")
    return preds_array, labels_array


def simple_accuracy(preds: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Fraction of predictions equal to the label."""
    preds_array, labels_array = _vectors(preds, labels)
    return float(np.mean(preds_array == labels_array))


def f1_score(preds: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Binary F1 of class 1: 2·TP / (2·TP + FP + FN); 0.0 when neither side has a 1."""
    preds_array, labels_array = _vectors(preds, labels)
    for name, values in (("predictions", preds_array), ("labels", labels_array)):
        if not np.isin(values, (0, 1)).all():
            raise GlueError(f"binary F1 takes 0/1 {name}, got values {np.unique(values)[:10]}")
    predicted, actual = preds_array == 1, labels_array == 1
    true_pos = int(np.sum(predicted & actual))
    errors = int(np.sum(predicted != actual))  # FP + FN
    denominator = 2 * true_pos + errors
    return 0.0 if denominator == 0 else 2 * true_pos / denominator


def acc_and_f1(preds: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, float]:
    """``acc``, ``f1`` (class 1) and their mean ``acc_and_f1`` (MRPC, QQP)."""
    acc = simple_accuracy(preds, labels)
    f1 = f1_score(preds, labels)
    return {"acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2}


def matthews_corrcoef(preds: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Matthews correlation, multiclass (Gorodkin's R_K, as scikit-learn computes it).

    With the confusion matrix C, t = row sums (true counts), p = column sums (predicted
    counts), c = trace and s = total: (c·s - t·p) / sqrt((s² - p·p)(s² - t·t)).
    0.0 when the denominator is 0 (one class only in predictions or in labels), as scikit-learn.
    """
    preds_array, labels_array = _vectors(preds, labels)
    classes, codes = np.unique(np.concatenate([labels_array, preds_array]), return_inverse=True)
    k, n = len(classes), len(labels_array)
    confusion = np.bincount(codes[:n] * k + codes[n:], minlength=k * k).reshape(k, k)
    confusion = confusion.astype(np.float64)
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    correct, total = np.trace(confusion), float(n)
    cov_true_pred = correct * total - true_counts @ pred_counts
    cov_pred_pred = total * total - pred_counts @ pred_counts
    cov_true_true = total * total - true_counts @ true_counts
    denominator = cov_pred_pred * cov_true_true
    if denominator == 0:
        return 0.0
    return float(cov_true_pred / math.sqrt(denominator))


def _finite_floats(name: str, values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise GlueError(f"correlation of non-finite {name}")
    return values


def _pearson(x: np.ndarray, y: np.ndarray, name: str) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    if sxx == 0.0 or syy == 0.0:
        logger.warning(
            "%s correlation is undefined for constant %s; reporting 0.0",
            name,
            "predictions" if sxx == 0.0 else "labels",
        )
        return 0.0
    return float(np.clip((dx @ dy) / math.sqrt(sxx * syy), -1.0, 1.0))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (scipy's ``rankdata``)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.concatenate([[True], ordered[1:] != ordered[:-1]])
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.append(starts[1:], len(values))  # exclusive
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def pearson_and_spearman(preds: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, float]:
    """``pearson``, ``spearmanr`` (Pearson of average ranks) and their mean ``corr`` (STS-B).

    A constant vector (or a single pair) has no correlation: it is reported as 0.0 with a
    logged warning rather than NaN (scipy returns NaN), so the mean stays usable.
    """
    preds_array, labels_array = _vectors(preds, labels)
    x = _finite_floats("predictions", preds_array)
    y = _finite_floats("labels", labels_array)
    pearson = _pearson(x, y, "Pearson")
    spearman = _pearson(_average_ranks(x), _average_ranks(y), "Spearman")
    return {"pearson": pearson, "spearmanr": spearman, "corr": (pearson + spearman) / 2}


def compute_metrics(
    task_name: str, preds: npt.ArrayLike, labels: npt.ArrayLike
) -> dict[str, float]:
    """The task's GLUE metrics from 1-D predictions (class ids; scores for STS-B) and labels.

    cola: ``mcc``; sst-2, qnli, rte, wnli, mnli, mnli-mm: ``acc``; mrpc, qqp: ``acc``, ``f1``,
    ``acc_and_f1``; sts-b: ``pearson``, ``spearmanr``, ``corr``.
    """
    task = normalize_task_name(task_name)
    if task == "cola":
        return {"mcc": matthews_corrcoef(preds, labels)}
    if task in ("mrpc", "qqp"):
        return acc_and_f1(preds, labels)
    if task == "sts-b":
        return pearson_and_spearman(preds, labels)
    return {"acc": simple_accuracy(preds, labels)}


# --------------------------------------------------------------------------------------------
# Submission files.
# --------------------------------------------------------------------------------------------


def write_submission(
    output_dir: str | os.PathLike[str],
    task_name: str,
    test_examples: Sequence[InputExample],
    predictions: npt.ArrayLike,
    label_list: Sequence[str | None],
) -> Path:
    """Write the task's GLUE server file (``CoLA.tsv``, ``MNLI-m.tsv``, ...) and return its path.

    ``predictions`` are class indices into ``label_list`` (written as the label: ``0``/``1`` for
    the binary tasks, ``entailment`` ... for the NLI tasks) or, for STS-B, scores clipped to
    [0, 5]. The header is ``index\\tprediction``; rows follow ``test_examples``, whose guids are
    the test file's index column. The file appears atomically (temporary file, then rename).
    """
    name, text = submission(task_name, test_examples, predictions, label_list)
    path = Path(output_dir) / name
    atomic_write_text(path, text)
    return path


def submission(
    task_name: str,
    test_examples: Sequence[InputExample],
    predictions: npt.ArrayLike,
    label_list: Sequence[str | None],
) -> tuple[str, str]:
    """The name and the text of the task's GLUE server file (see `write_submission`)."""
    processor = get_processor(task_name)
    if list(label_list) != processor.get_labels():
        raise GlueError(
            f"{processor.task_name}: label list {list(label_list)} is not the task's "
            f"{processor.get_labels()}"
        )
    values = np.asarray(predictions)
    if values.ndim != 1 or len(values) != len(test_examples):
        raise GlueError(
            f"{processor.task_name}: predictions of shape {values.shape} for "
            f"{len(test_examples)} test examples; expected one value per example"
        )
    if processor.is_regression:
        scores = _finite_floats("predictions", values)
        cells = [f"{score:.3f}" for score in np.clip(scores, 0.0, 5.0)]
    else:
        if not np.issubdtype(values.dtype, np.integer) or (
            len(values) and (values.min() < 0 or values.max() >= len(label_list))
        ):
            raise GlueError(
                f"{processor.task_name}: predictions must be class indices in "
                f"[0, {len(label_list)}), got {values.dtype} values {np.unique(values)[:10]}"
            )
        cells = [str(label_list[value]) for value in values]
    lines = ["index\tprediction\n"]
    for example, cell in zip(test_examples, cells, strict=True):
        if not example.guid or any(char in example.guid for char in "\t\r\n"):
            raise GlueError(f"{processor.task_name}: test guid {example.guid!r} is not an index")
        lines.append(f"{example.guid}\t{cell}\n")
    return processor.submission_file, "".join(lines)
