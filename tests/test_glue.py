"""Tests for glue.py: readers on GLUE-layout fixtures and real files, features, metrics, output."""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import glue
from glue import GlueError, InputExample, InputFeatures
from tests.support import REPO_ROOT, UNCASED_VOCAB
from tokenization import BertTokenizer, VocabError

SAMPLE_MRPC = REPO_ROOT / "data" / "sample" / "glue" / "MRPC"
BOM = "\ufeff"


def tsv(*rows: tuple[str, ...] | list[str]) -> str:
    return "".join("\t".join(row) + "\n" for row in rows)


def mnli_row(index: str, s1: str, s2: str, *labels: str) -> list[str]:
    parses = ["( bp1 )", "( bp2 )", "(ROOT 1)", "(ROOT 2)"]
    return [index, "31193", f"{index}n", "fiction", *parses, s1, s2, *labels]


MNLI_HEAD = [
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
]
STSB_HEAD = [
    "index",
    "genre",
    "filename",
    "year",
    "old_index",
    "source1",
    "source2",
    "sentence1",
    "sentence2",
]


def stsb_row(index: str, s1: str, s2: str, *score: str) -> list[str]:
    return [index, "main-captions", "MSRvid", "2012test", "0001", "none", "none", s1, s2, *score]


def nli_files(first: str, second: str, labels: tuple[str, str]) -> dict[str, str]:
    return {
        "train.tsv": tsv(
            ["index", first, second, "label"],
            ["0", "Who wrote it?", 'It was written by "Ann.', labels[0]],
            ["1", "Where?", "Paris.", labels[1]],
        ),
        "dev.tsv": tsv(["index", first, second, "label"], ["7", "A dev one.", "B dev.", labels[1]]),
        "test.tsv": tsv(["index", first, second], ["0", "T a.", "T b."], ["1", "U a.", "U b."]),
    }


