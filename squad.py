"""SQuAD v1.1/v2.0 task logic: reading, features, answer post-processing, EM/F1, feature cache.

Owns everything between a SQuAD JSON file and the model's input arrays, and between the model's
start/end logits and the official scores, following NVIDIA's ``run_squad.py``: reading and
checking the data (``read_squad_examples``; bad input is one ``SquadError`` naming the file and
question), doc-stride features (``convert_examples_to_features``), the model calls the loops
take (``qa_loss``, ``qa_forward``), answers, n-best lists and null odds (``get_answers``), the
official scripts' numbers (``evaluate_v1``, ``evaluate_v2``) and the feature cache. The model,
loops and logging are ``modeling.py``'s, ``finetuning.py``'s and ``run_squad.py``'s; the README
lists how it differs from NVIDIA's ``run_squad.py``.
"""

from __future__ import annotations

import bisect
import collections
import hashlib
import json
import logging
import math
import os
import re
import string
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

import tokenization
from errors import BertError, UsageError, refuse_if_nothing_usable
from fileio import (
    JsonError,
    atomic_write,
    atomic_write_files,
    check_regular_file,
    parse_json,
    read_json,
    sha256_file,
)
from tokenization import BasicTokenizer, require_tokens

if TYPE_CHECKING:  # the model is only called here; reading and scoring need no torch
    import torch

logger = logging.getLogger(__name__)

#: NVIDIA numbers features from here.
FIRST_UNIQUE_ID = 1_000_000_000
#: The layout of the cache file; feature-building code is keyed by its source
#: (``feature_code_digest``).
CACHE_FORMAT_VERSION = 1

# The reference's whitespace for splitting contexts: Python's str.split would also split on
# U+00A0 and other Unicode spaces, which changes word boundaries.
_CONTEXT_WORD = re.compile("[^ \t\r\n\u202f]+")


class SquadError(BertError, ValueError):
    """Unusable SQuAD input; the message names the file and, where relevant, the question id."""


class Tokenizer(Protocol):
    """What feature building needs from ``tokenization.BertTokenizer``."""

    def tokenize(self, text: str) -> list[str]: ...

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]: ...


@dataclass
class SquadExample:
    """One question on one context.

    ``doc_tokens`` are the context's whitespace words (shared by all questions of a paragraph).
    For training, ``start_position``/``end_position`` are word indices of the answer and
    ``orig_answer_text`` its text; impossible v2.0 questions have -1/-1 and "". For evaluation
    the three are None.
    """

    qas_id: str
    question_text: str
    doc_tokens: list[str]
    orig_answer_text: str | None = None
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False


@dataclass
class SquadFeature:
    """One ``[CLS] question [SEP] window [SEP]`` model input, S = max_seq_length.

    ``tokens`` are the real tokens (no padding); ``token_to_orig_map`` maps each window position
    in ``tokens`` to its word index in the example's ``doc_tokens``, and ``token_is_max_context``
    says whether this window gives that token the most context. ``input_ids``, ``input_mask``
    and ``segment_ids`` have length S. ``start_position``/``end_position`` are training labels
    (positions in ``tokens``, 0/0 for "no answer in this window"), None for evaluation.
    """

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]
    token_is_max_context: dict[int, bool]
    input_ids: list[int]
    input_mask: list[int]
    segment_ids: list[int]
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False


class RawResult(NamedTuple):
    """Model output for one feature: start and end logits [S] (numpy arrays or lists)."""

    unique_id: int
    start_logits: Any
    end_logits: Any


# ---------------------------------------------------------------------------- reading


