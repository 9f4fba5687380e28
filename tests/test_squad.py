"""squad.py and evaluate_squad.py: hand-built windows, spans, answers and scores; equality with a
plain re-derivation of NVIDIA's feature and answer code on real data; the official numbers on
the dev set; the bundled samples; the feature cache; bad input."""

from __future__ import annotations

import collections
import json
import logging
import math
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import squad
import tokenization
from tests.support import CASED_VOCAB, REPO_ROOT, UNCASED_VOCAB
from tokenization import BasicTokenizer, BertTokenizer, VocabError

SAMPLE_DIR = REPO_ROOT / "data" / "sample" / "squad"
DEV_SAMPLE = SAMPLE_DIR / "v1.1" / "dev-v1.1.json"
TRAIN_SAMPLE = SAMPLE_DIR / "v1.1" / "train-v1.1.json"
V2_SAMPLE = SAMPLE_DIR / "v2.0" / "dev-v2.0.json"
DEV_QUESTIONS = 10_570
# Features of the full dev set, uncased vocabulary, 384/128/64 (a regression value).
DEV_FEATURES = 10_833


class WordTokenizer:
    """Lower-cased whitespace words; "a+b" becomes the pieces "a", "##b". Ids in first-seen order
    after [PAD]=0, [CLS]=1, [SEP]=2."""

    def __init__(self) -> None:
        self.vocab = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}

    def tokenize(self, text: str) -> list[str]:
        pieces = []
        for word in text.lower().split():
            first, *rest = word.split("+")
            pieces += [first] + ["##" + piece for piece in rest]
        return pieces

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab.setdefault(token, len(self.vocab)) for token in tokens]


@pytest.fixture(scope="module")
def uncased() -> BertTokenizer:
    return BertTokenizer(UNCASED_VOCAB, do_lower_case=True)


def write_json(path: Path, value) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def dataset(paragraphs, version="1.1"):
    """A SQuAD file from [(context, [(id, question, answer text | None, is_impossible)])]."""
    out = []
    for context, questions in paragraphs:
        qas = []
        for qas_id, question, answer, impossible in questions:
            answers = (
                [] if answer is None else [{"text": answer, "answer_start": context.find(answer)}]
            )
            qa = {"id": qas_id, "question": question, "answers": answers}
            if version.startswith("v2"):
                qa["is_impossible"] = impossible
            qas.append(qa)
        out.append({"context": context, "qas": qas})
    return {"version": version, "data": [{"title": "t", "paragraphs": out}]}


# ----------------------------------------------------------------------------- reading


def test_context_words_split_on_nvidia_whitespace_including_u202f():
    words, starts = squad.split_context("  Hello\u202fworld\t(1895-1943).\r\nend\u00a0x ")
    # U+00A0 (no-break space) is not whitespace for NVIDIA's reader; U+202F is.
    assert words == ["Hello", "world", "(1895-1943).", "end\u00a0x"]
    assert starts == [2, 8, 14, 28]


def test_training_answers_map_characters_to_words(tmp_path, caplog):
    context = "Hello\u202fworld, said  the (1895-1943). man"
    data = dataset(
        [
            (
                context,
                [
                    ("a", "Who?", "world,", False),
                    (
                        "b",
                        "Part of a word?",
                        "orld",
                        False,
                    ),  # inside a word: the whole word is the span
                    ("c", "Years?", "1895-1943", False),
                    ("d", "Spaces?", "said  the", False),  # cleaned to "said the"
                ],
            )
        ]
    )
    data["data"][0]["paragraphs"][0]["qas"].append(
        {"id": "e", "question": "Lost?", "answers": [{"text": "zebra", "answer_start": 0}]}
    )
    examples = squad.read_squad_examples(write_json(tmp_path / "t.json", data), True)
    got = {e.qas_id: (e.start_position, e.end_position, e.orig_answer_text) for e in examples}
    assert got == {
        "a": (1, 1, "world,"),
        "b": (1, 1, "orld"),
        "c": (4, 4, "1895-1943"),
        "d": (2, 3, "said  the"),
    }
    assert "'e'" in caplog.text and "could not find answer" in caplog.text
    assert examples[0].doc_tokens is examples[1].doc_tokens  # one word list per paragraph


def test_v2_training_reads_is_impossible(tmp_path):
    data = dataset(
        [
            (
                "Paris is in France.",
                [
                    ("a", "Where is Paris?", "France", False),
                    ("b", "Where is Rome?", None, True),
                ],
            )
        ],
        version="v2.0",
    )
    path = write_json(tmp_path / "v2.json", data)
    a, b = squad.read_squad_examples(path, True, version_2_with_negative=True)
    assert (a.is_impossible, a.start_position, a.end_position) == (False, 3, 3)
    assert (b.is_impossible, b.start_position, b.end_position, b.orig_answer_text) == (
        True,
        -1,
        -1,
        "",
    )
    assert squad.detect_version(data) == "2.0"
    data["version"] = "1.1"  # still v2: questions carry is_impossible
    assert squad.detect_version(data) == "2.0"
    assert squad.detect_version(dataset([("x", [("a", "q", "x", False)])])) == "1.1"
    with pytest.raises(squad.SquadError, match=r"looks like SQuAD v2\.0"):
        squad.read_squad_examples(path, True)  # forgot version_2_with_negative
    evaluation = squad.read_squad_examples(path, False)
    assert [e.start_position for e in evaluation] == [None, None]


# ----------------------------------------------------------------------------- features


def window_case(tmp_path, impossible=False):
    """Question "q0 q1" on the 20 words "w0 ... w19"; answer "w10 w11", or none."""
    context = " ".join(f"w{i}" for i in range(20))
    answer = None if impossible else "w10 w11"
    data = dataset([(context, [("a", "q0 q1", answer, impossible)])], "v2.0")
    return squad.read_squad_examples(write_json(tmp_path / "w.json", data), True, True)


def test_windows_max_context_and_shifted_labels(tmp_path):
    (example,) = window_case(tmp_path)
    # 2 question tokens: 13 - 2 - 3 = 8 document tokens per window, stride 3, 20 tokens.
    features = squad.convert_examples_to_features(
        [example],
        WordTokenizer(),
        max_seq_length=13,
        doc_stride=3,
        max_query_length=64,
        is_training=True,
    )
    assert [f.doc_span_index for f in features] == [0, 1, 2, 3, 4]
    assert [f.unique_id for f in features] == list(range(1_000_000_000, 1_000_000_005))
    starts = [min(f.token_to_orig_map.values()) for f in features]
    assert starts == [0, 3, 6, 9, 12]
    assert all(len(f.token_to_orig_map) == 8 for f in features)
    # The window giving each token the most context (first window on ties), worked by hand.
    best = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 4, 4]
    for f in features:
        for position, word in f.token_to_orig_map.items():
            assert f.token_is_max_context[position] == (best[word] == f.doc_span_index)
    # Answer w10..w11: inside windows 2 and 3 only; elsewhere 0/0 ([CLS]).
    labels = [(f.start_position, f.end_position) for f in features]
    assert labels == [(0, 0), (0, 0), (10 - 6 + 4, 11 - 6 + 4), (10 - 9 + 4, 11 - 9 + 4), (0, 0)]
    for f in features:
        if f.start_position:
            assert f.tokens[f.start_position : f.end_position + 1] == ["w10", "w11"]
    (impossible,) = window_case(tmp_path, impossible=True)
    features = squad.convert_examples_to_features(
        [impossible],
        WordTokenizer(),
        max_seq_length=13,
        doc_stride=3,
        max_query_length=64,
        is_training=True,
    )
    assert [(f.start_position, f.end_position, f.is_impossible) for f in features] == [
        (0, 0, True)
    ] * 5