# Per task: GLUE-layout files (folder name -> file contents) and the examples each split gives.
FIXTURES: dict[str, dict] = {
    "cola": {
        "folder": "CoLA",
        "files": {
            "train.tsv": tsv(
                ["gj04", "1", "", "Our friends won't buy this analysis."],
                ["gj04", "0", "*", 'He said "hi.'],
            ),
            "dev.tsv": tsv(["clc95", "1", "", "The sailors rode the breeze."]),
            "test.tsv": tsv(["index", "sentence"], ["0", "Bill whistled."], ["1", "The car."]),
        },
        "train": [
            InputExample("train-0", "Our friends won't buy this analysis.", None, "1"),
            InputExample("train-1", 'He said "hi.', None, "0"),
        ],
        "dev": [InputExample("dev-0", "The sailors rode the breeze.", None, "1")],
        "test": [InputExample("0", "Bill whistled."), InputExample("1", "The car.")],
    },
    "sst-2": {
        "folder": "SST-2",
        "files": {
            "train.tsv": tsv(
                ["sentence", "label"],
                ["hide new secretions from the parental units ", "0"],
                ['" a stray quote ', "1"],
            ),
            "dev.tsv": tsv(["sentence", "label"], ["it 's a charming journey . ", "1"]),
            "test.tsv": tsv(["index", "sentence"], ["0", "uneasy mishmash . "]),
        },
        "train": [
            InputExample("train-1", "hide new secretions from the parental units ", None, "0"),
            InputExample("train-2", '" a stray quote ', None, "1"),
        ],
        "dev": [InputExample("dev-1", "it 's a charming journey . ", None, "1")],
        "test": [InputExample("0", "uneasy mishmash . ")],
    },
    "mrpc": {
        "folder": "MRPC",
        "files": {
            "train.tsv": BOM
            + tsv(
                ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                ["1", "702876", "702977", "Amrozi accused his brother.", "Referring to him."],
                ["0", "2108705", "2108831", "Yucaipa owned Dominick 's.", "Yucaipa bought it."],
            ),
            "dev.tsv": BOM
            + tsv(
                ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                ["1", "1355540", "1355592", "He is said to have.", "He was said to have."],
            ),
            "test.tsv": tsv(
                ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                ["0", "1089874", "1089925", "PCCW 's chief.", "Current Chief."],
            ),
        },
        "train": [
            InputExample("train-1", "Amrozi accused his brother.", "Referring to him.", "1"),
            InputExample("train-2", "Yucaipa owned Dominick 's.", "Yucaipa bought it.", "0"),
        ],
        "dev": [InputExample("dev-1", "He is said to have.", "He was said to have.", "1")],
        "test": [InputExample("0", "PCCW 's chief.", "Current Chief.")],
    },
    "sts-b": {
        "folder": "STS-B",
        "files": {
            "train.tsv": tsv(
                [*STSB_HEAD, "score"],
                stsb_row("0", "A plane is taking off.", "An air plane is taking off.", "5.000"),
                stsb_row("1", "A man plays.", "A man sings.", "0.600"),
            ),
            "dev.tsv": tsv([*STSB_HEAD, "score"], stsb_row("3", "A.", "B.", "2.5")),
            "test.tsv": tsv(STSB_HEAD, stsb_row("0", "Girl.", "Boy."), stsb_row("1", "C.", "D.")),
        },
        "train": [
            InputExample("train-0", "A plane is taking off.", "An air plane is taking off.", 5.0),
            InputExample("train-1", "A man plays.", "A man sings.", 0.6),
        ],
        "dev": [InputExample("dev-3", "A.", "B.", 2.5)],
        "test": [InputExample("0", "Girl.", "Boy."), InputExample("1", "C.", "D.")],
    },
    "qqp": {
        "folder": "QQP",
        "files": {
            "train.tsv": tsv(
                ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                ["133273", "213221", "213222", "How is the life?", "What is life like?", "0"],
                ["402555", "536040", "536041", "How do I control?", "How to control?", "1"],
            ),
            "dev.tsv": tsv(
                ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                ["201359", "303345", "303346", "Why are people?", "Why do people?", "1"],
            ),
            "test.tsv": tsv(["id", "question1", "question2"], ["0", "Would you?", "Could you?"]),
        },
        "train": [
            InputExample("train-133273", "How is the life?", "What is life like?", "0"),
            InputExample("train-402555", "How do I control?", "How to control?", "1"),
        ],
        "dev": [InputExample("dev-201359", "Why are people?", "Why do people?", "1")],
        "test": [InputExample("0", "Would you?", "Could you?")],
    },
    "mnli": {
        "folder": "MNLI",
        "files": {
            "train.tsv": tsv(
                [*MNLI_HEAD, "label1", "gold_label"],
                mnli_row(
                    "0", "Conceptually cream.", "Product and geography.", "neutral", "neutral"
                ),
                mnli_row("1", "You know.", "You lose.", "entailment", "entailment"),
            ),
            "dev_matched.tsv": tsv(
                [*MNLI_HEAD, "label1", "label2", "label3", "label4", "label5", "gold_label"],
                mnli_row("0", "The new rights.", "Everyone likes.", *["neutral"] * 5, "neutral"),
                mnli_row("1", "This site.", "The site.", *["contradiction"] * 6),
            ),
            "dev_mismatched.tsv": tsv(
                [*MNLI_HEAD, "label1", "label2", "label3", "label4", "label5", "gold_label"],
                mnli_row("9", "Your gift.", "Hundreds.", *["entailment"] * 6),
            ),
            "test_matched.tsv": tsv(MNLI_HEAD, mnli_row("0", "Hierbas.", "Hierbas is.")),
            "test_mismatched.tsv": tsv(
                MNLI_HEAD, mnli_row("0", "What.", "That."), mnli_row("1", "X.", "Y.")
            ),
        },
        "train": [
            InputExample("train-0", "Conceptually cream.", "Product and geography.", "neutral"),
            InputExample("train-1", "You know.", "You lose.", "entailment"),
        ],
        "dev": [
            InputExample("dev_matched-0", "The new rights.", "Everyone likes.", "neutral"),
            InputExample("dev_matched-1", "This site.", "The site.", "contradiction"),
        ],
        "test": [InputExample("0", "Hierbas.", "Hierbas is.")],
    },
    "qnli": {
        "folder": "QNLI",
        "files": nli_files("question", "sentence", ("entailment", "not_entailment")),
        "train": [
            InputExample("train-0", "Who wrote it?", 'It was written by "Ann.', "entailment"),
            InputExample("train-1", "Where?", "Paris.", "not_entailment"),
        ],
        "dev": [InputExample("dev-7", "A dev one.", "B dev.", "not_entailment")],
        "test": [InputExample("0", "T a.", "T b."), InputExample("1", "U a.", "U b.")],
    },
    "rte": {
        "folder": "RTE",
        "files": nli_files("sentence1", "sentence2", ("not_entailment", "entailment")),
        "train": [
            InputExample("train-0", "Who wrote it?", 'It was written by "Ann.', "not_entailment"),
            InputExample("train-1", "Where?", "Paris.", "entailment"),
        ],
        "dev": [InputExample("dev-7", "A dev one.", "B dev.", "entailment")],
        "test": [InputExample("0", "T a.", "T b."), InputExample("1", "U a.", "U b.")],
    },
    "wnli": {
        "folder": "WNLI",
        "files": nli_files("sentence1", "sentence2", ("1", "0")),
        "train": [
            InputExample("train-0", "Who wrote it?", 'It was written by "Ann.', "1"),
            InputExample("train-1", "Where?", "Paris.", "0"),
        ],
        "dev": [InputExample("dev-7", "A dev one.", "B dev.", "0")],
        "test": [InputExample("0", "T a.", "T b."), InputExample("1", "U a.", "U b.")],
    },
}
FIXTURES["mnli-mm"] = {
    **FIXTURES["mnli"],
    "dev": [InputExample("dev_mismatched-9", "Your gift.", "Hundreds.", "entailment")],
    "test": [InputExample("0", "What.", "That."), InputExample("1", "X.", "Y.")],
}