def load_squad_json(input_file: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed SQuAD file, with its layout (data/paragraphs/context/qas/id/question) checked."""
    path = os.fspath(input_file)
    check_regular_file(path)
    try:
        dataset = read_json(path, "SQuAD file")
    except JsonError as err:
        raise SquadError(str(err)) from None
    except FileNotFoundError:
        raise SquadError(f"SQuAD file not found: {path}") from None
    except IsADirectoryError:
        raise SquadError(f"SQuAD file {path} is a directory") from None
    except OSError as err:
        raise SquadError(f"cannot read SQuAD file {path}: {err.strerror}") from None
    _check_layout(dataset, path)
    return dataset


def _check_layout(dataset: Any, path: str) -> None:
    def fail(where: str, what: str) -> None:
        raise SquadError(f"{path} is not a SQuAD file: {where} {what}")

    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        fail("the top level", 'has no "data" list')
    seen: dict[str, str] = {}  # question id -> where it first appears
    for i, article in enumerate(dataset["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            fail(f"data[{i}]", 'has no "paragraphs" list')
        for j, paragraph in enumerate(article["paragraphs"]):
            where = f"data[{i}].paragraphs[{j}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                fail(where, 'has no "context" string')
            if not isinstance(paragraph.get("qas"), list):
                fail(where, 'has no "qas" list')
            for k, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict) or "id" not in qa:
                    fail(f"{where}.qas[{k}]", 'has no "id"')
                if not isinstance(qa["id"], str):  # predictions files key answers by string
                    fail(f"{where}.qas[{k}]", f'has an "id" that is not a string: {qa["id"]!r}')
                if not isinstance(qa.get("question"), str):
                    fail(f"{where}.qas[{k}] (id {qa['id']!r})", 'has no "question" string')
                _check_unique_id(qa["id"], f"{where}.qas[{k}]", seen, path)


def _check_unique_id(qas_id: str, where: str, seen: dict[str, str], path: str) -> None:
    """Predictions are keyed by question id, so a repeated id would lose one question's answer
    and score the other twice (or once, depending on the scorer)."""
    if qas_id in seen:
        raise SquadError(
            f"{path}: question id {qas_id!r} appears twice ({seen[qas_id]} and {where}); "
            "predictions are keyed by id, so every question needs its own"
        )
    seen[qas_id] = where


def _questions(dataset: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                yield paragraph, qa


def detect_version(dataset_json: Mapping[str, Any]) -> str:
    """``"2.0"`` if the file says v2.0 or any question has ``is_impossible``, else ``"1.1"``.

    Lets ``read_squad_examples`` warn when v2.0 data is used without
    ``--version_2_with_negative``, which otherwise scores every unanswerable question as wrong
    (transformers#2672).
    """
    if str(dataset_json.get("version", "")).lstrip("v").startswith("2"):
        return "2.0"
    for _, qa in _questions(dataset_json):
        if "is_impossible" in qa:
            return "2.0"
    return "1.1"


def warn_on_version(path: str, looks_v2: bool, version_2_with_negative: bool) -> None:
    """The users' trap, at training as at prediction: v2.0 data read without
    ``version_2_with_negative`` (unanswerable questions get answers and score as wrong), or v1.1
    data with it (the null-answer threshold applies to data that has no unanswerable question).
    """
    if looks_v2 and not version_2_with_negative:
        logger.warning("%s looks like SQuAD v2.0: pass --version_2_with_negative", path)
    if not looks_v2 and version_2_with_negative:
        logger.warning("%s looks like SQuAD v1.1 but --version_2_with_negative is set", path)


def split_context(context: str) -> tuple[list[str], list[int]]:
    """Whitespace words of ``context`` and the character offset where each word starts.

    Whitespace is space, tab, CR, LF and U+202F (NVIDIA's ``is_whitespace``). The word holding
    character ``c`` is ``bisect_right(word_starts, c) - 1`` (NVIDIA's ``char_to_word_offset``).
    """
    words, starts = [], []
    for match in _CONTEXT_WORD.finditer(context):
        words.append(match.group())
        starts.append(match.start())
    return words, starts


def read_squad_examples(
    input_file: str | os.PathLike[str],
    is_training: bool,
    version_2_with_negative: bool = False,
) -> list[SquadExample]:
    """Examples of a SQuAD file, one per question, in file order (NVIDIA's reading rules).

    Warns when the file's version (``detect_version``) and ``version_2_with_negative`` disagree.

    Training needs exactly one answer per answerable question; with ``version_2_with_negative``
    a question's ``is_impossible`` is read and impossible ones get positions -1/-1 and text "".
    An answer whose cleaned text is not found in its word span is skipped with a warning, as
    NVIDIA's does. Evaluation reads no answers. Raises ``SquadError`` for unusable input.
    """
    path = os.fspath(input_file)
    dataset = load_squad_json(path)
    looks_v2 = detect_version(dataset) == "2.0"
    warn_on_version(path, looks_v2, version_2_with_negative)
    examples = []
    skipped = 0
    for article in dataset["data"]:
        for paragraph in article["paragraphs"]:
            doc_tokens, word_starts = split_context(paragraph["context"])
            for qa in paragraph["qas"]:
                example = SquadExample(qa["id"], qa["question"], doc_tokens)
                if is_training:
                    example = _with_answer(
                        example,
                        qa,
                        paragraph["context"],
                        word_starts,
                        path,
                        version_2_with_negative,
                        looks_v2,
                    )
                if example is not None:
                    examples.append(example)
                else:
                    skipped += 1
    if skipped:
        logger.warning(
            "%s: %d of %d training questions skipped (answer text not found where "
            "answer_start points)",
            path,
            skipped,
            skipped + len(examples),
        )
    why = (
        f"the answer text of all {skipped} training questions is not where answer_start points"
        if skipped
        else "the file holds no questions"
    )
    refuse_if_nothing_usable(len(examples), path, "questions", why, SquadError)
    return examples


def _with_answer(
    example: SquadExample,
    qa: Mapping[str, Any],
    context: str,
    word_starts: list[int],
    path: str,
    version_2_with_negative: bool,
    looks_v2: bool,
) -> SquadExample | None:
    """``example`` with its training answer, or None when the answer is not in the context."""
    qas_id = example.qas_id
    if version_2_with_negative and qa.get("is_impossible", False):
        example.orig_answer_text, example.start_position, example.end_position = "", -1, -1
        example.is_impossible = True
        return example
    answers = qa.get("answers")
    if not isinstance(answers, list) or len(answers) != 1:
        count = len(answers) if isinstance(answers, list) else "no"
        hint = ""
        if looks_v2 and not version_2_with_negative:
            hint = "; the file looks like SQuAD v2.0: set version_2_with_negative"
        raise SquadError(
            f"{path}: training question {qas_id!r} has {count} answers; training needs exactly "
            f"one answer per answerable question{hint}"
        )
    answer = answers[0]
    text = answer.get("text") if isinstance(answer, dict) else None
    start_char = answer.get("answer_start") if isinstance(answer, dict) else None
    if not isinstance(text, str) or not isinstance(start_char, int):
        raise SquadError(f"{path}: question {qas_id!r} has an answer without text/answer_start")
    end_char = start_char + len(text) - 1
    if not text or start_char < 0 or end_char >= len(context):
        logger.warning(
            "%s: skipping question %r: answer %r is outside the context", path, qas_id, text
        )
        return None
    start_word = bisect.bisect_right(word_starts, start_char) - 1
    end_word = bisect.bisect_right(word_starts, end_char) - 1
    actual_text = " ".join(example.doc_tokens[max(start_word, 0) : end_word + 1])
    cleaned_answer_text = " ".join(text.split())
    if start_word < 0 or actual_text.find(cleaned_answer_text) == -1:
        logger.warning(
            "%s: skipping question %r: could not find answer %r in %r",
            path,
            qas_id,
            cleaned_answer_text,
            actual_text,
        )
        return None
    example.orig_answer_text, example.start_position, example.end_position = (
        text,
        start_word,
        end_word,
    )
    return example


# ---------------------------------------------------------------------------- features


class _Document(NamedTuple):
    tokens: list[str]  # WordPiece tokens of the whole context
    tok_to_orig: list[int]  # token index -> word index
    orig_to_tok: list[int]  # word index -> index of its first token


def _tokenize_document(doc_tokens: Sequence[str], tokenizer: Tokenizer) -> _Document:
    tokens: list[str] = []
    tok_to_orig: list[int] = []
    orig_to_tok: list[int] = []
    for word_index, word in enumerate(doc_tokens):
        orig_to_tok.append(len(tokens))
        pieces = tokenizer.tokenize(word)
        tokens.extend(pieces)
        tok_to_orig.extend([word_index] * len(pieces))
    return _Document(tokens, tok_to_orig, orig_to_tok)


def _improve_answer_span(
    doc_tokens: Sequence[str],
    input_start: int,
    input_end: int,
    tokenizer: Tokenizer,
    orig_answer_text: str,
) -> tuple[int, int]:
    """The first (smallest-start, then longest) token span inside [input_start, input_end]
    whose tokens equal the tokenized answer, else the input span.

    Turns the word-level span of "(1895-1943)." into the tokens of "1895" when that is the
    answer. Google's loop joins every (start, end) pair; tokens hold no spaces, so the joined
    strings match exactly when the token lists do, and only spans of the answer's length can.
    """
    answer_tokens = tokenizer.tokenize(orig_answer_text)
    n = len(answer_tokens)
    if n == 0:
        return input_start, input_end
    for new_start in range(input_start, input_end - n + 2):
        if list(doc_tokens[new_start : new_start + n]) == answer_tokens:
            return new_start, new_start + n - 1
    return input_start, input_end


def _doc_spans(num_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each sliding window over a document of ``num_tokens`` tokens."""
    spans = []
    start = 0
    while start < num_tokens:
        length = min(num_tokens - start, max_tokens_for_doc)
        spans.append((start, length))
        if start + length == num_tokens:
            break
        start += min(length, doc_stride)
    return spans


def _max_context_span(spans: Sequence[tuple[int, int]], num_tokens: int) -> np.ndarray:
    """Index of the window that gives each token its best score [num_tokens].

    Score = min(left context, right context) + 0.01 * window length; the first window wins ties
    (Google's ``_check_is_max_context``, computed for all tokens at once).
    """
    best_score = np.full(num_tokens, -np.inf)
    best_span = np.full(num_tokens, -1, dtype=np.int64)
    for span_index, (start, length) in enumerate(spans):
        offset = np.arange(length)
        score = np.minimum(offset, length - 1 - offset) + 0.01 * length
        better = score > best_score[start : start + length]
        best_score[start : start + length][better] = score[better]
        best_span[start : start + length][better] = span_index
    return best_span


def _token_answer_span(
    example: SquadExample, doc: _Document, tokenizer: Tokenizer
) -> tuple[int, int]:
    if example.is_impossible:
        return -1, -1
    if example.start_position is None or example.end_position is None:
        raise SquadError(
            f"question {example.qas_id!r} has no answer position; read the file with "
            "is_training=True to build training features"
        )
    tok_start = doc.orig_to_tok[example.start_position]
    if example.end_position < len(example.doc_tokens) - 1:
        tok_end = doc.orig_to_tok[example.end_position + 1] - 1
    else:
        tok_end = len(doc.tokens) - 1
    return _improve_answer_span(
        doc.tokens, tok_start, tok_end, tokenizer, example.orig_answer_text or ""
    )


def check_window_flags(max_seq_length: int, doc_stride: int, max_query_length: int) -> None:
    """The window flags against each other, before any data is read. A window is [CLS] question
    [SEP] context [SEP]: a question of `max_query_length` tokens must leave room for context, and
    a stride longer than the most context a window can hold cannot be a stride."""
    if max_seq_length <= max_query_length + 3:
        raise UsageError(
            f"--max_seq_length {max_seq_length} leaves no room for context after a question of "
            f"--max_query_length {max_query_length} tokens and [CLS], [SEP], [SEP]; use "
            f"--max_seq_length > {max_query_length + 3} or a smaller --max_query_length"
        )
    if doc_stride > max_seq_length - 3:
        raise UsageError(
            f"--doc_stride {doc_stride} is longer than any window's context: --max_seq_length "
            f"{max_seq_length} holds at most {max_seq_length - 3} context tokens"
        )


def convert_examples_to_features(
    examples: Sequence[SquadExample],
    tokenizer: Tokenizer,
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    is_training: bool = False,
) -> list[SquadFeature]:
    """NVIDIA's doc-stride features of ``examples``, numbered from ``FIRST_UNIQUE_ID``.

    The question is cut to ``max_query_length`` tokens; each window holds at most
    ``max_seq_length - len(question) - 3`` document tokens and the next one starts
    ``min(length, doc_stride)`` tokens later. With ``is_training`` the answer positions are
    shifted by ``len(question) + 2``, or 0/0 (the [CLS]) when the answer is not wholly inside the
    window or the question is impossible. Raises ``SquadError`` when ``max_seq_length`` leaves no
    room for the document after a question.
    """
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be at least 1, got {doc_stride}")
    if hasattr(tokenizer, "vocab"):  # a missing [CLS]/[SEP] would silently become [UNK] ids
        vocab_file = getattr(tokenizer, "vocab_file", "of the tokenizer")
        require_tokens(tokenizer.vocab, ("[CLS]", "[SEP]"), vocab_file, "SQuAD features")
    features: list[SquadFeature] = []
    doc_source: list[str] | None = None
    doc = _Document([], [], [])
    for example_index, example in enumerate(examples):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3  # [CLS], [SEP], [SEP]
        if max_tokens_for_doc < 1:
            raise SquadError(
                f"max_seq_length={max_seq_length} leaves no room for the context of question "
                f"{example.qas_id!r}: its {len(query_tokens)} question tokens and 3 special "
                f"tokens fill it; use max_seq_length > max_query_length + 3 "
                f"(max_query_length={max_query_length})"
            )
        if example.doc_tokens is not doc_source:  # questions of a paragraph share its words
            doc_source = example.doc_tokens
            doc = _tokenize_document(example.doc_tokens, tokenizer)
        answer_span = _token_answer_span(example, doc, tokenizer) if is_training else None
        spans = _doc_spans(len(doc.tokens), max_tokens_for_doc, doc_stride)
        best_span = _max_context_span(spans, len(doc.tokens))
        for span_index, span in enumerate(spans):
            features.append(
                _make_feature(
                    FIRST_UNIQUE_ID + len(features),
                    example_index,
                    example,
                    query_tokens,
                    doc,
                    span_index,
                    span,
                    best_span,
                    answer_span,
                    tokenizer,
                    max_seq_length,
                )
            )
    return features


def _make_feature(
    unique_id: int,
    example_index: int,
    example: SquadExample,
    query_tokens: list[str],
    doc: _Document,
    span_index: int,
    span: tuple[int, int],
    best_span: np.ndarray,
    answer_span: tuple[int, int] | None,
    tokenizer: Tokenizer,
    max_seq_length: int,
) -> SquadFeature:
    start, length = span
    doc_offset = len(query_tokens) + 2  # [CLS] question [SEP]
    tokens = ["[CLS]", *query_tokens, "[SEP]", *doc.tokens[start : start + length], "[SEP]"]
    positions = range(doc_offset, doc_offset + length)
    token_to_orig_map = dict(zip(positions, doc.tok_to_orig[start : start + length], strict=True))
    is_max = (best_span[start : start + length] == span_index).tolist()
    token_is_max_context = dict(zip(positions, is_max, strict=True))
    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    padding = [0] * (max_seq_length - len(input_ids))
    input_mask = [1] * len(input_ids) + padding
    segment_ids = [0] * doc_offset + [1] * (length + 1) + padding
    start_position = end_position = None
    if answer_span is not None:
        tok_start, tok_end = answer_span
        inside = tok_start >= start and tok_end <= start + length - 1
        if example.is_impossible or not inside:
            start_position = end_position = 0
        else:
            start_position = tok_start - start + doc_offset
            end_position = tok_end - start + doc_offset
    return SquadFeature(
        unique_id=unique_id,
        example_index=example_index,
        doc_span_index=span_index,
        tokens=tokens,
        token_to_orig_map=token_to_orig_map,
        token_is_max_context=token_is_max_context,
        input_ids=input_ids + padding,
        input_mask=input_mask,
        segment_ids=segment_ids,
        start_position=start_position,
        end_position=end_position,
        is_impossible=example.is_impossible,
    )


def unknown_token_share(
    features: Sequence[SquadFeature], sample: int = 2000, unk_token: str = "[UNK]"
) -> tuple[int, int]:
    """([UNK] tokens, tokens) of the question and window tokens of up to ``sample`` features
    spread over ``features``: a large share means the vocabulary or casing does not fit."""
    chosen = features[:: max(1, len(features) // sample)]
    unknown = sum(feature.tokens.count(unk_token) for feature in chosen)
    return unknown, sum(len(feature.tokens) - 3 for feature in chosen)  # less [CLS], 2 x [SEP]


def gives_model_input(example: SquadExample, tokenizer: Tokenizer) -> bool:
    """Whether some word of the example's context gives a WordPiece token (a context of white
    space or characters the tokenizer drops, such as control characters, gives no window)."""
    return any(tokenizer.tokenize(word) for word in example.doc_tokens)


def check_model_input(
    path: str | os.PathLike[str],
    examples: Sequence[SquadExample],
    tokenizer: Tokenizer,
    is_training: bool,
) -> None:
    """Refuse, before any output exists, a file none of whose contexts gives the model an input,
    or none of whose questions has a token (nothing to train on or predict; answers to no
    question). Stops at the first usable one, so a normal file costs a word and a question;
    questions of one paragraph share its words, checked once."""
    what = "train on" if is_training else "predict"
    seen: set[int] = set()
    for example in examples:
        if id(example.doc_tokens) not in seen:
            if gives_model_input(example, tokenizer):
                break
            seen.add(id(example.doc_tokens))
    else:
        why = (
            f"none of the contexts of its {len(examples)} questions gives a WordPiece token: "
            f"each is empty, white space or characters the tokenizer drops; nothing to {what}"
        )
        refuse_if_nothing_usable(0, path, "questions", why, SquadError)
    if not any(tokenizer.tokenize(example.question_text) for example in examples):
        why = (
            f"none of its {len(examples)} question texts gives a WordPiece token: each is empty, "
            f"white space or characters the tokenizer drops; nothing to {what}"
        )
        refuse_if_nothing_usable(0, path, "questions", why, SquadError)


def check_features(
    path: str | os.PathLike[str],
    examples: Sequence[SquadExample],
    features: Sequence[SquadFeature],
    is_training: bool,
) -> None:
    """Refuse a file none of whose questions gives a feature (every context empty or only
    white space: nothing to train on or predict, which would end with empty predictions and
    exit 0), and warn, with the first such question id, when only some give none (those get
    no prediction and score 0)."""
    covered = {feature.example_index for feature in features}
    missing = [example for index, example in enumerate(examples) if index not in covered]
    what = "train on" if is_training else "predict"
    if examples and len(missing) == len(examples):
        raise SquadError(
            f"{path}: none of its {len(examples)} questions gives a model input (every context "
            f"is empty or only white space): nothing to {what}"
        )
    if missing:
        logger.warning(
            "%s: %d of %d questions have an empty context (e.g. id %s) and get no prediction",
            path,
            len(missing),
            len(examples),
            missing[0].qas_id,
        )


def features_to_arrays(features: Sequence[SquadFeature]) -> dict[str, np.ndarray]:
    """int64 arrays for a dataset: input_ids, input_mask, segment_ids [N, S]; start_positions,
    end_positions, unique_ids [N]. Positions are -1 where a feature has no label (evaluation)."""
    width = len(features[0].input_ids) if features else 0

    def matrix(name: str) -> np.ndarray:
        return np.array([getattr(f, name) for f in features], dtype=np.int64).reshape(
            len(features), width
        )

    def labels(name: str) -> np.ndarray:
        values = [getattr(f, name) for f in features]
        return np.array([-1 if v is None else v for v in values], dtype=np.int64)

    return {
        "input_ids": matrix("input_ids"),
        "input_mask": matrix("input_mask"),
        "segment_ids": matrix("segment_ids"),
        "start_positions": labels("start_position"),
        "end_positions": labels("end_position"),
        "unique_ids": np.array([f.unique_id for f in features], dtype=np.int64),
    }


# ---------------------------------------------------------------------------- model calls


#: A short last training batch is filled up with these rows under --compile: no tokens, and
#: positions past every width, which the QA loss clamps to its ignored index.
QA_ROW_FILLS = (
    ("input_ids", 0),
    ("input_mask", 0),
    ("segment_ids", 0),
    ("unique_ids", 0),
    ("start_positions", 2**30),
    ("end_positions", 2**30),
)


def qa_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The QA model's training loss on a batch of ``features_to_arrays`` columns."""
    return model(
        batch["input_ids"],
        batch["segment_ids"],
        batch["input_mask"],
        start_positions=batch["start_positions"],
        end_positions=batch["end_positions"],
    )[0]


def qa_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list:
    """Per feature: (start_logits, end_logits) over its real tokens, as float32 numpy arrays."""
    start, end = model(batch["input_ids"], batch["segment_ids"], batch["input_mask"])
    lengths = batch["input_mask"].sum(dim=1).tolist()
    start, end = start.float().cpu().numpy(), end.float().cpu().numpy()
    return [(start[i, :n], end[i, :n]) for i, n in enumerate(lengths)]


# ---------------------------------------------------------------------------- feature cache


def _sha256_file(path: str | os.PathLike[str]) -> str:
    try:
        return sha256_file(path)
    except OSError as err:
        raise SquadError(
            f"cannot read {os.fspath(path)} for the feature cache key: {err}"
        ) from None


@lru_cache(maxsize=1)
def feature_code_digest() -> str:
    """sha256 of the source files of the code that builds features: this module and the
    tokenizer (``tokenization.py``). Part of the cache key, so features cached by other code are
    never read; any edit of either file rebuilds the cache once."""
    digest = hashlib.sha256()
    for path in (__file__, tokenization.__file__):
        digest.update(_sha256_file(path).encode())
    return digest.hexdigest()


def cache_path(
    data_file: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None,
    vocab_file: str | os.PathLike[str],
    do_lower_case: bool,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    is_training: bool,
    version_2_with_negative: bool = False,
) -> Path:
    """Where the features of ``data_file`` built with these settings are cached.

    The name shows the settings and ends with a hash of the data file's and vocabulary file's
    bytes, every setting, ``CACHE_FORMAT_VERSION`` and ``feature_code_digest()``, so a different
    vocabulary, case setting, window or feature code never reuses a cache. The folder is
    ``cache_dir``, or the data file's folder.
    """
    data_file = Path(data_file)
    key = {
        "format": CACHE_FORMAT_VERSION,
        "code_sha256": feature_code_digest(),
        "data_sha256": _sha256_file(data_file),
        "vocab_sha256": _sha256_file(vocab_file),
        "do_lower_case": bool(do_lower_case),
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
        "max_query_length": max_query_length,
        "is_training": bool(is_training),
        "version_2_with_negative": bool(version_2_with_negative),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    case = "uncased" if do_lower_case else "cased"
    mode = "train" if is_training else "predict"
    name = (
        f"{data_file.name}_{case}_{max_seq_length}_{doc_stride}_{max_query_length}_{mode}_"
        f"{digest}.features.npz"
    )
    return Path(cache_dir if cache_dir is not None else data_file.parent) / name


# Per-feature columns of the cache, in SquadFeature's order (tokens and maps are stored ragged).
_CACHE_COLUMNS = (
    "unique_ids",
    "example_index",
    "doc_span_index",
    "input_ids",
    "input_mask",
    "segment_ids",
    "start_positions",
    "end_positions",
    "has_positions",
    "is_impossible",
)


def _ragged(rows: Sequence[Sequence[Any]], dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rows concatenated, and offsets [N + 1] with row i at values[offsets[i]:offsets[i+1]]."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(row) for row in rows])
    values = np.fromiter((v for row in rows for v in row), dtype=dtype, count=int(offsets[-1]))
    return values, offsets


def save_feature_cache(path: str | os.PathLike[str], features: Sequence[SquadFeature]) -> None:
    """Write ``features`` to ``path`` (a compressed ``.npz``, no pickle), atomically."""
    path = Path(path)
    token_table: dict[str, int] = {}
    token_index = [
        [token_table.setdefault(t, len(token_table)) for t in f.tokens] for f in features
    ]
    arrays: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps({"format": CACHE_FORMAT_VERSION, "count": len(features)})),
        "token_table": np.array(list(token_table), dtype=str),
    }
    arrays.update(features_to_arrays(features))
    arrays["input_ids"] = arrays["input_ids"].astype(np.int32)
    arrays["input_mask"] = arrays["input_mask"].astype(np.int8)
    arrays["segment_ids"] = arrays["segment_ids"].astype(np.int8)
    arrays["has_positions"] = np.array([f.start_position is not None for f in features], bool)
    arrays["example_index"] = np.array([f.example_index for f in features], np.int64)
    arrays["doc_span_index"] = np.array([f.doc_span_index for f in features], np.int64)
    arrays["is_impossible"] = np.array([f.is_impossible for f in features], bool)
    arrays["tokens"], arrays["tokens_offsets"] = _ragged(token_index, np.int32)
    maps = [f.token_to_orig_map for f in features]
    contexts = [f.token_is_max_context for f in features]
    arrays["map_keys"], arrays["map_offsets"] = _ragged([list(m) for m in maps], np.int32)
    arrays["map_values"], _ = _ragged([list(m.values()) for m in maps], np.int32)
    arrays["context_keys"], arrays["context_offsets"] = _ragged(
        [list(c) for c in contexts], np.int32
    )
    arrays["context_values"], _ = _ragged([list(c.values()) for c in contexts], bool)
    atomic_write(path, lambda handle: np.savez_compressed(handle, **arrays))


def load_feature_cache(path: str | os.PathLike[str]) -> list[SquadFeature] | None:
    """Features saved by ``save_feature_cache``, or None when ``path`` does not exist or cannot
    be read (a corrupt or old-format cache is reported with a warning; the caller rebuilds)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = parse_json(str(arrays["meta"]), f"{path} [meta]")
        if meta.get("format") != CACHE_FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')}, expected {CACHE_FORMAT_VERSION}")
        features = _features_from_arrays(arrays)
        if len(features) != meta.get("count"):
            raise ValueError(f"{len(features)} features, expected {meta.get('count')}")
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as err:
        logger.warning("ignoring unreadable SQuAD feature cache %s (%s); rebuilding", path, err)
        return None
    return features


def _features_from_arrays(arrays: Mapping[str, np.ndarray]) -> list[SquadFeature]:
    table = arrays["token_table"].tolist()
    tokens = arrays["tokens"].tolist()
    map_keys, map_values = arrays["map_keys"].tolist(), arrays["map_values"].tolist()
    ctx_keys, ctx_values = arrays["context_keys"].tolist(), arrays["context_values"].tolist()
    tok_off, map_off = arrays["tokens_offsets"].tolist(), arrays["map_offsets"].tolist()
    ctx_off = arrays["context_offsets"].tolist()
    columns = [arrays[name].tolist() for name in _CACHE_COLUMNS]
    features = []
    for i, row in enumerate(zip(*columns, strict=True)):
        uid, ex_index, span_index, ids, mask, segments, start, end, has_positions, impossible = row
        a, b = map_off[i], map_off[i + 1]
        c, d = ctx_off[i], ctx_off[i + 1]
        features.append(
            SquadFeature(
                unique_id=uid,
                example_index=ex_index,
                doc_span_index=span_index,
                tokens=[table[t] for t in tokens[tok_off[i] : tok_off[i + 1]]],
                token_to_orig_map=dict(zip(map_keys[a:b], map_values[a:b], strict=True)),
                token_is_max_context=dict(zip(ctx_keys[c:d], ctx_values[c:d], strict=True)),
                input_ids=ids,
                input_mask=mask,
                segment_ids=segments,
                start_position=start if has_positions else None,
                end_position=end if has_positions else None,
                is_impossible=impossible,
            )
        )
    return features


# ---------------------------------------------------------------------------- post-processing


class _Candidate(NamedTuple):
    text: str
    start_logit: float
    end_logit: float


@lru_cache(maxsize=2)
def _basic_tokenizer(do_lower_case: bool) -> BasicTokenizer:
    return BasicTokenizer(do_lower_case=do_lower_case)


@lru_cache(maxsize=1 << 16)
def _basic_tokens(word: str, do_lower_case: bool) -> str:
    """Space-joined basic tokens of one space-free piece of text.

    Basic tokenization never joins across a space, so a text's tokens are its pieces' tokens
    in order; caching per piece makes the n-best texts of a document cheap.
    """
    return " ".join(_basic_tokenizer(do_lower_case).tokenize(word))


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool) -> str:
    """The part of ``orig_text`` that the normalised ``pred_text`` came from.

    ``pred_text`` is joined WordPieces (lower-cased, accents stripped, punctuation split off);
    ``orig_text`` the original words it spans, e.g. "steve smith" in "Steve Smith's" gives
    "Steve Smith". Google's alignment: basic-tokenize ``orig_text``, find ``pred_text`` in it,
    and map characters one to one after removing spaces; when the search or the alignment fails
    (e.g. accents changed the length) the whole ``orig_text`` is returned.
    """
    pieces = (_basic_tokens(word, do_lower_case) for word in orig_text.split(" "))
    tok_text = " ".join(piece for piece in pieces if piece)
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    if len(orig_text) - orig_text.count(" ") != len(tok_text) - tok_text.count(" "):
        return orig_text
    if not pred_text or tok_text[start] == " " or tok_text[end] == " ":
        return orig_text
    # Characters align one to one once spaces are removed: map by rank among non-spaces.
    orig_chars = [i for i, char in enumerate(orig_text) if char != " "]
    first = orig_chars[start - tok_text.count(" ", 0, start)]
    last = orig_chars[end - tok_text.count(" ", 0, end)]
    return orig_text[first : last + 1]


def _top_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits, largest first, lower index first among equals
    (the order of Google's stable ``sorted(..., reverse=True)``)."""
    n = logits.shape[0]
    k = min(k, n)
    if k < n:
        kth_largest = np.partition(logits, n - k)[n - k]
        candidates = np.flatnonzero(logits >= kth_largest)
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, -logits[candidates]))
    return candidates[order[:k]]


def _answer_text(
    example: SquadExample, feature: SquadFeature, start: int, end: int, do_lower_case: bool
) -> str:
    tok_text = " ".join(feature.tokens[start : end + 1])
    tok_text = " ".join(tok_text.replace(" ##", "").replace("##", "").split())
    orig_start, orig_end = feature.token_to_orig_map[start], feature.token_to_orig_map[end]
    orig_text = " ".join(example.doc_tokens[orig_start : orig_end + 1])
    return get_final_text(tok_text, orig_text, do_lower_case)


def _feature_candidates(
    example: SquadExample,
    feature: SquadFeature,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best_size: int,
    max_answer_length: int,
    do_lower_case: bool,
) -> list[_Candidate]:
    """Up to ``n_best_size`` distinct answer texts of one feature, best first."""
    num_tokens = len(feature.tokens)
    in_doc = feature.token_to_orig_map
    starts = _top_indices(start_logits, n_best_size)
    ends = _top_indices(end_logits, n_best_size)
    start_ok = np.array(
        [
            s < num_tokens and s in in_doc and feature.token_is_max_context.get(s, False)
            for s in starts.tolist()
        ],
        dtype=bool,
    )
    end_ok = np.array([e < num_tokens and e in in_doc for e in ends.tolist()], dtype=bool)
    length = ends[None, :] - starts[:, None] + 1  # [k, k]
    valid = start_ok[:, None] & end_ok[None, :] & (length >= 1) & (length <= max_answer_length)
    rows, cols = np.nonzero(valid)  # row-major: Google's nested loop order
    pair_starts, pair_ends = starts[rows], ends[cols]
    scores = start_logits[pair_starts] + end_logits[pair_ends]
    candidates: list[_Candidate] = []
    seen: set[str] = set()
    for i in np.argsort(-scores, kind="stable").tolist():
        if len(candidates) == n_best_size:
            break
        start, end = int(pair_starts[i]), int(pair_ends[i])
        text = _answer_text(example, feature, start, end, do_lower_case)
        if text in seen:  # de-duplicated within the feature only, as NVIDIA's does
            continue
        seen.add(text)
        candidates.append(_Candidate(text, float(start_logits[start]), float(end_logits[end])))
    return candidates


def _softmax(scores: Sequence[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(score - top) for score in scores]
    total = sum(exps)
    return [x / total for x in exps]


@dataclass(frozen=True)
class SquadAnswerOptions:
    """How `get_answers` turns logits into answers; the flags of run_squad.py and inference.py
    of the same names."""

    n_best_size: int = 20
    max_answer_length: int = 30
    do_lower_case: bool = True
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0

    @classmethod
    def from_args(cls, args: Any) -> SquadAnswerOptions:
        return cls(
            n_best_size=args.n_best_size,
            max_answer_length=args.max_answer_length,
            do_lower_case=args.do_lower_case,
            version_2_with_negative=args.version_2_with_negative,
            null_score_diff_threshold=args.null_score_diff_threshold,
        )


def get_answers(
    examples: Sequence[SquadExample],
    features: Sequence[SquadFeature],
    results: Iterable[RawResult],
    options: SquadAnswerOptions = SquadAnswerOptions(),
) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Answers from the model's logits (NVIDIA's post-processing, its v2.0 bugs fixed).

    Features are matched to ``results`` by ``unique_id``; a question appears in the output when
    at least one of its features has a result. Per feature, the ``n_best_size`` best start and
    end indices form the candidate spans; spans outside the document part, starting at a token
    that is not max-context, ending before they start or longer than ``max_answer_length`` are
    skipped. Per question the candidates of all its features are ranked by start + end logit and
    the best ``n_best_size`` kept, with ``probability`` a softmax over them.

    v1.1: the answer is the best text ("empty" when there is no valid span). v2.0: the null
    candidate "" scores the minimum of start[0] + end[0] over the question's own features; the
    answer is "" when null score - best non-null score > ``null_score_diff_threshold`` or when
    there is no non-null candidate. ``null_odds`` holds that difference per question (+inf when
    there is no non-null candidate; empty for v1.1).

    Returns (predictions: qas_id -> text, nbest: qas_id -> [{text, probability, start_logit,
    end_logit}], null_odds: qas_id -> float).
    """
    n_best_size, max_answer_length = options.n_best_size, options.max_answer_length
    version_2_with_negative = options.version_2_with_negative
    if n_best_size < 1:
        raise ValueError(f"n_best_size must be at least 1, got {n_best_size}")
    by_id = {int(result.unique_id): result for result in results}
    candidates: dict[str, list[_Candidate]] = {}
    null_candidates: dict[str, _Candidate] = {}
    null_scores: dict[str, float] = {}  # per question, its own features only (not the last)
    for feature in sorted(features, key=lambda f: f.unique_id):
        result = by_id.get(feature.unique_id)
        if result is None:
            continue
        example = examples[feature.example_index]
        start_logits = np.asarray(result.start_logits, dtype=np.float64)
        end_logits = np.asarray(result.end_logits, dtype=np.float64)
        candidates.setdefault(example.qas_id, []).extend(
            _feature_candidates(
                example,
                feature,
                start_logits,
                end_logits,
                n_best_size,
                max_answer_length,
                options.do_lower_case,
            )
        )
        if version_2_with_negative:
            null_score = start_logits[0] + end_logits[0]
            if example.qas_id not in null_scores or null_score < null_scores[example.qas_id]:
                null_scores[example.qas_id] = float(null_score)
                null_candidates[example.qas_id] = _Candidate(
                    "", float(start_logits[0]), float(end_logits[0])
                )
    predictions: dict[str, str] = {}
    nbest: dict[str, list[dict[str, Any]]] = {}
    null_odds: dict[str, float] = {}
    for qas_id, found in candidates.items():
        if version_2_with_negative:
            found = [*found, null_candidates[qas_id]]
        ranked = sorted(found, key=lambda c: c.start_logit + c.end_logit, reverse=True)
        kept = ranked[:n_best_size] or [_Candidate("empty", 0.0, 0.0)]
        probabilities = _softmax([c.start_logit + c.end_logit for c in kept])
        nbest[qas_id] = [
            {
                "text": c.text,
                "probability": p,
                "start_logit": c.start_logit,
                "end_logit": c.end_logit,
            }
            for c, p in zip(kept, probabilities, strict=True)
        ]
        if not version_2_with_negative:
            predictions[qas_id] = kept[0].text
            continue
        best_non_null = next((c for c in ranked if c.text), None)
        if best_non_null is None:
            predictions[qas_id], null_odds[qas_id] = "", math.inf
            continue
        diff = null_scores[qas_id] - best_non_null.start_logit - best_non_null.end_logit
        null_odds[qas_id] = diff
        predictions[qas_id] = "" if diff > options.null_score_diff_threshold else best_non_null.text
    return predictions, nbest, null_odds


def write_predictions(
    output_dir: str | os.PathLike[str],
    predictions: Mapping[str, str],
    nbest: Mapping[str, list[dict[str, Any]]],
    null_odds: Mapping[str, float] | None = None,
) -> dict[str, Path]:
    """Write predictions.json, nbest_predictions.json and (when given, v2.0) null_odds.json.

    JSON with indent 4, written to temporary names and renamed together once all are complete,
    so a failed write (a full disk) leaves the earlier set whole. Returns the paths by kind
    ("predictions", "nbest", "null_odds").
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    documents: dict[str, Any] = {"predictions": dict(predictions), "nbest": dict(nbest)}
    names = {"predictions": "predictions.json", "nbest": "nbest_predictions.json"}
    if null_odds is not None:
        documents["null_odds"] = dict(null_odds)
        names["null_odds"] = "null_odds.json"
    paths = {kind: output_dir / name for kind, name in names.items()}
    atomic_write_files(
        {
            paths[kind]: (json.dumps(value, indent=4) + "\n").encode()
            for kind, value in documents.items()
        }
    )
    return paths


# ---------------------------------------------------------------------------- evaluation

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """The official normalisation: lower-case, drop ASCII punctuation, drop the articles
    a/an/the, collapse whitespace (in that order)."""
    text = "".join(char for char in text.lower() if char not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match_score(prediction: str, ground_truth: str) -> int:
    """1 when the normalised strings are equal, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(ground_truth))


def _token_f1(prediction_tokens: list[str], gold_tokens: list[str]) -> float:
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def f1_score(prediction: str, ground_truth: str) -> float:
    """v1.1 token F1 of the normalised strings (0 when either is empty)."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(ground_truth).split())


def f1_score_v2(prediction: str, ground_truth: str) -> float:
    """v2.0 token F1: as v1.1, except that an empty side scores 1 when both are empty."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(ground_truth).split()
    if not prediction_tokens or not gold_tokens:
        return int(prediction_tokens == gold_tokens)
    return _token_f1(prediction_tokens, gold_tokens)


def _gold_answers(
    dataset_json_data: Any, source: str | os.PathLike[str] = "the SQuAD dataset"
) -> list[tuple[str, list[str]]]:
    """(qas_id, gold answer texts) in file order; accepts the whole file or its "data" list.
    ``source`` names the dataset in errors."""
    data = dataset_json_data
    if isinstance(data, Mapping):
        data = data.get("data")
    if not isinstance(data, list):
        raise SquadError('not a SQuAD dataset: expected the file\'s JSON or its "data" list')
    gold: list[tuple[str, list[str]]] = []
    seen: dict[str, str] = {}
    for i, article in enumerate(data):
        paragraphs = article.get("paragraphs", []) if isinstance(article, dict) else []
        for j, paragraph in enumerate(paragraphs):
            for k, qa in enumerate(paragraph.get("qas", []) if isinstance(paragraph, dict) else []):
                answers = qa.get("answers") if isinstance(qa, dict) else None
                if not isinstance(answers, list) or not all(
                    isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers
                ):
                    qas_id = qa.get("id") if isinstance(qa, dict) else None
                    raise SquadError(
                        f"question {qas_id!r} in data[{i}] has no list of answers with text"
                    )
                if not isinstance(qa.get("id"), str):
                    raise SquadError(f"a question in data[{i}] has no string id: {qa.get('id')!r}")
                where = f"data[{i}].paragraphs[{j}].qas[{k}]"
                _check_unique_id(qa["id"], where, seen, "the SQuAD dataset")
                gold.append((qa["id"], [a["text"] for a in answers]))
    refuse_if_nothing_usable(
        len(gold), os.fspath(source), "questions", "the dataset holds none to score", SquadError
    )
    return gold


def _warn_missing(missing: list[str], total: int) -> None:
    if missing:
        logger.warning(
            "%d of %d questions have no prediction and score 0 (first: %s)",
            len(missing),
            total,
            missing[0],
        )


def check_v1_answers(dataset_json_data: Any, source: str | os.PathLike[str]) -> None:
    """Refuse a dataset that SQuAD v1.1 scoring cannot score: a question without gold answers
    (v2.0's unanswerable kind) has nothing to compare a prediction with."""
    for qas_id, answers in _gold_answers(dataset_json_data, source):
        if not answers:
            raise SquadError(
                f"{os.fspath(source)}: question {qas_id!r} has no gold answers, which SQuAD v1.1 "
                "scoring needs (v2.0 data: --version_2_with_negative, or evaluate-v2.0)"
            )


def check_predictions_match(
    dataset_json_data: Any,
    predictions: Mapping[str, str],
    data_source: str | os.PathLike[str],
    predictions_source: str | os.PathLike[str],
) -> None:
    """Refuse predictions of which none is for a question of the dataset: every question would
    score 0, a score from nothing (a file of another dataset or split)."""
    gold = _gold_answers(dataset_json_data, data_source)
    matched = sum(1 for qas_id, _ in gold if qas_id in predictions)
    why = (
        f"none of its {len(predictions)} question ids is one of the {len(gold)} questions of "
        f"{os.fspath(data_source)}, so every question would score 0"
    )
    refuse_if_nothing_usable(matched, os.fspath(predictions_source), "predictions", why, SquadError)


def evaluate_v1(
    dataset_json_data: Any,
    predictions: Mapping[str, str],
    source: str | os.PathLike[str] = "the SQuAD dataset",
) -> dict[str, float]:
    """Official SQuAD v1.1 scores: ``{"exact_match": %, "f1": %}``.

    ``dataset_json_data`` is the parsed file or its "data" list, ``source`` its name in errors.
    Each question scores the best EM/F1 over its gold answers; a question without a prediction
    scores 0 (with a warning); one without gold answers raises ``SquadError``.
    """
    check_v1_answers(dataset_json_data, source)
    gold = _gold_answers(dataset_json_data, source)
    exact_match = 0
    f1 = 0.0
    missing = []
    for qas_id, answers in gold:
        if qas_id not in predictions:
            missing.append(qas_id)
            continue
        prediction = predictions[qas_id]
        exact_match += max(exact_match_score(prediction, a) for a in answers)
        f1 += max(f1_score(prediction, a) for a in answers)
    _warn_missing(missing, len(gold))
    return {"exact_match": 100.0 * exact_match / len(gold), "f1": 100.0 * f1 / len(gold)}


def evaluate_v2(
    dataset_json_data: Any,
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
    *,
    source: str | os.PathLike[str] = "the SQuAD dataset",
) -> dict[str, float | int]:
    """Official SQuAD v2.0 scores (keys as evaluate-v2.0.py prints them).

    exact, f1, total; HasAns_exact/f1/total and NoAns_exact/f1/total when such questions exist;
    and with ``na_probs`` (qas_id -> no-answer probability or odds) best_exact,
    best_exact_thresh, best_f1, best_f1_thresh. A question whose ``na_probs`` exceeds
    ``na_prob_thresh`` counts as answered with "". ``source`` names the dataset in errors.
    Gold answers that normalise to "" are
    dropped, and a question left without any is scored against [""] (the official rule).
    Unlike the official script, which stops with a KeyError, a question without a prediction
    scores 0 (with a warning); ``na_probs`` missing an answered question raises ``SquadError``.
    """
    gold = dict(_gold_answers(dataset_json_data, source))
    has_answer = {qas_id: bool(answers) for qas_id, answers in gold.items()}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    missing = []
    for qas_id, answers in gold.items():
        if qas_id not in predictions:
            missing.append(qas_id)
            continue
        answers = [a for a in answers if normalize_answer(a)] or [""]
        prediction = predictions[qas_id]
        exact_raw[qas_id] = max(exact_match_score(prediction, a) for a in answers)
        f1_raw[qas_id] = max(f1_score_v2(prediction, a) for a in answers)
    _warn_missing(missing, len(gold))
    probs = na_probs if na_probs is not None else dict.fromkeys(predictions, 0.0)
    lacking = [qas_id for qas_id in exact_raw if qas_id not in probs]
    if lacking:
        raise SquadError(f"na_probs lacks {len(lacking)} answered questions (first: {lacking[0]})")
    exact = _apply_no_answer_threshold(exact_raw, probs, has_answer, na_prob_thresh)
    f1 = _apply_no_answer_threshold(f1_raw, probs, has_answer, na_prob_thresh)
    result = _summary(exact, f1, list(gold))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qas_ids = [qas_id for qas_id, has in has_answer.items() if has == wanted]
        if qas_ids:
            result.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, qas_ids).items()})
    if na_probs is not None:
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, threshold = _best_threshold(predictions, raw, probs, has_answer)
            result[f"best_{name}"] = best
            result[f"best_{name}_thresh"] = threshold
    return result


def _apply_no_answer_threshold(
    scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
    threshold: float,
) -> dict[str, float]:
    """Scores with "" as the answer where na_prob > threshold; missing predictions score 0."""
    thresholded: dict[str, float] = {}
    for qas_id in has_answer:
        if qas_id not in scores:
            thresholded[qas_id] = 0
        elif na_probs[qas_id] > threshold:
            thresholded[qas_id] = float(not has_answer[qas_id])
        else:
            thresholded[qas_id] = scores[qas_id]
    return thresholded


def _summary(
    exact: Mapping[str, float], f1: Mapping[str, float], qas_ids: list[str]
) -> dict[str, float | int]:
    total = len(qas_ids)
    return {
        "exact": 100.0 * sum(exact[k] for k in qas_ids) / total,
        "f1": 100.0 * sum(f1[k] for k in qas_ids) / total,
        "total": total,
    }


def _best_threshold(
    predictions: Mapping[str, str],
    raw_scores: Mapping[str, float],
    na_probs: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """Best score over no-answer thresholds and the threshold giving it (official search).

    Starts from "every question answered with ''" and, in increasing na_prob order, switches
    each question to its prediction, keeping the best running total.
    """
    score: float = sum(1 for k, has in has_answer.items() if not has and k in raw_scores)
    best_score, best_threshold = score, 0.0
    for qas_id in sorted(na_probs, key=lambda k: na_probs[k]):
        if qas_id not in raw_scores:
            continue
        if has_answer[qas_id]:
            score += raw_scores[qas_id]
        elif predictions[qas_id]:
            score -= 1
        if score > best_score:
            best_score, best_threshold = score, na_probs[qas_id]
    return 100.0 * best_score / len(has_answer), best_threshold