def test_window_length_term_decides_max_context():
    # Windows (0, 250) and (128, 132): token 189 has min context 60 in the first and 61 in the
    # second, but 60 + 0.01 * 250 > 61 + 0.01 * 132; token 190 has 59 and 62.
    spans = squad._doc_spans(260, 250, 128)
    assert spans == [(0, 250), (128, 132)]
    best = squad._max_context_span(spans, 260)
    assert best[189] == 0 and best[190] == 1
    rng = random.Random(0)
    for _ in range(200):
        n, room, stride = rng.randint(1, 400), rng.randint(1, 300), rng.randint(1, 200)
        spans = squad._doc_spans(n, room, stride)
        got = squad._max_context_span(spans, n)
        for position in rng.sample(range(n), min(n, 20)):
            assert [got[position] == i for i in range(len(spans))] == [
                plain_is_max_context(spans, i, position) for i in range(len(spans))
            ]


def test_layout_segments_mask_padding_and_word_maps(tmp_path):
    data = dataset([("alpha be+ta gamma", [("a", "Q+x", "gamma", False)])])
    examples = squad.read_squad_examples(write_json(tmp_path / "l.json", data), True)
    (f,) = squad.convert_examples_to_features(
        examples,
        WordTokenizer(),
        max_seq_length=12,
        doc_stride=128,
        max_query_length=64,
        is_training=True,
    )
    assert f.tokens == ["[CLS]", "q", "##x", "[SEP]", "alpha", "be", "##ta", "gamma", "[SEP]"]
    assert f.token_to_orig_map == {4: 0, 5: 1, 6: 1, 7: 2}
    assert f.token_is_max_context == {4: True, 5: True, 6: True, 7: True}
    assert f.segment_ids == [0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0]
    assert f.input_mask == [1] * 9 + [0] * 3
    assert f.input_ids[:2] == [1, 3] and f.input_ids[3] == 2 and f.input_ids[9:] == [0, 0, 0]
    assert (f.start_position, f.end_position) == (7, 7)
    arrays = squad.features_to_arrays([f])
    assert {k: (v.shape, v.dtype) for k, v in arrays.items()} == {
        "input_ids": ((1, 12), np.int64),
        "input_mask": ((1, 12), np.int64),
        "segment_ids": ((1, 12), np.int64),
        "start_positions": ((1,), np.int64),
        "end_positions": ((1,), np.int64),
        "unique_ids": ((1,), np.int64),
    }
    evaluation = squad.convert_examples_to_features(
        examples, WordTokenizer(), max_seq_length=12, doc_stride=128, max_query_length=64
    )
    assert squad.features_to_arrays(evaluation)["start_positions"].tolist() == [-1]


def test_improve_answer_span_narrows_to_the_answer_tokens(tmp_path, uncased):
    # Google's example: the answer "1895" sits inside the whitespace word "(1895-1943).".
    context = "The leader was John Smith (1895-1943)."
    data = dataset([(context, [("a", "When was John Smith born?", "1895", False)])])
    (example,) = squad.read_squad_examples(write_json(tmp_path / "s.json", data), True)
    assert example.doc_tokens[example.start_position] == "(1895-1943)."
    (f,) = squad.convert_examples_to_features(
        [example],
        uncased,
        max_seq_length=384,
        doc_stride=128,
        max_query_length=64,
        is_training=True,
    )
    assert f.tokens[f.start_position : f.end_position + 1] == ["1895"]
    doc = ["the", "(", "1895", "-", "1943", ")", "."]
    assert squad._improve_answer_span(doc, 1, 6, uncased, "1895") == (2, 2)
    assert squad._improve_answer_span(doc, 1, 6, uncased, "1895-1943") == (2, 4)
    assert squad._improve_answer_span(doc, 1, 6, uncased, "1900") == (1, 6)


def test_improve_answer_span_equals_the_quadratic_search():
    rng = random.Random(1)
    tokenizer = WordTokenizer()
    for _ in range(500):
        doc = [rng.choice("abc") for _ in range(rng.randint(1, 12))]
        answer = " ".join(rng.choice("abc") for _ in range(rng.randint(1, 3)))
        start = rng.randrange(len(doc))
        end = rng.randrange(start, len(doc))
        assert squad._improve_answer_span(doc, start, end, tokenizer, answer) == (
            plain_improve_answer_span(doc, start, end, tokenizer, answer)
        )


def test_max_seq_length_too_small_for_the_question(tmp_path):
    (example,) = window_case(tmp_path)
    with pytest.raises(squad.SquadError, match=r"max_seq_length=5 leaves no room.*'a'"):
        squad.convert_examples_to_features(
            [example], WordTokenizer(), max_seq_length=5, doc_stride=3, max_query_length=64
        )
    squad.convert_examples_to_features(
        [example], WordTokenizer(), max_seq_length=6, doc_stride=3, max_query_length=64
    )  # one token fits
    with pytest.raises(ValueError, match="doc_stride"):
        squad.convert_examples_to_features(
            [example], WordTokenizer(), max_seq_length=64, doc_stride=0, max_query_length=64
        )


# ----------------------------------------------------------------------------- answers

CONTEXT = "Alpha beta gamma delta epsilon zeta"


def answer_case(num_questions=1, max_seq_length=16):
    """Questions on CONTEXT; each feature: [CLS]=0, q=1, [SEP]=2, alpha..zeta=3..8, [SEP]=9."""
    words = CONTEXT.split()
    examples = [squad.SquadExample(f"q{i}", "q", words) for i in range(num_questions)]
    features = squad.convert_examples_to_features(
        examples, WordTokenizer(), max_seq_length=max_seq_length
    )
    return examples, features


def logits(values: dict[int, float], size=16, default=-10.0) -> np.ndarray:
    out = np.full(size, default, dtype=np.float32)
    for position, value in values.items():
        out[position] = value
    return out


def result(feature, start: dict, end: dict):
    return squad.RawResult(feature.unique_id, logits(start), logits(end))


# Starts: [CLS], question and padding score highest but are invalid; alpha 5, gamma 4.
# Ends: final [SEP] highest but invalid; beta 5, delta 3, alpha 1.
START = {0: 9, 1: 8, 12: 7, 3: 5, 5: 4}
END = {9: 8, 4: 5, 6: 3, 3: 1}


def test_nbest_order_probabilities_and_skipped_spans():
    examples, (f,) = answer_case()
    predictions, nbest, null_odds = squad.get_answers(
        examples,
        [f],
        [result(f, START, END)],
        squad.SquadAnswerOptions(n_best_size=6, max_answer_length=30),
    )
    texts = [(n["text"], n["start_logit"] + n["end_logit"]) for n in nbest["q0"]]
    # (gamma, beta) ends before it starts; [CLS]/question/padding/[SEP] are never used.
    assert texts == [
        ("Alpha beta", 10),
        ("Alpha beta gamma delta", 8),
        ("gamma delta", 7),
        ("Alpha", 6),
    ]
    assert predictions == {"q0": "Alpha beta"} and null_odds == {}
    probabilities = [n["probability"] for n in nbest["q0"]]
    expected = np.exp([10, 8, 7, 6] - np.max([10, 8, 7, 6]))
    np.testing.assert_allclose(probabilities, expected / expected.sum(), rtol=1e-12)
    _, nbest, _ = squad.get_answers(
        examples,
        [f],
        [result(f, START, END)],
        squad.SquadAnswerOptions(n_best_size=6, max_answer_length=3),
    )
    assert [n["text"] for n in nbest["q0"]] == ["Alpha beta", "gamma delta", "Alpha"]


def test_start_must_have_max_context():
    examples, (f,) = answer_case()
    f.token_is_max_context[3] = False  # alpha's best context is in another window
    predictions, nbest, _ = squad.get_answers(
        examples,
        [f],
        [result(f, START, END)],
        squad.SquadAnswerOptions(n_best_size=6, max_answer_length=30),
    )
    assert [n["text"] for n in nbest["q0"]] == ["gamma delta"]
    assert predictions["q0"] == "gamma delta"