def write_task(root: Path, task: str) -> Path:
    folder = root / FIXTURES[task]["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in FIXTURES[task]["files"].items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------------
# Task names and processors.
# --------------------------------------------------------------------------------------------


def test_task_names_aliases_and_case():
    assert set(glue.TASK_NAMES) == set(glue.PROCESSORS)
    assert glue.normalize_task_name("MRPC") == "mrpc"
    assert glue.normalize_task_name("SST2") == "sst-2"
    assert glue.normalize_task_name("sst-2") == "sst-2"
    assert glue.normalize_task_name("StsB") == "sts-b"
    assert glue.normalize_task_name("MNLI-MM") == "mnli-mm"
    assert isinstance(glue.get_processor("Cola"), glue.ColaProcessor)


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(GlueError, match="unknown GLUE task 'squad'") as err:
        glue.get_processor("squad")
    for name in glue.TASK_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize(
    ("task", "labels"),
    [
        ("cola", ["0", "1"]),
        ("sst-2", ["0", "1"]),
        ("mrpc", ["0", "1"]),
        ("sts-b", [None]),
        ("qqp", ["0", "1"]),
        ("mnli", ["contradiction", "entailment", "neutral"]),
        ("mnli-mm", ["contradiction", "entailment", "neutral"]),
        ("qnli", ["entailment", "not_entailment"]),
        ("rte", ["entailment", "not_entailment"]),
        ("wnli", ["0", "1"]),
    ],
)
def test_labels_in_nvidia_order(task, labels):
    processor = glue.get_processor(task)
    assert processor.get_labels() == labels
    assert processor.num_labels == len(labels)
    assert processor.is_regression == (task == "sts-b")


@pytest.mark.parametrize("task", list(FIXTURES))
def test_processor_reads_glue_layout(tmp_path, task):
    folder = write_task(tmp_path, task)
    processor = glue.get_processor(task)
    expected = FIXTURES[task]
    assert processor.get_train_examples(folder) == expected["train"]
    assert processor.get_dev_examples(folder) == expected["dev"]
    assert processor.get_test_examples(folder) == expected["test"]


def test_mrpc_without_bom_reads_the_same(tmp_path):
    folder = write_task(tmp_path, "mrpc")
    text = (folder / "train.tsv").read_text(encoding="utf-8")
    (folder / "train.tsv").write_text(text.removeprefix(BOM), encoding="utf-8")
    assert glue.MrpcProcessor().get_train_examples(folder) == FIXTURES["mrpc"]["train"]


def test_crlf_line_endings(tmp_path):
    folder = write_task(tmp_path, "rte")
    text = (folder / "train.tsv").read_text(encoding="utf-8")
    (folder / "train.tsv").write_bytes(text.replace("\n", "\r\n").encode())
    assert glue.RteProcessor().get_train_examples(folder) == FIXTURES["rte"]["train"]


def test_long_field_is_read(tmp_path):
    folder = write_task(tmp_path, "sst-2")
    long_sentence = "word " * 40_000  # 200 KB, past csv's default 128 KiB field limit
    (folder / "train.tsv").write_text(tsv(["sentence", "label"], [long_sentence, "1"]))
    assert glue.Sst2Processor().get_train_examples(folder)[0].text_a == long_sentence


# --------------------------------------------------------------------------------------------
# Real files.
# --------------------------------------------------------------------------------------------


def _label_counts(examples):
    labels = [example.label for example in examples]
    return {label: labels.count(label) for label in sorted(set(labels))}


def test_real_mrpc(shared_data):
    folder = shared_data / "glue" / "MRPC"
    processor = glue.get_processor("mrpc")
    train = processor.get_train_examples(folder)
    dev = processor.get_dev_examples(folder)
    test = processor.get_test_examples(folder)
    assert (len(train), len(dev), len(test)) == (3668, 408, 1725)
    assert _label_counts(train) == {"0": 1194, "1": 2474}
    assert _label_counts(dev) == {"0": 129, "1": 279}
    assert train[0].text_a.startswith("Amrozi accused his brother")
    assert [example.guid for example in test] == [str(i) for i in range(1725)]
    assert all(example.label is None and example.text_b for example in test)


def test_real_sst2(shared_data):
    folder = shared_data / "glue" / "SST-2"
    processor = glue.get_processor("SST2")
    train = processor.get_train_examples(folder)
    dev = processor.get_dev_examples(folder)
    test = processor.get_test_examples(folder)
    assert (len(train), len(dev), len(test)) == (67349, 872, 1821)
    assert _label_counts(train) == {"0": 29780, "1": 37569}
    assert _label_counts(dev) == {"0": 428, "1": 444}
    assert all(example.text_b is None for example in train)
    assert [example.guid for example in test] == [str(i) for i in range(1821)]


def test_bundled_mrpc_sample():
    processor = glue.get_processor("mrpc")
    train = processor.get_train_examples(SAMPLE_MRPC)
    assert (len(train), len(processor.get_dev_examples(SAMPLE_MRPC))) == (400, 100)
    assert _label_counts(train) == {"0": 119, "1": 281}
    assert [example.guid for example in processor.get_test_examples(SAMPLE_MRPC)] == [
        str(i) for i in range(50)
    ]
    assert sum(path.stat().st_size for path in SAMPLE_MRPC.parent.rglob("*")) < 150_000


def test_bundled_mrpc_sample_is_a_prefix_of_glue(shared_data):
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        sample = (SAMPLE_MRPC / name).read_bytes()
        assert (shared_data / "glue" / "MRPC" / name).read_bytes().startswith(sample)


# --------------------------------------------------------------------------------------------
# Bad input: one GlueError naming the problem.
# --------------------------------------------------------------------------------------------


def test_missing_data_dir_and_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(GlueError, match=f"directory not found: {missing}"):
        glue.get_processor("mrpc").get_train_examples(missing)
    folder = write_task(tmp_path, "mnli")
    (folder / "dev_mismatched.tsv").unlink()
    with pytest.raises(GlueError, match=r"dev_mismatched\.tsv not found"):
        glue.get_processor("mnli-mm").get_dev_examples(folder)


def test_wrong_number_of_columns_names_file_and_line(tmp_path):
    folder = write_task(tmp_path, "mrpc")
    rows = ["1\t1\t2\tA.\tB.", "0\t3\t4\tC.", "1\t5\t6\tE.\tF."]
    (folder / "train.tsv").write_text(
        BOM + "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "\n".join(rows)
    )
    with pytest.raises(GlueError) as err:
        glue.MrpcProcessor().get_train_examples(folder)
    assert str(err.value) == f"{folder / 'train.tsv'}, line 3: 4 columns, expected 5 (mrpc layout)"


def test_cola_row_without_four_columns(tmp_path):
    folder = write_task(tmp_path, "cola")
    (folder / "dev.tsv").write_text(tsv(["clc95", "1", "", "Fine."], ["clc95", "1", "Broken."]))
    with pytest.raises(GlueError, match=r"dev.tsv, line 2: 3 columns, expected 4"):
        glue.ColaProcessor().get_dev_examples(folder)


@pytest.mark.parametrize(
    ("task", "file_name", "text", "message"),
    [
        (
            "sst-2",
            "train.tsv",
            tsv(["sentence", "label"], ["good .", "1"], ["bad .", "2"]),
            r"train.tsv, line 3: label '2' is not one of \['0', '1'\] \(sst-2\)",
        ),
        (
            "mnli",
            "train.tsv",
            tsv([*MNLI_HEAD, "label1", "gold_label"], mnli_row("0", "A.", "B.", "-", "-")),
            r"line 2: label '-' is not one of \['contradiction', 'entailment', 'neutral'\]",
        ),
        (
            "rte",
            "dev.tsv",
            tsv(["index", "sentence1", "sentence2", "label"], ["0", "A.", "B.", "Entailment"]),
            r"dev.tsv, line 2: label 'Entailment' is not one of",
        ),
        (
            "sts-b",
            "train.tsv",
            tsv([*STSB_HEAD, "score"], stsb_row("0", "A.", "B.", "high")),
            r"line 2: score 'high' is not a finite number",
        ),
        (
            "sts-b",
            "dev.tsv",
            tsv([*STSB_HEAD, "score"], stsb_row("0", "A.", "B.", "nan")),
            r"dev.tsv, line 2: score 'nan' is not a finite number",
        ),
    ],
)
def test_bad_labels(tmp_path, task, file_name, text, message):
    folder = write_task(tmp_path, task)
    (folder / file_name).write_text(text)
    processor = glue.get_processor(task)
    read = processor.get_train_examples if file_name == "train.tsv" else processor.get_dev_examples
    with pytest.raises(GlueError, match=message):
        read(folder)


def test_another_tasks_file_fails_on_its_header(tmp_path):
    sst2 = write_task(tmp_path, "sst-2")
    with pytest.raises(GlueError, match=r"line 1: not a mrpc header: column 0 should be 'Quality'"):
        glue.MrpcProcessor().get_train_examples(sst2)
    (sst2 / "dev.tsv").write_text("")
    with pytest.raises(GlueError, match="empty file"):
        glue.Sst2Processor().get_dev_examples(sst2)
    (sst2 / "dev.tsv").write_text("sentence\tlabel\n")  # the header only
    with pytest.raises(GlueError, match=r"dev\.tsv: no usable sst-2 examples \(no rows after"):
        glue.Sst2Processor().get_dev_examples(sst2)
    (sst2 / "test.tsv").write_text("index\tsentence\n")  # nothing to predict either
    with pytest.raises(GlueError, match=r"test\.tsv: no usable sst-2 examples"):
        glue.Sst2Processor().get_test_examples(sst2)


def test_not_utf8(tmp_path):
    folder = write_task(tmp_path, "sst-2")
    (folder / "train.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9 .\t1\n")
    with pytest.raises(GlueError, match="not valid UTF-8"):
        glue.Sst2Processor().get_train_examples(folder)


def test_features_reject_a_label_outside_the_list():
    example = InputExample("dev-1", "a", None, "2")
    with pytest.raises(GlueError, match=r"example dev-1: label '2' is not in the label list"):
        glue.convert_examples_to_features([example], ["0", "1"], 8, WordTokenizer())


# --------------------------------------------------------------------------------------------
# QQP's malformed rows.
# --------------------------------------------------------------------------------------------

QQP_HEAD = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]


def test_qqp_skips_a_few_malformed_rows_with_a_warning(tmp_path, caplog):
    folder = write_task(tmp_path, "qqp")
    good = [[str(i), "1", "2", f"Q{i}?", f"R{i}?", str(i % 2)] for i in range(20)]
    broken = ["20\t1\t2\tHow do I", "learn?\tHow to learn?\t1"]  # a question split over two lines
    text = tsv(QQP_HEAD, *good[:5]) + "\n".join(broken) + "\n" + tsv(*good[5:])
    (folder / "train.tsv").write_text(text)
    with caplog.at_level(logging.WARNING, logger="glue"):
        examples = glue.QqpProcessor().get_train_examples(folder)
    assert [example.guid for example in examples] == [f"train-{i}" for i in range(20)]
    assert "skipped 2 of 22 rows that do not have 6 columns (lines 7, 8)" in caplog.text


def test_qqp_refuses_a_file_of_mostly_broken_rows(tmp_path):
    folder = write_task(tmp_path, "qqp")
    rows = [[str(i), f"Q{i}?", "1"] for i in range(11)]
    (folder / "dev.tsv").write_text(tsv(QQP_HEAD, *rows))
    with pytest.raises(GlueError, match="11 of 11 rows do not have 6 columns"):
        glue.QqpProcessor().get_dev_examples(folder)