@pytest.mark.parametrize("limit", [3, 2])
def test_an_answer_of_exactly_max_answer_length_tokens_is_found(limit):
    """The best span, alpha..gamma, is 3 tokens: found (as best and in the n-best) when
    max_answer_length is 3, left out when it is 2; every span within the limit is listed."""
    examples, (f,) = answer_case()
    predictions, nbest, _ = squad.get_answers(
        examples,
        [f],
        [result(f, {3: 5.0}, {5: 5.0})],
        squad.SquadAnswerOptions(n_best_size=20, max_answer_length=limit),
    )
    texts = [n["text"] for n in nbest["q0"]]
    words = CONTEXT.split()
    within = {" ".join(words[s : s + n]) for n in range(1, limit + 1) for s in range(7 - n)}
    assert set(texts) == within and len(texts) == len(within)  # 15 spans for 3, 11 for 2
    if limit == 3:
        assert predictions["q0"] == texts[0] == "Alpha beta gamma"
    else:
        assert predictions["q0"] == texts[0] != "Alpha beta gamma"


@pytest.mark.parametrize("limit", [5, 4])
def test_the_question_is_cut_to_max_query_length(limit):
    words = CONTEXT.split()
    example = squad.SquadExample("a", "q0 q1 q2 q3 q4", words)
    (f,) = squad.convert_examples_to_features(
        [example], WordTokenizer(), max_seq_length=16, doc_stride=128, max_query_length=limit
    )
    question = [f"q{i}" for i in range(limit)]  # 5 tokens: all kept at 5, the last cut at 4
    assert f.tokens == ["[CLS]", *question, "[SEP]", *[w.lower() for w in words], "[SEP]"]
    assert f.segment_ids[: limit + 2] == [0] * (limit + 2)


def test_a_context_that_exactly_fills_a_window_takes_one():
    """One question token leaves 10 - 4 = 6 context tokens per window: 6 words fit one window
    exactly; a seventh needs a second window, doc_stride (2) tokens later."""
    words = CONTEXT.split()
    for context, expected in ((words, [(0, 5)]), ([*words, "eta"], [(0, 5), (2, 6)])):
        features = squad.convert_examples_to_features(
            [squad.SquadExample("a", "q", context)],
            WordTokenizer(),
            max_seq_length=10,
            doc_stride=2,
            max_query_length=64,
        )
        spans = [
            (min(f.token_to_orig_map.values()), max(f.token_to_orig_map.values())) for f in features
        ]
        assert spans == expected
        assert len(features[0].tokens) == 10  # the first window is full


def test_v2_null_score_is_per_question():
    examples, (fa, fb) = answer_case(num_questions=2)
    # Same span logits; q0's null (6 + 6) beats its best span (10), q1's (-5 - 5) does not.
    # NVIDIA's code gives both questions the null logits of the last one (q1): both answered.
    results = [
        result(fa, {**START, 0: 6}, {**END, 0: 6}),
        result(fb, {**START, 0: -5}, {**END, 0: -5}),
    ]
    predictions, nbest, null_odds = squad.get_answers(
        examples,
        [fa, fb],
        results,
        squad.SquadAnswerOptions(n_best_size=6, max_answer_length=30, version_2_with_negative=True),
    )
    assert predictions == {"q0": "", "q1": "Alpha beta"}
    assert null_odds == {"q0": 2.0, "q1": -20.0}
    assert nbest["q0"][0]["text"] == "" and nbest["q1"][-1]["text"] == ""
    predictions, _, _ = squad.get_answers(
        examples,
        [fa, fb],
        results,
        squad.SquadAnswerOptions(
            n_best_size=6,
            max_answer_length=30,
            version_2_with_negative=True,
            null_score_diff_threshold=3.0,
        ),
    )
    assert predictions == {"q0": "Alpha beta", "q1": "Alpha beta"}


def test_v2_null_score_is_the_minimum_over_the_question_windows(tmp_path):
    (example,) = window_case(tmp_path)
    features = squad.convert_examples_to_features(
        [example], WordTokenizer(), max_seq_length=13, doc_stride=3, max_query_length=64
    )
    rng = np.random.default_rng(0)
    nulls = [3.0, -1.0, 2.0, 5.0, 0.5]
    results = []
    for f, null in zip(features, nulls, strict=True):
        start, end = rng.normal(size=13).astype(np.float32), rng.normal(size=13).astype(np.float32)
        start[0], end[0] = null / 2, null / 2
        results.append(squad.RawResult(f.unique_id, start, end))
    _, nbest, null_odds = squad.get_answers(
        [example],
        features,
        results,
        squad.SquadAnswerOptions(
            n_best_size=200, max_answer_length=30, do_lower_case=True, version_2_with_negative=True
        ),
    )
    (null_entry,) = [n for n in nbest["a"] if n["text"] == ""]
    assert null_entry["start_logit"] + null_entry["end_logit"] == -1.0
    best = max(n["start_logit"] + n["end_logit"] for n in nbest["a"] if n["text"])
    assert null_odds["a"] == pytest.approx(-1.0 - best)


def test_no_valid_span_does_not_crash():
    examples, (f,) = answer_case()
    # With n_best_size 2 the best starts are [CLS] and the question token: no valid span.
    res = [result(f, START, END)]
    predictions, nbest, _ = squad.get_answers(
        examples, [f], res, squad.SquadAnswerOptions(n_best_size=2)
    )
    assert predictions == {"q0": "empty"}
    assert nbest["q0"] == [
        {"text": "empty", "probability": 1.0, "start_logit": 0.0, "end_logit": 0.0}
    ]
    predictions, nbest, null_odds = squad.get_answers(
        examples, [f], res, squad.SquadAnswerOptions(n_best_size=2, version_2_with_negative=True)
    )
    assert predictions == {"q0": ""} and null_odds == {"q0": math.inf}
    assert [n["text"] for n in nbest["q0"]] == [""]


def test_answers_come_from_all_windows_of_a_question(tmp_path):
    (example,) = window_case(tmp_path)
    features = squad.convert_examples_to_features(
        [example], WordTokenizer(), max_seq_length=13, doc_stride=3, max_query_length=64
    )
    results = []
    for f in features:
        position = {v: k for k, v in f.token_to_orig_map.items()}
        start, end = {}, {}
        if f.doc_span_index == 2:  # w10..w11 from the window where w10 has most context
            start, end = {position[10]: 4.0}, {position[11]: 4.0}
        if f.doc_span_index == 3:  # the same span scores higher here, but w10 is not max-context
            start, end = {position[10]: 6.0}, {position[11]: 6.0}
        if f.doc_span_index == 4:
            start, end = {position[16]: 1.0}, {position[17]: 1.0}
        results.append(squad.RawResult(f.unique_id, logits(start, 13), logits(end, 13)))
    predictions, nbest, _ = squad.get_answers(
        [example],
        features,
        reversed(results),
        squad.SquadAnswerOptions(n_best_size=3, max_answer_length=30),
    )
    assert predictions == {"a": "w10 w11"}
    assert [n["text"] for n in nbest["a"]][:2] == ["w10 w11", "w16 w17"]
    # Features without a result are skipped; a question with none is left out.
    predictions, _, _ = squad.get_answers(
        [example],
        features,
        results[4:],
        squad.SquadAnswerOptions(n_best_size=3, max_answer_length=30),
    )
    assert predictions == {"a": "w16 w17"}
    assert squad.get_answers(
        [example], features, [], squad.SquadAnswerOptions(n_best_size=3, max_answer_length=30)
    ) == (
        {},
        {},
        {},
    )


def test_get_final_text_projects_onto_the_original_words():
    assert squad.get_final_text("steve smith", "Steve Smith's", True) == "Steve Smith"
    assert squad.get_final_text("smith", "Steve Smith's", True) == "Smith"
    assert squad.get_final_text("1895", "(1895-1943).", True) == "1895"
    assert squad.get_final_text("cafe", "Café", True) == "Café"
    assert squad.get_final_text("Steve", "Steve Smith's", False) == "Steve"
    assert squad.get_final_text("steve", "Steve Smith's", False) == "Steve Smith's"  # not found
    # NFD accent stripping changes the length: the alignment fails, the whole span is returned.
    assert squad.get_final_text("e", "e\u0301 x", True) == "e\u0301 x"