def test_qqp_rows_all_skipped_leave_nothing_and_are_refused(tmp_path, caplog):
    """A few rows, all with the wrong column count: each is within the skip allowance, but
    nothing is left to train on; the error says why, not "only a header line"."""
    folder = write_task(tmp_path, "qqp")
    (folder / "train.tsv").write_text(tsv(QQP_HEAD, ["0", "1", "2", "Q?"], ["1", "R?", "0"]))
    with pytest.raises(GlueError, match=r"train\.tsv: no usable qqp examples \(all 2 rows skip"):
        glue.QqpProcessor().get_train_examples(folder)


def test_a_file_whose_texts_are_all_empty_is_refused(tmp_path):
    folder = write_task(tmp_path, "sst-2")
    (folder / "dev.tsv").write_text(tsv(["sentence", "label"], ["", "0"], [" ", "1"]))
    with pytest.raises(GlueError, match=r"dev\.tsv: no usable sst-2 examples \(the text colum"):
        glue.Sst2Processor().get_dev_examples(folder)
    (folder / "dev.tsv").write_text(tsv(["sentence", "label"], ["", "0"], ["fine", "1"]))
    assert len(glue.Sst2Processor().get_dev_examples(folder)) == 2


def test_qqp_test_rows_are_never_skipped(tmp_path):
    folder = write_task(tmp_path, "qqp")
    (folder / "test.tsv").write_text(tsv(["id", "question1", "question2"], ["0", "Split"]))
    with pytest.raises(GlueError, match=r"test.tsv, line 2: 2 columns, expected 3"):
        glue.QqpProcessor().get_test_examples(folder)


# --------------------------------------------------------------------------------------------
# Features and collate.
# --------------------------------------------------------------------------------------------


class WordTokenizer:
    """Whitespace tokens; ids from a growing table ([PAD]=0, [CLS]=101, [SEP]=102 as in BERT)."""

    def __init__(self) -> None:
        self.ids = {"[PAD]": 0, "[CLS]": 101, "[SEP]": 102}

    def tokenize_batch(self, texts):
        return [text.split() for text in texts]

    def convert_tokens_to_ids(self, tokens):
        return [self.ids.setdefault(token, 1000 + len(self.ids)) for token in tokens]


def tokens_of(feature: InputFeatures, tokenizer: WordTokenizer) -> list[str]:
    names = {i: token for token, i in tokenizer.ids.items()}
    return [names[i] for i in feature.input_ids]


def words(prefix: str, count: int) -> str:
    return " ".join(f"{prefix}{i}" for i in range(1, count + 1))


def test_pair_truncation_pops_from_the_end_of_the_longer_side():
    tokenizer = WordTokenizer()
    examples = [
        InputExample("x-1", words("a", 6), words("b", 3), "1"),  # budget 10 - 3 = 7: a loses 2
        InputExample("x-2", words("a", 5), words("b", 5), "0"),  # ties pop b: b, a, b
        InputExample("x-3", words("a", 2), words("b", 9), "0"),  # budget 7: b loses 4
    ]
    features = glue.convert_examples_to_features(examples, ["0", "1"], 10, tokenizer)
    first, second, third = (tokens_of(feature, tokenizer) for feature in features)
    assert first == ["[CLS]", "a1", "a2", "a3", "a4", "[SEP]", "b1", "b2", "b3", "[SEP]"]
    assert second == ["[CLS]", "a1", "a2", "a3", "a4", "[SEP]", "b1", "b2", "b3", "[SEP]"]
    assert third == ["[CLS]", "a1", "a2", "[SEP]", "b1", "b2", "b3", "b4", "b5", "[SEP]"]
    assert features[0].segment_ids == [0] * 6 + [1] * 4
    assert features[1].segment_ids == [0] * 6 + [1] * 4
    assert [feature.label_id for feature in features] == [1, 0, 0]
    assert [feature.length for feature in features] == [10, 10, 10]


def test_single_sentence_cut_and_empty_second_sentence():
    tokenizer = WordTokenizer()
    examples = [
        InputExample("x-1", words("a", 10), None, "1"),
        InputExample("x-2", words("a", 3), None, "0"),
        InputExample("x-3", words("a", 10), "", "0"),  # NVIDIA: an empty text_b is no pair
    ]
    features = glue.convert_examples_to_features(examples, ["0", "1"], 6, tokenizer)
    assert tokens_of(features[0], tokenizer) == ["[CLS]", "a1", "a2", "a3", "a4", "[SEP]"]
    assert tokens_of(features[1], tokenizer) == ["[CLS]", "a1", "a2", "a3", "[SEP]"]
    assert tokens_of(features[2], tokenizer) == ["[CLS]", "a1", "a2", "a3", "a4", "[SEP]"]
    assert all(feature.segment_ids == [0] * feature.length for feature in features)


def test_labels_regression_and_test_features():
    tokenizer = WordTokenizer()
    nli = [InputExample("d-1", "a", "b", "neutral"), InputExample("d-2", "a", "b", "contradiction")]
    labels = glue.MnliProcessor().get_labels()
    assert [f.label_id for f in glue.convert_examples_to_features(nli, labels, 8, tokenizer)] == [
        2,
        0,
    ]
    stsb = [InputExample("d-1", "a", "b", 3.2), InputExample("0", "a", "b", None)]
    features = glue.convert_examples_to_features(stsb, [None], 8, tokenizer, is_regression=True)
    assert [feature.label_id for feature in features] == [3.2, None]
    assert isinstance(features[0].label_id, float)


def test_features_do_not_depend_on_the_tokenize_chunk(monkeypatch):
    examples = [
        InputExample(f"x-{i}", words("a", i + 2), words("b", 5 - i) if i % 2 else None, "1")
        for i in range(5)
    ]
    whole = glue.convert_examples_to_features(examples, ["0", "1"], 7, WordTokenizer())
    monkeypatch.setattr(glue, "_TOKENIZE_CHUNK", 2)
    assert glue.convert_examples_to_features(examples, ["0", "1"], 7, WordTokenizer()) == whole


def test_features_with_the_bert_tokenizer():
    tokenizer = BertTokenizer(UNCASED_VOCAB, do_lower_case=True)
    examples = glue.MrpcProcessor().get_dev_examples(SAMPLE_MRPC)[:20]
    features = glue.convert_examples_to_features(examples, ["0", "1"], 32, tokenizer)
    for example, feature in zip(examples, features, strict=True):
        tokens_a = tokenizer.tokenize(example.text_a)
        tokens_b = tokenizer.tokenize(example.text_b)
        glue._truncate_seq_pair(tokens_a, tokens_b, 29)
        expected = ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"]
        assert feature.input_ids == tokenizer.convert_tokens_to_ids(expected)
        assert feature.segment_ids == [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
        assert feature.label_id == int(example.label)
    assert max(feature.length for feature in features) == 32  # MRPC pairs exceed 32 tokens


def feature(length: int, label=1) -> InputFeatures:
    return InputFeatures(list(range(1, length + 1)), [0] * (length - 1) + [1], label)


def test_collate_pads_to_the_longest_in_the_batch():
    batch = glue.collate([feature(3), feature(7, 0), feature(5)])
    assert batch["input_ids"].shape == (3, 7)
    assert batch["input_ids"][0].tolist() == [1, 2, 3, 0, 0, 0, 0]
    assert batch["segment_ids"][2].tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert batch["input_mask"].sum(dim=1).tolist() == [3, 7, 5]
    assert batch["input_mask"][0].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert batch["labels"].tolist() == [1, 0, 1]
    assert all(tensor.dtype == torch.long for tensor in batch.values())


def test_collate_pad_to_multiple_of_8():
    assert glue.collate([feature(3), feature(9)], pad_to_multiple_of=8)["input_ids"].shape == (
        2,
        16,
    )
    assert glue.collate([feature(8)], pad_to_multiple_of=8)["input_mask"].shape == (1, 8)
    with pytest.raises(GlueError, match="positive"):
        glue.collate([feature(8)], pad_to_multiple_of=0)


def test_collate_labels_regression_test_and_mixed():
    regression = glue.collate([feature(3, 4.5), feature(4, 0.0)])["labels"]
    assert regression.dtype == torch.float32 and regression.tolist() == [4.5, 0.0]
    assert "labels" not in glue.collate([feature(3, None), feature(4, None)])
    with pytest.raises(GlueError, match="1 of 2 features have no label"):
        glue.collate([feature(3, None), feature(4, 1)])


def test_collate_in_a_dataloader():
    features = [feature(n, n % 2) for n in (3, 12, 5, 4)]
    loader = DataLoader(
        features, batch_size=2, collate_fn=functools.partial(glue.collate, pad_to_multiple_of=8)
    )
    shapes = [tuple(batch["input_ids"].shape) for batch in loader]
    assert shapes == [(2, 16), (2, 8)]


def test_arrays_match_collate_and_predictions_from_logits():
    features = [feature(3), feature(7, 0)]
    arrays = glue.features_to_arrays(features, 9)
    batch = glue.collate(features)
    for key in ("input_ids", "segment_ids", "input_mask"):
        assert arrays[key].shape == (2, 9) and arrays[key].dtype == np.int64
        np.testing.assert_array_equal(arrays[key][:, :7], batch[key].numpy())
        assert not arrays[key][:, 7:].any()
    logits = [np.array([0.1, 2.0]), np.array([3.0, -1.0])]
    assert glue.predictions_from_logits(logits, regression=False).tolist() == [1, 0]
    scores = [np.array([4.5]), np.array([0.25])]
    assert glue.predictions_from_logits(scores, regression=True).tolist() == [4.5, 0.25]


# --------------------------------------------------------------------------------------------
# Metrics: hand-computed values, degenerate cases, scipy/scikit-learn where installed.
# --------------------------------------------------------------------------------------------

PREDS = [1, 1, 0, 0, 1]
LABELS = [1, 0, 0, 1, 1]  # TP 2, TN 1, FP 1, FN 1


def test_accuracy_and_f1_by_hand():
    assert glue.simple_accuracy(PREDS, LABELS) == pytest.approx(0.6)
    assert glue.f1_score(PREDS, LABELS) == pytest.approx(4 / 6)  # 2 TP / (2 TP + FP + FN)
    result = glue.acc_and_f1(np.array(PREDS), np.array(LABELS))
    assert result == pytest.approx({"acc": 0.6, "f1": 2 / 3, "acc_and_f1": (0.6 + 2 / 3) / 2})
    assert glue.f1_score([0, 0], [0, 0]) == 0.0  # no positives anywhere: 0.0, as scikit-learn
    assert glue.f1_score([0, 0], [1, 1]) == 0.0
    with pytest.raises(GlueError, match="binary F1 takes 0/1 predictions"):
        glue.f1_score([0, 2], [0, 1])


def test_mcc_by_hand():
    # binary: (TP·TN - FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 1 / 6
    assert glue.matthews_corrcoef(PREDS, LABELS) == pytest.approx(1 / 6)
    assert glue.matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert glue.matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)
    # three classes: c = 4, s = 6, t = p = (2, 2, 2): (24 - 12) / sqrt(24 · 24) = 0.5
    assert glue.matthews_corrcoef([0, 2, 1, 0, 1, 2], [0, 1, 2, 0, 1, 2]) == pytest.approx(0.5)
    # string classes work the same way
    assert glue.matthews_corrcoef(["n", "e", "e"], ["n", "e", "n"]) == pytest.approx(0.5)