def test_get_final_text_equals_the_plain_alignment():
    rng = random.Random(4)
    characters = "aB \u00e9\u00a0\t\u3000\u4e2d-.'s\u0301x\x00"
    basic = BasicTokenizer(do_lower_case=True)
    for _ in range(3000):
        orig = "".join(rng.choice(characters) for _ in range(rng.randint(0, 12)))
        tokens = " ".join(basic.tokenize(orig)) or "a"
        pred = tokens[rng.randrange(len(tokens)) :][: rng.randint(0, 6)]
        for do_lower_case in (True, False):
            assert squad.get_final_text(pred, orig, do_lower_case) == plain_final_text(
                pred, orig, do_lower_case
            )


def test_top_indices_equal_a_stable_descending_sort():
    rng = np.random.default_rng(2)
    for _ in range(300):
        values = rng.integers(-3, 4, size=rng.integers(1, 40)).astype(np.float64)
        k = int(rng.integers(1, 45))
        expected = sorted(range(len(values)), key=lambda i: values[i], reverse=True)[:k]
        assert squad._top_indices(values, k).tolist() == expected


def test_write_predictions(tmp_path):
    out = tmp_path / "out"
    paths = squad.write_predictions(out, {"a": "x"}, {"a": [{"text": "x", "probability": 1.0}]})
    assert sorted(p.name for p in out.iterdir()) == ["nbest_predictions.json", "predictions.json"]
    assert paths["predictions"].read_text() == json.dumps({"a": "x"}, indent=4) + "\n"
    squad.write_predictions(out, {"a": ""}, {"a": []}, {"a": 1.5})
    assert json.loads((out / "null_odds.json").read_text()) == {"a": 1.5}
    assert len(list(out.iterdir())) == 3  # no temporary files left


# ----------------------------------------------------------------------------- scores


def test_normalisation_exact_match_and_f1_by_hand():
    assert squad.normalize_answer("The  Cat, a Dog!") == "cat dog"
    assert squad.normalize_answer("An apple... theatre") == "apple theatre"
    assert squad.exact_match_score("the Cat!", "cat") == 1
    assert squad.exact_match_score("cats", "cat") == 0
    assert squad.f1_score("the cat sat", "cat sat down") == pytest.approx(0.8)  # P 1, R 2/3
    assert squad.f1_score("cat cat", "cat") == pytest.approx(2 / 3)  # P 1/2, R 1
    assert squad.f1_score("a", "the") == 0  # v1.1: nothing in common
    assert squad.f1_score_v2("a", "the") == 1  # v2.0: both empty agree
    assert squad.f1_score_v2("", "cat") == 0


def test_evaluate_v1_by_hand(caplog):
    data = {
        "version": "1.1",
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "c",
                        "qas": [
                            {
                                "id": "1",
                                "question": "q",
                                "answers": [{"text": "Denver Broncos"}, {"text": "The Broncos"}],
                            },
                            {
                                "id": "2",
                                "question": "q",
                                "answers": [
                                    {"text": "Santa Clara, California"},
                                    {"text": "Levi's Stadium"},
                                ],
                            },
                            {"id": "3", "question": "q", "answers": [{"text": "gold"}]},
                        ],
                    }
                ]
            }
        ],
    }
    predictions = {"1": "broncos", "2": "Levi's Stadium in Santa Clara"}
    scores = squad.evaluate_v1(data, predictions)
    # 1: EM and F1 1 against "The Broncos". 2: F1 max(2*(2/5)(2/3)/(2/5+2/3), 2*(2/5)/(7/5)).
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 4 / 7) / 3)
    assert "1 of 3 questions have no prediction" in caplog.text
    assert squad.evaluate_v1(data["data"], predictions) == scores  # the "data" list works too


V2_DATA = {
    "version": "v2.0",
    "data": [
        {
            "paragraphs": [
                {
                    "context": "c",
                    "qas": [
                        {
                            "id": "1",
                            "question": "q",
                            "answers": [{"text": "Normandy"}],
                            "is_impossible": False,
                        },
                        {
                            "id": "2",
                            "question": "q",
                            "answers": [{"text": "in the 10th century"}, {"text": "10th century"}],
                            "is_impossible": False,
                        },
                        {"id": "3", "question": "q", "answers": [], "is_impossible": True},
                        {"id": "4", "question": "q", "answers": [], "is_impossible": True},
                    ],
                }
            ]
        }
    ],
}
V2_PREDICTIONS = {"1": "normandy", "2": "10th and 11th centuries", "3": "", "4": "France"}


def test_evaluate_v2_by_hand():
    scores = squad.evaluate_v2(V2_DATA, V2_PREDICTIONS)
    f1_2 = 1 / 3  # [10th, and, 11th, centuries] vs [10th, century]: P 1/4, R 1/2
    assert scores == pytest.approx(
        {
            "exact": 50.0,
            "f1": 100 * (2 + f1_2) / 4,
            "total": 4,
            "HasAns_exact": 50.0,
            "HasAns_f1": 100 * (1 + f1_2) / 2,
            "HasAns_total": 2,
            "NoAns_exact": 50.0,
            "NoAns_f1": 50.0,
            "NoAns_total": 2,
        }
    )
    assert list(scores)[:3] == ["exact", "f1", "total"]
    na_probs = {"1": 0.1, "2": 0.2, "3": 0.9, "4": 0.3}
    scores = squad.evaluate_v2(V2_DATA, V2_PREDICTIONS, na_probs, na_prob_thresh=0.25)
    # Above 0.25, questions 3 and 4 are answered "": 4 becomes right.
    assert scores["exact"] == 75.0 and scores["NoAns_exact"] == 100.0
    # Threshold search from "all answered ''" (2 right), in na-prob order: +1 (q1) = 3 at 0.1;
    # EM: +0 (q2), -1 (q4), +0 (q3); F1: +1/3 (q2) = 3.33 at 0.2, then -1, +0.
    assert scores["best_exact"] == 75.0 and scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == pytest.approx(100 * (3 + f1_2) / 4)
    assert scores["best_f1_thresh"] == 0.2
    only_answerable = {
        "version": "v2.0",
        "data": [
            {
                "paragraphs": [
                    {"context": "c", "qas": V2_DATA["data"][0]["paragraphs"][0]["qas"][:2]}
                ]
            }
        ],
    }
    assert "NoAns_total" not in squad.evaluate_v2(only_answerable, V2_PREDICTIONS)
    with pytest.raises(squad.SquadError, match="na_probs lacks 1"):
        squad.evaluate_v2(V2_DATA, V2_PREDICTIONS, {"1": 0.1, "2": 0.2, "3": 0.9})


def test_evaluate_v2_gold_that_normalises_to_empty_becomes_the_empty_answer():
    data = {
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "c",
                        "qas": [
                            {
                                "id": "1",
                                "question": "q",
                                "answers": [{"text": "The"}, {"text": "a"}],
                            }
                        ],
                    }
                ]
            }
        ]
    }
    assert squad.evaluate_v2(data, {"1": ""})["exact"] == 100.0
    assert squad.evaluate_v2(data, {"1": "the"})["HasAns_f1"] == 100.0
    assert squad.evaluate_v2(data, {"1": "cat"})["f1"] == 0.0


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def dev_file(shared_data) -> Path:
    return shared_data / "squad" / "v1.1" / "dev-v1.1.json"


@pytest.fixture(scope="module")
def dev_json(dev_file):
    return json.loads(dev_file.read_text(encoding="utf-8"))