def test_mcc_one_class_is_zero():
    assert glue.matthews_corrcoef([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # constant predictions
    assert glue.matthews_corrcoef([1, 0, 1, 0], [1, 1, 1, 1]) == 0.0  # constant labels
    assert glue.matthews_corrcoef([1, 1], [1, 1]) == 0.0  # one class everywhere


def test_average_ranks_share_ties():
    ranks = glue._average_ranks(np.array([10.0, 20.0, 20.0, 5.0, 20.0]))
    assert ranks.tolist() == [2.0, 4.0, 4.0, 1.0, 4.0]


def test_pearson_and_spearman_by_hand():
    result = glue.pearson_and_spearman([1, 2, 3, 4], [2, 4, 5, 9])
    pearson = 11 / math.sqrt(5 * 26)  # sum dx·dy = 11, sum dx² = 5, sum dy² = 26
    assert result == pytest.approx(
        {"pearson": pearson, "spearmanr": 1.0, "corr": (pearson + 1) / 2}
    )
    # ties: ranks (1, 2.5, 2.5, 4) against (1, 3, 2, 4): 4.5 / sqrt(4.5 · 5)
    tied = glue.pearson_and_spearman([1.0, 2.0, 2.0, 3.0], [1.0, 3.0, 2.0, 4.0])
    assert tied["spearmanr"] == pytest.approx(4.5 / math.sqrt(22.5))


def test_constant_predictions_have_zero_correlation_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="glue"):
        result = glue.pearson_and_spearman([2.5, 2.5, 2.5], [1.0, 3.0, 4.5])
    assert result == {"pearson": 0.0, "spearmanr": 0.0, "corr": 0.0}
    assert "Pearson correlation is undefined for constant predictions" in caplog.text
    assert "Spearman correlation is undefined for constant predictions" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glue"):
        assert glue.pearson_and_spearman([1.0, 2.0], [3.0, 3.0])["corr"] == 0.0
    assert "constant labels" in caplog.text
    with pytest.raises(GlueError, match="non-finite predictions"):
        glue.pearson_and_spearman([1.0, math.nan], [1.0, 2.0])


def test_correlations_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 11, size=500) / 2  # STS-B-like scores with many ties
    preds = labels + rng.normal(0, 1.0, size=500)
    preds[:50] = np.round(preds[:50])  # ties in the predictions too
    result = glue.pearson_and_spearman(preds, labels)
    assert result["pearson"] == pytest.approx(stats.pearsonr(preds, labels)[0], abs=1e-12)
    assert result["spearmanr"] == pytest.approx(stats.spearmanr(preds, labels)[0], abs=1e-12)
    assert glue._average_ranks(preds).tolist() == stats.rankdata(preds).tolist()


def test_mcc_and_f1_match_scikit_learn():
    from sklearn import metrics

    rng = np.random.default_rng(1)
    labels, preds = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    assert glue.matthews_corrcoef(preds, labels) == pytest.approx(
        metrics.matthews_corrcoef(labels, preds)
    )
    assert glue.f1_score(preds, labels) == pytest.approx(metrics.f1_score(labels, preds))
    labels, preds = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    assert glue.matthews_corrcoef(preds, labels) == pytest.approx(
        metrics.matthews_corrcoef(labels, preds)
    )


def test_compute_metrics_names_per_task():
    binary = ([1, 0, 1, 1], [1, 0, 0, 1])
    assert set(glue.compute_metrics("CoLA", *binary)) == {"mcc"}
    for task in ("sst-2", "sst2", "qnli", "rte", "wnli", "mnli", "mnli-mm"):
        assert glue.compute_metrics(task, *binary) == {"acc": 0.75}
    for task in ("mrpc", "qqp"):
        assert set(glue.compute_metrics(task, *binary)) == {"acc", "f1", "acc_and_f1"}
    assert set(glue.compute_metrics("stsb", [0.1, 2.0, 4.0], [0.0, 2.5, 5.0])) == {
        "pearson",
        "spearmanr",
        "corr",
    }
    assert all(isinstance(value, float) for value in glue.compute_metrics("mrpc", *binary).values())


def test_metrics_reject_bad_shapes():
    with pytest.raises(GlueError, match="3 predictions for 2 labels"):
        glue.simple_accuracy([1, 0, 1], [1, 0])
    with pytest.raises(GlueError, match="take the argmax of logits first"):
        glue.compute_metrics("mrpc", np.zeros((2, 2)), [0, 1])
    with pytest.raises(GlueError, match="empty"):
        glue.matthews_corrcoef([], [])


# --------------------------------------------------------------------------------------------
# Submission files.
# --------------------------------------------------------------------------------------------


def test_mrpc_submission_from_the_bundled_sample(tmp_path):
    processor = glue.get_processor("mrpc")
    test = processor.get_test_examples(SAMPLE_MRPC)
    predictions = np.arange(len(test)) % 2
    path = glue.write_submission(
        tmp_path / "out", "MRPC", test, predictions, processor.get_labels()
    )
    assert path == tmp_path / "out" / "MRPC.tsv"
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    assert lines[1:4] == ["0\t0", "1\t1", "2\t0"]
    assert len(lines) == 51
    assert [p.name for p in path.parent.iterdir()] == ["MRPC.tsv"]  # no temporary file left