def test_full_dev_set_features(dev_file, uncased):
    started = time.perf_counter()
    examples = squad.read_squad_examples(dev_file, is_training=False)
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    features = squad.convert_examples_to_features(
        examples, uncased, max_seq_length=384, doc_stride=128, max_query_length=64
    )
    build_s = time.perf_counter() - started
    windows = collections.Counter(f.doc_span_index for f in features)
    print(
        f"\nSQuAD v1.1 dev: {len(examples)} questions read in {read_s:.2f} s, "
        f"{len(features)} features built in {build_s:.2f} s; windows {dict(windows)}"
    )
    assert len(examples) == DEV_QUESTIONS
    assert len(features) == DEV_FEATURES
    assert sorted({f.example_index for f in features}) == list(range(DEV_QUESTIONS))
    assert windows[0] == DEV_QUESTIONS
    assert all(len(f.input_ids) == 384 and sum(f.input_mask) == len(f.tokens) for f in features)
    unknown = sum(f.tokens.count("[UNK]") for f in features)
    assert unknown < 1e-3 * sum(len(f.tokens) for f in features)


def test_dev_scores_of_gold_and_first_word_predictions(dev_json):
    questions = [
        (qa, p["context"]) for a in dev_json["data"] for p in a["paragraphs"] for qa in p["qas"]
    ]
    gold = {qa["id"]: qa["answers"][0]["text"] for qa, _ in questions}
    assert squad.evaluate_v1(dev_json, gold) == {"exact_match": 100.0, "f1": 100.0}
    first_word = {qa["id"]: context.split()[0] for qa, context in questions}
    scores = squad.evaluate_v1(dev_json, first_word)
    print(f"\nfirst word of the context as the answer: {scores}")
    assert 0 < scores["exact_match"] < 2 and 0 < scores["f1"] < 10
    v2_scores = squad.evaluate_v2(dev_json, gold)
    assert v2_scores["exact"] == 100.0 and v2_scores["HasAns_total"] == DEV_QUESTIONS


def first_answer_training_file(dev_json, tmp_path, num_articles=4) -> Path:
    data = json.loads(json.dumps(dev_json["data"][:num_articles]))
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa["answers"] = qa["answers"][:1]
    return write_json(tmp_path / "train.json", {"version": "1.1", "data": data})


@pytest.mark.parametrize("settings", [(384, 128, 64), (64, 16, 16)])
def test_features_equal_a_plain_rederivation(dev_json, tmp_path, uncased, settings):
    path = first_answer_training_file(dev_json, tmp_path)
    for is_training in (True, False):
        examples = squad.read_squad_examples(path, is_training)
        assert examples == plain_read_examples(path, is_training)
        examples = examples[::7]  # keep the test fast; every paragraph still appears
        length, stride, query = settings
        got = squad.convert_examples_to_features(
            examples,
            uncased,
            max_seq_length=length,
            doc_stride=stride,
            max_query_length=query,
            is_training=is_training,
        )
        assert got == plain_features(examples, uncased, *settings, is_training)


@pytest.mark.parametrize("version_2", [False, True])
def test_answers_equal_a_plain_rederivation(dev_json, tmp_path, uncased, version_2):
    path = first_answer_training_file(dev_json, tmp_path, num_articles=2)
    examples = squad.read_squad_examples(path, False)[::3]
    features = squad.convert_examples_to_features(
        examples, uncased, max_seq_length=96, doc_stride=32, max_query_length=32
    )
    rng = np.random.default_rng(3)
    results = []
    for f in features:
        start, end = (
            (rng.normal(size=96) * 3).astype(np.float32),
            (rng.normal(size=96) * 3).astype(np.float32),
        )
        results.append(squad.RawResult(f.unique_id, start, end.tolist()))
    kwargs = {
        "n_best_size": 20,
        "max_answer_length": 30,
        "do_lower_case": True,
        "version_2_with_negative": version_2,
        "null_score_diff_threshold": 0.5,
    }
    got = squad.get_answers(examples, features, results, squad.SquadAnswerOptions(**kwargs))
    expected = plain_get_answers(examples, features, results, **kwargs)
    assert got[0] == expected[0] and got[1] == expected[1]
    assert len(got[0]) == len(examples)
    if version_2:
        assert 0 < sum(text == "" for text in got[0].values()) < len(examples)


def test_bundled_samples_are_derived_from_the_dev_set(dev_json):
    def cut(article, first_answer_only):
        paragraphs = []
        for p in article["paragraphs"][:10]:
            qas = (
                [dict(q, answers=q["answers"][:1]) for q in p["qas"]]
                if first_answer_only
                else p["qas"]
            )
            paragraphs.append(dict(p, qas=qas))
        return dict(article, paragraphs=paragraphs)

    dev = {"data": [cut(a, False) for a in dev_json["data"][:3]], "version": "1.1"}
    train = {"data": [cut(a, True) for a in dev_json["data"][3:9]], "version": "1.1"}
    assert DEV_SAMPLE.read_text(encoding="utf-8") == json.dumps(dev)
    assert TRAIN_SAMPLE.read_text(encoding="utf-8") == json.dumps(train)
    v2 = json.loads(V2_SAMPLE.read_text(encoding="utf-8"))
    contexts = {a["title"]: a["paragraphs"][0]["context"] for a in dev_json["data"][:3]}
    assert {a["title"]: a["paragraphs"][0]["context"] for a in v2["data"]} == contexts


def test_bundled_samples_read():
    assert len(squad.read_squad_examples(DEV_SAMPLE, False)) == 290
    assert len(squad.read_squad_examples(TRAIN_SAMPLE, True)) == 321
    v2 = squad.read_squad_examples(V2_SAMPLE, False, version_2_with_negative=True)
    assert len(v2) == 19
    assert squad.detect_version(json.loads(V2_SAMPLE.read_text(encoding="utf-8"))) == "2.0"
    assert sum(p.stat().st_size for p in SAMPLE_DIR.glob("*.json")) < 300_000


# ----------------------------------------------------------------------------- command line


def run_cli(*args, cwd=REPO_ROOT):
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "evaluate_squad.py"), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def gold_predictions(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        qa["id"]: (qa["answers"][0]["text"] if qa["answers"] else "")
        for a in data["data"]
        for p in a["paragraphs"]
        for qa in p["qas"]
    }


def test_cli_v1_prints_the_official_json(tmp_path):
    predictions = gold_predictions(DEV_SAMPLE)
    predictions.pop(next(iter(predictions)))
    pred_file = write_json(tmp_path / "predictions.json", predictions)
    run = run_cli(DEV_SAMPLE, pred_file)
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip()
    scores = json.loads(line)
    assert list(scores) == ["exact_match", "f1"] and "\n" not in line
    assert scores["exact_match"] == pytest.approx(100 * 289 / 290)
    assert "1 of 290 questions have no prediction" in run.stderr


def test_cli_v2_options(tmp_path):
    predictions = gold_predictions(V2_SAMPLE)
    pred_file = write_json(tmp_path / "p.json", predictions)
    na_file = write_json(tmp_path / "na.json", dict.fromkeys(predictions, 0.0))
    run = run_cli(V2_SAMPLE, pred_file, "--na-prob-file", na_file, "--na-prob-thresh", "0.5")
    assert run.returncode == 0, run.stderr
    scores = json.loads(run.stdout)
    assert list(scores) == [
        "exact",
        "f1",
        "total",
        "HasAns_exact",
        "HasAns_f1",
        "HasAns_total",
        "NoAns_exact",
        "NoAns_f1",
        "NoAns_total",
        "best_exact",
        "best_exact_thresh",
        "best_f1",
        "best_f1_thresh",
    ]
    assert (scores["exact"], scores["HasAns_total"], scores["NoAns_total"]) == (100.0, 12, 7)
    out_file = tmp_path / "eval.json"
    run = run_cli(V2_SAMPLE, pred_file, "-o", out_file)
    assert run.returncode == 0 and run.stdout == ""
    assert json.loads(out_file.read_text())["total"] == 19


@pytest.mark.parametrize(
    "case", ["missing data", "missing predictions", "predictions not json", "not squad", "list"]
)
def test_cli_bad_files_exit_1_with_one_line(tmp_path, case):
    good_pred = write_json(tmp_path / "p.json", {"x": "y"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    data, pred = {
        "missing data": (tmp_path / "nope.json", good_pred),
        "missing predictions": (DEV_SAMPLE, tmp_path / "nope.json"),
        "predictions not json": (DEV_SAMPLE, bad),
        "not squad": (write_json(tmp_path / "d.json", {"data": [{"title": "x"}]}), good_pred),
        "list": (DEV_SAMPLE, write_json(tmp_path / "l.json", ["a"])),
    }[case]
    run = run_cli(data, pred)
    assert run.returncode == (2 if case.startswith("missing") else 1) and run.stdout == ""
    assert len(run.stderr.strip().splitlines()) == 1 and "evaluate_squad.py: error: " in run.stderr


# ----------------------------------------------------------------------------- feature cache


def test_feature_cache_round_trip(tmp_path, uncased):
    for is_training in (True, False):
        examples = squad.read_squad_examples(TRAIN_SAMPLE, is_training)
        features = squad.convert_examples_to_features(
            examples,
            uncased,
            max_seq_length=128,
            doc_stride=64,
            max_query_length=32,
            is_training=is_training,
        )
        path = squad.cache_path(
            TRAIN_SAMPLE,
            cache_dir=tmp_path,
            vocab_file=UNCASED_VOCAB,
            do_lower_case=True,
            max_seq_length=128,
            doc_stride=64,
            max_query_length=32,
            is_training=is_training,
        )
        assert squad.load_feature_cache(path) is None
        squad.save_feature_cache(path, features)
        assert squad.load_feature_cache(path) == features
    assert len(list(tmp_path.iterdir())) == 2  # no temporary files left
    empty = tmp_path / "empty.npz"
    squad.save_feature_cache(empty, [])
    assert squad.load_feature_cache(empty) == []


def test_cache_path_depends_on_vocab_case_and_settings(tmp_path):
    def path(**changes):
        settings = {
            "data_file": DEV_SAMPLE,
            "cache_dir": tmp_path,
            "vocab_file": UNCASED_VOCAB,
            "do_lower_case": True,
            "max_seq_length": 384,
            "doc_stride": 128,
            "max_query_length": 64,
            "is_training": True,
        }
        return squad.cache_path(**{**settings, **changes})

    base = path()
    assert base.parent == tmp_path and base.name.startswith("dev-v1.1.json_uncased_384")
    assert base == path()
    variants = [
        path(vocab_file=CASED_VOCAB),
        path(do_lower_case=False),
        path(max_seq_length=256),
        path(doc_stride=64),
        path(max_query_length=32),
        path(is_training=False),
        path(version_2_with_negative=True),
        path(data_file=TRAIN_SAMPLE),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # Same vocabulary bytes under another name: the same cache.
    copy = tmp_path / "vocab_copy.txt"
    copy.write_bytes(UNCASED_VOCAB.read_bytes())
    assert path(vocab_file=copy) == base
    assert path(cache_dir=None).parent == DEV_SAMPLE.parent


def test_cache_path_changes_with_the_feature_code(tmp_path, monkeypatch, request):
    """squad.py or tokenization.py edited (here: each module read from a copy, then the copy
    changed): another cache path, so features built by older code are never read."""
    request.addfinalizer(squad.feature_code_digest.cache_clear)

    def path():
        squad.feature_code_digest.cache_clear()
        return squad.cache_path(
            DEV_SAMPLE,
            cache_dir=tmp_path,
            vocab_file=UNCASED_VOCAB,
            do_lower_case=True,
            max_seq_length=384,
            doc_stride=128,
            max_query_length=64,
            is_training=True,
        )

    base = path()
    for module in (squad, tokenization):
        source = Path(module.__file__)
        copy = tmp_path / module.__name__ / source.name
        copy.parent.mkdir()
        copy.write_bytes(source.read_bytes())
        monkeypatch.setattr(module, "__file__", str(copy))
        assert path() == base  # the same code elsewhere: the same cache
        copy.write_text(source.read_text() + "\nCHANGED = True\n")
        assert path() != base, module.__name__
        monkeypatch.undo()
    assert path() == base


def test_corrupt_cache_is_reported_and_ignored(tmp_path, caplog):
    path = tmp_path / "features.npz"
    path.write_bytes(b"not a zip file")
    assert squad.load_feature_cache(path) is None
    assert "ignoring unreadable SQuAD feature cache" in caplog.text
    np.savez(path, meta=np.array(json.dumps({"format": 0, "count": 0})))
    assert squad.load_feature_cache(path) is None
    np.savez(path, meta=np.array([object()], dtype=object))  # would need pickle
    assert squad.load_feature_cache(path) is None


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "SQuAD file not found"),
        ("{", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ([1, 2], 'no "data" list'),
        ({"data": [{"title": "x"}]}, r'data\[0\] has no "paragraphs"'),
        ({"data": [{"paragraphs": [{"qas": []}]}]}, r'paragraphs\[0\] has no "context"'),
        ({"data": [{"paragraphs": [{"context": "c"}]}]}, 'has no "qas"'),
        ({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]}, 'no "id"'),
    ],
)
def test_unusable_files_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "input.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        write_json(path, content)
    with pytest.raises(squad.SquadError, match=message) as error:
        squad.read_squad_examples(path, is_training=False)
    assert str(path) in str(error.value)


def test_v11_training_question_needs_exactly_one_answer(tmp_path):
    data = dataset([("Paris is in France.", [("q-1", "Where?", "France", False)])])
    qa = data["data"][0]["paragraphs"][0]["qas"][0]
    for answers in ([], [qa["answers"][0]] * 2):
        qa["answers"] = answers
        path = write_json(tmp_path / "train.json", data)
        with pytest.raises(squad.SquadError, match=f"{len(answers)} answers") as error:
            squad.read_squad_examples(path, is_training=True)
        assert str(path) in str(error.value) and "'q-1'" in str(error.value)
    assert len(squad.read_squad_examples(path, is_training=False)) == 1
    examples = squad.read_squad_examples(path, False)
    with pytest.raises(squad.SquadError, match="no answer position"):
        squad.convert_examples_to_features(examples, WordTokenizer(), is_training=True)


def two_questions_with_one_id(tmp_path, version="1.1") -> Path:
    """Two paragraphs whose questions share the id "q" (a merged or hand-edited file)."""
    data = dataset(
        [
            ("Paris is in France.", [("q", "Where is Paris?", "France", False)]),
            ("Rome is in Italy.", [("q", "Where is Rome?", "Italy", False)]),
        ],
        version,
    )
    return write_json(tmp_path / "dup.json", data)


@pytest.mark.parametrize("version", ["1.1", "v2.0"])
def test_a_repeated_question_id_is_refused_at_reading(tmp_path, version):
    path = two_questions_with_one_id(tmp_path, version)
    expected = (
        rf"{path}: question id 'q' appears twice \(data\[0\]\.paragraphs\[0\]\.qas\[0\] and "
        rf"data\[0\]\.paragraphs\[1\]\.qas\[0\]\)"
    )
    for is_training in (True, False):
        with pytest.raises(squad.SquadError, match=expected):
            squad.read_squad_examples(path, is_training, version_2_with_negative=version != "1.1")
    data = json.loads(path.read_text())
    scorer = squad.evaluate_v1 if version == "1.1" else squad.evaluate_v2
    with pytest.raises(squad.SquadError, match="question id 'q' appears twice"):
        scorer(data, {"q": "France"})  # parsed JSON given directly is checked too
    run = run_cli(path, write_json(tmp_path / "p.json", {"q": "France"}))
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"evaluate_squad.py: error: {path}: question id 'q' appears twice "
        "(data[0].paragraphs[0].qas[0] and data[0].paragraphs[1].qas[0]); predictions are keyed "
        "by id, so every question needs its own"
    ]