def test_mnli_submissions_write_label_strings(tmp_path):
    folder = write_task(tmp_path, "mnli")
    labels = glue.MnliProcessor().get_labels()
    matched = glue.MnliProcessor().get_test_examples(folder)
    path = glue.write_submission(tmp_path, "mnli", matched, np.array([2]), labels)
    assert path.name == "MNLI-m.tsv"
    assert path.read_text() == "index\tprediction\n0\tneutral\n"
    mismatched = glue.get_processor("mnli-mm").get_test_examples(folder)
    path = glue.write_submission(tmp_path, "mnli-mm", mismatched, [1, 0], labels)
    assert path.name == "MNLI-mm.tsv"
    assert path.read_text() == "index\tprediction\n0\tentailment\n1\tcontradiction\n"


def test_stsb_submission_clips_scores(tmp_path):
    test = [InputExample(str(i), "a", "b") for i in range(3)]
    path = glue.write_submission(tmp_path, "sts-b", test, np.array([-0.4, 2.3456, 7.0]), [None])
    assert path.name == "STS-B.tsv"
    assert path.read_text() == "index\tprediction\n0\t0.000\n1\t2.346\n2\t5.000\n"


def test_submission_file_names():
    names = {
        task: glue.PROCESSORS[task].submission_file.removesuffix(".tsv") for task in glue.TASK_NAMES
    }
    assert sorted(names.values()) == sorted(
        ["CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI-m", "MNLI-mm", "QNLI", "RTE", "WNLI"]
    )


def test_submission_rejects_bad_predictions(tmp_path):
    test = [InputExample("0", "a"), InputExample("1", "b")]
    with pytest.raises(GlueError, match="one value per example"):
        glue.write_submission(tmp_path, "sst-2", test, [1], ["0", "1"])
    with pytest.raises(GlueError, match=r"class indices in \[0, 2\)"):
        glue.write_submission(tmp_path, "sst-2", test, [1, 2], ["0", "1"])
    with pytest.raises(GlueError, match="class indices"):
        glue.write_submission(tmp_path, "sst-2", test, [0.7, 0.2], ["0", "1"])
    with pytest.raises(GlueError, match="is not the task's"):
        glue.write_submission(tmp_path, "rte", test, [1, 0], ["0", "1"])
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Data that reads but cannot train or score: warned about, or refused.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_name", "consequence"),
    [
        ("train.tsv", "a model trained on it can only learn to predict that"),
        ("dev.tsv", "its metrics say nothing beyond the share of that one label"),
    ],
)
def test_a_file_whose_examples_all_have_one_label_is_warned_about(
    tmp_path, caplog, file_name, consequence
):
    folder = write_task(tmp_path, "sst-2")
    processor = glue.Sst2Processor()
    read = processor.get_train_examples if file_name == "train.tsv" else processor.get_dev_examples
    (folder / file_name).write_text(tsv(["sentence", "label"], ["good .", "1"], ["bad .", "0"]))
    with caplog.at_level(logging.WARNING, logger="glue"):
        read(folder)
    assert caplog.text == ""
    rows = [[f"s{i} .", "1"] for i in range(5)]
    (folder / file_name).write_text(tsv(["sentence", "label"], *rows))
    with caplog.at_level(logging.WARNING, logger="glue"):
        read(folder)
    assert caplog.text.count("WARNING") == 1
    assert f"{folder / file_name}: all 5 examples have the label '1'; {consequence}" in caplog.text
    caplog.clear()
    stsb = write_task(tmp_path / "b", "sts-b")
    rows = [stsb_row(str(i), "A.", "B.", "2.5") for i in range(3)]
    (stsb / "train.tsv").write_text(tsv([*STSB_HEAD, "score"], *rows))
    with caplog.at_level(logging.WARNING, logger="glue"):
        glue.StsbProcessor().get_train_examples(stsb)
    assert "all 3 examples have the label 2.5" in caplog.text


def test_a_dev_set_without_known_labels_is_refused_at_its_first_row(tmp_path):
    folder = write_task(tmp_path, "mrpc")
    head = BOM + "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    (folder / "dev.tsv").write_text(head + "-1\t1\t2\tA.\tB.\n-1\t3\t4\tC.\tD.\n")  # test labels
    with pytest.raises(GlueError, match=r"dev.tsv, line 2: label '-1' is not one of \['0', '1'\]"):
        glue.MrpcProcessor().get_dev_examples(folder)


def test_features_need_cls_and_sep_and_text_mostly_unk_is_warned_about(tmp_path, caplog):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\ngood\n", encoding="utf-8")
    example = [InputExample("train-0", "good", None, "1")]
    with pytest.raises(VocabError, match=rf"{vocab} has no \[SEP\] token, needed by GLUE features"):
        glue.convert_examples_to_features(example, ["0", "1"], 16, BertTokenizer(vocab))
    examples = glue.MrpcProcessor().get_dev_examples(SAMPLE_MRPC)[:20]
    with caplog.at_level(logging.WARNING):
        glue.convert_examples_to_features(
            examples, ["0", "1"], 128, BertTokenizer(UNCASED_VOCAB), source="MRPC dev"
        )
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING):
        unlowered = BertTokenizer(UNCASED_VOCAB, do_lower_case=False)
        glue.convert_examples_to_features(examples, ["0", "1"], 128, unlowered, source="MRPC dev")
    assert "MRPC dev: 1" in caplog.text and "% of the tokens are [UNK]" in caplog.text
    assert "with lower-casing off" in caplog.text