def test_a_question_id_must_be_a_string(tmp_path):
    data = dataset([("Paris is in France.", [(7, "Where is Paris?", "France", False)])])
    path = write_json(tmp_path / "int_id.json", data)
    with pytest.raises(squad.SquadError, match=r'qas\[0\] has an "id" that is not a string: 7'):
        squad.read_squad_examples(path, is_training=False)
    with pytest.raises(squad.SquadError, match="no string id: 7"):
        squad.evaluate_v1(data, {"7": "France"})


@pytest.mark.parametrize(("version", "flag"), [("v2.0", False), ("1.1", True)])
def test_a_version_mismatch_is_warned_at_training_as_at_prediction(tmp_path, caplog, version, flag):
    data = dataset([("Paris is in France.", [("a", "Where is Paris?", "France", False)])], version)
    path = write_json(tmp_path / "train.json", data)
    expected = "v2.0: pass" if version == "v2.0" else "v1.1 but --version_2_with_negative is set"
    for is_training in (True, False):
        caplog.clear()
        with caplog.at_level("WARNING", logger="squad"):
            squad.read_squad_examples(path, is_training, version_2_with_negative=flag)
        assert f"{path} looks like SQuAD {expected}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="squad"):
        squad.read_squad_examples(path, True, version_2_with_negative=version == "v2.0")
    assert caplog.text == ""


def test_features_need_cls_and_sep_in_the_vocabulary(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[SEP]\nparis\n", encoding="utf-8")
    examples = squad.read_squad_examples(
        write_json(
            tmp_path / "d.json",
            dataset([("Paris is in France.", [("a", "Where is Paris?", "France", False)])]),
        ),
        is_training=False,
    )
    with pytest.raises(VocabError, match=rf"{vocab} has no \[CLS\] token, needed by SQuAD"):
        squad.convert_examples_to_features(
            examples, BertTokenizer(vocab), max_seq_length=64, doc_stride=32, max_query_length=16
        )


def test_the_share_of_unknown_tokens_shows_a_casing_mismatch(uncased, caplog):
    examples = squad.read_squad_examples(DEV_SAMPLE, is_training=False)[:40]
    right = squad.convert_examples_to_features(
        examples, uncased, max_seq_length=256, doc_stride=128, max_query_length=64
    )
    with caplog.at_level("WARNING", logger="tokenization"):
        unlowered = BertTokenizer(UNCASED_VOCAB, do_lower_case=False)
    wrong = squad.convert_examples_to_features(
        examples, unlowered, max_seq_length=256, doc_stride=128, max_query_length=64
    )
    unknown, total = squad.unknown_token_share(right)
    assert unknown == 0 and total == sum(len(f.tokens) - 3 for f in right)
    unknown, total = squad.unknown_token_share(wrong)
    assert unknown / total > 0.1  # capitalised words are [UNK] in an uncased vocabulary
    sampled = squad.unknown_token_share(wrong, sample=5)[1]
    assert sampled < total / 5


# ----------------------------------------------------------------------------- re-derivations
# NVIDIA's algorithms written out plainly, without the shortcuts squad.py takes.


def plain_read_examples(path, is_training):
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    examples = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            words, char_to_word, after_space = [], [], True
            for char in paragraph["context"]:
                if char in " \t\r\n\u202f":
                    after_space = True
                else:
                    if after_space:
                        words.append(char)
                    else:
                        words[-1] += char
                    after_space = False
                char_to_word.append(len(words) - 1)
            for qa in paragraph["qas"]:
                example = squad.SquadExample(qa["id"], qa["question"], words)
                if is_training:
                    (answer,) = qa["answers"]
                    offset, text = answer["answer_start"], answer["text"]
                    start, end = char_to_word[offset], char_to_word[offset + len(text) - 1]
                    if " ".join(words[start : end + 1]).find(" ".join(text.strip().split())) == -1:
                        continue
                    example.orig_answer_text, example.start_position, example.end_position = (
                        text,
                        start,
                        end,
                    )
                examples.append(example)
    return examples


def plain_improve_answer_span(doc_tokens, start, end, tokenizer, answer_text):
    wanted = " ".join(tokenizer.tokenize(answer_text))
    for new_start in range(start, end + 1):
        for new_end in range(end, new_start - 1, -1):
            if " ".join(doc_tokens[new_start : new_end + 1]) == wanted:
                return new_start, new_end
    return start, end


def plain_is_max_context(spans, span_index, position):
    best_score, best_index = None, None
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if start <= position <= end:
            score = min(position - start, end - position) + 0.01 * length
            if best_score is None or score > best_score:
                best_score, best_index = score, index
    return best_index == span_index


def plain_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
    features = []
    for example_index, example in enumerate(examples):
        query = tokenizer.tokenize(example.question_text)[:max_query_length]
        tok_to_orig, orig_to_tok, doc = [], [], []
        for i, word in enumerate(example.doc_tokens):
            orig_to_tok.append(len(doc))
            for piece in tokenizer.tokenize(word):
                tok_to_orig.append(i)
                doc.append(piece)
        if is_training:
            tok_start = orig_to_tok[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end = orig_to_tok[example.end_position + 1] - 1
            else:
                tok_end = len(doc) - 1
            tok_start, tok_end = plain_improve_answer_span(
                doc, tok_start, tok_end, tokenizer, example.orig_answer_text
            )
        room = max_seq_length - len(query) - 3
        spans, start = [], 0
        while start < len(doc):
            length = min(len(doc) - start, room)
            spans.append((start, length))
            if start + length == len(doc):
                break
            start += min(length, doc_stride)
        for span_index, (start, length) in enumerate(spans):
            tokens = ["[CLS]", *query, "[SEP]"]
            segments = [0] * len(tokens)
            to_orig, max_context = {}, {}
            for i in range(start, start + length):
                to_orig[len(tokens)] = tok_to_orig[i]
                max_context[len(tokens)] = plain_is_max_context(spans, span_index, i)
                tokens.append(doc[i])
                segments.append(1)
            tokens.append("[SEP]")
            segments.append(1)
            ids = tokenizer.convert_tokens_to_ids(tokens)
            mask = [1] * len(ids)
            while len(ids) < max_seq_length:
                ids.append(0)
                mask.append(0)
                segments.append(0)
            start_position = end_position = None
            if is_training:
                start_position = end_position = 0
                if tok_start >= start and tok_end <= start + length - 1:
                    start_position = tok_start - start + len(query) + 2
                    end_position = tok_end - start + len(query) + 2
            features.append(
                squad.SquadFeature(
                    1_000_000_000 + len(features),
                    example_index,
                    span_index,
                    tokens,
                    to_orig,
                    max_context,
                    ids,
                    mask,
                    segments,
                    start_position,
                    end_position,
                    False,
                )
            )
    return features


def plain_final_text(pred_text, orig_text, do_lower_case):
    def without_spaces(text):
        kept, to_original = [], {}
        for i, char in enumerate(text):
            if char != " ":
                to_original[len(kept)] = i
                kept.append(char)
        return "".join(kept), to_original

    tok_text = " ".join(BasicTokenizer(do_lower_case).tokenize(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_map = without_spaces(orig_text)
    tok_ns, tok_map = without_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_back = {v: k for k, v in tok_map.items()}
    if start not in tok_back or end not in tok_back:
        return orig_text
    return orig_text[orig_map[tok_back[start]] : orig_map[tok_back[end]] + 1]


def plain_get_answers(
    examples,
    features,
    results,
    n_best_size,
    max_answer_length,
    do_lower_case,
    version_2_with_negative,
    null_score_diff_threshold,
):
    """NVIDIA's get_answers with the null score looked up per question (not the last one's)."""
    by_id = {r.unique_id: r for r in results}
    candidates, nulls = collections.defaultdict(list), {}
    for f in sorted(features, key=lambda f: f.unique_id):
        example, r = examples[f.example_index], by_id[f.unique_id]
        start_logits, end_logits = (
            [float(x) for x in r.start_logits],
            [float(x) for x in r.end_logits],
        )
        best_starts = [
            i for i, _ in sorted(enumerate(start_logits), key=lambda p: p[1], reverse=True)
        ]
        best_ends = [i for i, _ in sorted(enumerate(end_logits), key=lambda p: p[1], reverse=True)]
        prelim = []
        for s in best_starts[:n_best_size]:
            for e in best_ends[:n_best_size]:
                if s >= len(f.tokens) or e >= len(f.tokens):
                    continue
                if s not in f.token_to_orig_map or e not in f.token_to_orig_map:
                    continue
                if not f.token_is_max_context.get(s, False) or e < s:
                    continue
                if e - s + 1 > max_answer_length:
                    continue
                prelim.append((s, e, start_logits[s], end_logits[e]))
        prelim.sort(key=lambda p: p[2] + p[3], reverse=True)
        if version_2_with_negative:
            score = start_logits[0] + end_logits[0]
            if example.qas_id not in nulls or score < nulls[example.qas_id][0]:
                nulls[example.qas_id] = (score, start_logits[0], end_logits[0])
        current, seen = [], []
        for s, e, start_logit, end_logit in prelim:
            if len(current) == n_best_size:
                break
            tok_text = " ".join(f.tokens[s : e + 1]).replace(" ##", "").replace("##", "")
            tok_text = " ".join(tok_text.strip().split())
            orig = " ".join(example.doc_tokens[f.token_to_orig_map[s] : f.token_to_orig_map[e] + 1])
            text = plain_final_text(tok_text, orig, do_lower_case)
            if text in seen:
                continue
            seen.append(text)
            current.append((text, start_logit, end_logit))
        candidates[example.qas_id] += current
    if version_2_with_negative:
        for qas_id in candidates:
            candidates[qas_id].append(("", nulls[qas_id][1], nulls[qas_id][2]))
    answers, nbest = {}, {}
    for qas_id, found in candidates.items():
        top = sorted(found, key=lambda c: c[1] + c[2], reverse=True)[:n_best_size]
        top = top or [("empty", 0.0, 0.0)]
        scores = [c[1] + c[2] for c in top]
        exps = [math.exp(s - max(scores)) for s in scores]
        nbest[qas_id] = [
            {"text": c[0], "probability": x / sum(exps), "start_logit": c[1], "end_logit": c[2]}
            for c, x in zip(top, exps, strict=True)
        ]
        best_non_null = next((c for c in top if c[0]), None)
        if not version_2_with_negative:
            answers[qas_id] = top[0][0]
        elif best_non_null is None:
            answers[qas_id] = ""
        else:
            diff = nulls[qas_id][0] - best_non_null[1] - best_non_null[2]
            answers[qas_id] = "" if diff > null_score_diff_threshold else best_non_null[0]
    return answers, nbest, None


def test_mismatched_answers_are_counted_and_an_empty_dataset_refused(tmp_path, caplog):
    data = dataset(
        [
            (
                "Paris is in France. Rome is in Italy.",
                [("q-1", "Where?", "France", False), ("q-2", "Which?", "Italy", False)],
            )
        ]
    )
    data["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 3  # wrong offset
    write_json(tmp_path / "train.json", data)
    with caplog.at_level("WARNING"):
        examples = squad.read_squad_examples(tmp_path / "train.json", is_training=True)
    assert [e.qas_id for e in examples] == ["q-1"]
    assert "1 of 2 training questions skipped" in caplog.text
    write_json(tmp_path / "empty.json", {"version": "1.1", "data": []})
    with pytest.raises(squad.SquadError, match="no usable questions"):
        squad.read_squad_examples(tmp_path / "empty.json", is_training=False)


def test_questions_without_a_model_input_are_refused_or_warned(tmp_path, caplog):
    """A context of only white space gives no feature: a whole file of them is an error naming
    the file (not empty predictions and exit 0), a few of them a warning naming one."""

    def file_of(contexts: list[str]) -> Path:
        paragraphs = [
            {"context": c, "qas": [{"id": f"q{i}", "question": "what?", "answers": []}]}
            for i, c in enumerate(contexts)
        ]
        return write_json(
            tmp_path / f"{len(contexts)}.json", {"data": [{"paragraphs": paragraphs}]}
        )

    def check(path: Path) -> None:
        examples = squad.read_squad_examples(path, False)
        features = squad.convert_examples_to_features(
            examples, WordTokenizer(), max_seq_length=64, doc_stride=16, max_query_length=8
        )
        squad.check_features(path, examples, features, is_training=False)

    empty = file_of([" \t\n", "\u3000"])
    with pytest.raises(squad.SquadError, match=r"2\.json: none of its 2 questions gives a model"):
        check(empty)
    with caplog.at_level(logging.WARNING):
        check(file_of(["a real context", " ", "another one"]))
    assert any("1 of 3 questions have an empty context (e.g. id q1)" in m for m in caplog.messages)


def test_nothing_to_train_on_predict_or_score_is_refused_naming_the_file(tmp_path):
    """Results from nothing: contexts of control characters (which the real tokenizer drops:
    no window), training answers that are all lost, predictions for another dataset's ids, and
    v1.1 scoring of a question without gold answers each stop with the file named."""
    tokenizer = BertTokenizer(UNCASED_VOCAB, do_lower_case=True)

    def read(paragraphs, is_training=False):
        path = write_json(tmp_path / f"d{len(list(tmp_path.iterdir()))}.json", dataset(paragraphs))
        return path, squad.read_squad_examples(path, is_training)

    path, examples = read([("\x01 \x02", [("a", "q?", None, False), ("b", "q?", None, False)])])
    with pytest.raises(squad.SquadError, match=rf"{path}: no usable questions \(none of the co"):
        squad.check_model_input(path, examples, tokenizer, is_training=False)
    path, examples = read([("Real words.", [("a", "\x01", None, 0), ("b", " \x7f", None, 0)])])
    with pytest.raises(squad.SquadError, match=r"none of its 2 question texts gives a WordPiece"):
        squad.check_model_input(path, examples, tokenizer, is_training=False)
    # A readable context without questions does not count; one with a question is enough.
    path, examples = read([("\x7f", [("a", "q?", None, False)]), ("real words", [])])
    with pytest.raises(squad.SquadError, match="nothing to train on"):
        squad.check_model_input(path, examples, tokenizer, is_training=True)
    path, examples = read([("\x7f", [("a", "q?", None, False)]), ("ok", [("b", "q", None, 0)])])
    squad.check_model_input(path, examples, tokenizer, is_training=False)

    lost = dataset([("Harry likes pizza.", [("a", "q?", "pasta", False)])])
    path = write_json(tmp_path / "lost.json", lost)
    with pytest.raises(squad.SquadError, match=r"lost\.json: no usable questions \(the answer"):
        squad.read_squad_examples(path, is_training=True)

    scored = dataset([("Harry likes pizza.", [("a", "q?", "pizza", False)])])
    with pytest.raises(squad.SquadError, match=r"p\.json: no usable predictions \(none of its 2"):
        squad.check_predictions_match(scored, {"x": "pizza", "y": ""}, "d.json", "p.json")
    squad.check_predictions_match(scored, {"x": "pizza", "a": ""}, "d.json", "p.json")
    unanswered = dataset([("Harry likes pizza.", [("a", "q?", None, False)])])
    with pytest.raises(squad.SquadError, match=r"d\.json: question 'a' has no gold answers"):
        squad.evaluate_v1(unanswered, {"a": "pizza"}, "d.json")
    with pytest.raises(squad.SquadError, match=r"d\.json: no usable questions"):
        squad.evaluate_v2({"data": []}, {"a": "pizza"}, source="d.json")
