"""Tests for tokenization.py: hand-built cases, Hugging Face parity on real corpora, bad input."""

from __future__ import annotations

import csv
import json
import logging
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.support import CASED_VOCAB, UNCASED_VOCAB
from tokenization import (
    BasicTokenizer,
    BertTokenizer,
    VocabError,
    WordpieceTokenizer,
    fast_backend_available,
    load_vocab,
    require_tokens,
    vocab_casing,
    warn_if_mostly_unknown,
)

BACKENDS = ["python", "fast"]

LONG_WORD = "a" * 100
TINY_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "un",
    "##want",
    "##ed",
    "runn",
    "##ing",
    "want",
    "wa",
    "##a",
    "hello",
    "!",
    "how",
    "are",
    "you",
    "?",
    "HeLLo",
    "Are",
    "yoU",
    "héllo",
    "Héllo",
    "world",
    "[",
    "]",
    "sep",
    "cls",
    "x",
    "y",
    "##y",
    "中",
    "国",
    "ab",
    "cd",
    "한국",
    "οδος",
    "οδοσ",
    LONG_WORD,
]


@pytest.fixture
def tiny_vocab(tmp_path: Path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    return path


def _tokenizer(vocab: Path, backend: str, do_lower_case: bool = True) -> BertTokenizer:
    return BertTokenizer(vocab, do_lower_case=do_lower_case, backend=backend)


# --- Hand-built cases with known answers ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("text", "lower", "expected"),
    [
        ("  \tHeLLo!how  \n Are yoU?  ", True, ["hello", "!", "how", "are", "you", "?"]),
        ("  \tHeLLo!how  \n Are yoU?  ", False, ["HeLLo", "!", "how", "Are", "yoU", "?"]),
        ("Héllo He\u0301llo", True, ["hello", "hello"]),  # accents stripped, composed or not
        ("Héllo héllo", False, ["Héllo", "héllo"]),  # cased: accents kept
        ("ab中国cd 한국", False, ["ab", "中", "国", "cd", "한국"]),  # CJK split, Hangul not
        # NUL, U+FFFD and "C*" characters (here Cf, Cc, private use Co) vanish inside words.
        ("hel\x00lo\u200b wor\x07ld\ufffd x\ue000y", True, ["hello", "world", "x", "##y"]),
        ("hello\u00a0world\u3000x\r\ny", True, ["hello", "world", "x", "y"]),
        ("unwanted running", True, ["un", "##want", "##ed", "runn", "##ing"]),
        ("unwantedz wanted", True, ["[UNK]", "want", "##ed"]),  # "z" cannot be covered
        (LONG_WORD, True, [LONG_WORD]),
        (LONG_WORD + "a", True, ["[UNK]"]),  # 101 characters, though a + ##a... would cover it
        ("[CLS] HeLLo [SEP] [MASK]", True, ["[CLS]", "hello", "[SEP]", "[MASK]"]),
        ("x[SEP] [cls]", True, ["x", "[", "sep", "]", "[", "cls", "]"]),
        ("[CLS]\u00a0x\t[SEP]", False, ["[CLS]", "x", "[SEP]"]),
        ("ΟΔΟΣ", True, ["οδος"]),  # Python's str.lower gives the word-final sigma
        ("", True, []),
        (" \t\n\u3000\x00 ", True, []),
    ],
)
def test_tokenize_known_answers(tiny_vocab, backend, text, lower, expected):
    tokenizer = _tokenizer(tiny_vocab, backend, do_lower_case=lower)
    assert tokenizer.tokenize(text) == expected
    assert tokenizer.tokenize_batch([text, text]) == [expected, expected]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tokenize_batch_keeps_order_and_matches_tokenize(tiny_vocab, backend):
    # Mixes texts the fast backend hands to Rust with ones it keeps in Python ("x[SEP]", "Σ").
    texts = ["unwanted", "x[SEP]", "", "[CLS] how", "ΟΔΟΣ are", "wanted running"] * 3
    tokenizer = _tokenizer(tiny_vocab, backend)
    assert tokenizer.tokenize_batch(texts) == [tokenizer.tokenize(t) for t in texts]


def test_basic_tokenizer_steps():
    assert BasicTokenizer().tokenize(" \tHeLLo!how  \n Are yoU?  ") == [
        "hello",
        "!",
        "how",
        "are",
        "you",
        "?",
    ]
    assert BasicTokenizer(do_lower_case=False).tokenize("Crème brûlée") == ["Crème", "brûlée"]
    assert BasicTokenizer().tokenize("Crème brûlée") == ["creme", "brulee"]
    # "$", "^" and "`" are ASCII symbols but count as punctuation, "¿" and "—" by category.
    assert BasicTokenizer().tokenize("a$b^c`d ¿e—f") == [*"a$b^c`d", "¿", "e", "—", "f"]
    assert BasicTokenizer().tokenize("[CLS] [cls]") == ["[CLS]", "[", "cls", "]"]
    assert BasicTokenizer(never_split=()).tokenize("[CLS]") == ["[", "cls", "]"]


def test_wordpiece_tokenizer_greedy_longest_match():
    vocab = {token: i for i, token in enumerate(TINY_VOCAB)}
    wordpiece = WordpieceTokenizer(vocab)
    assert wordpiece.tokenize("unwanted running") == ["un", "##want", "##ed", "runn", "##ing"]
    assert wordpiece.tokenize("wanta") == ["want", "##a"]  # "want" beats "wa"
    assert wordpiece.tokenize("unwantedz") == ["[UNK]"]
    assert wordpiece.tokenize(LONG_WORD + " " + LONG_WORD + "a") == [LONG_WORD, "[UNK]"]
    assert WordpieceTokenizer(vocab, max_input_chars_per_word=3).tokenize("want") == ["[UNK]"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_convert_tokens_and_ids_round_trip(tiny_vocab, backend):
    tokenizer = _tokenizer(tiny_vocab, backend)
    tokens = tokenizer.tokenize("unwanted running [SEP]")
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert ids == [TINY_VOCAB.index(t) for t in tokens]
    assert tokenizer.convert_ids_to_tokens(ids) == tokens
    assert tokenizer.convert_tokens_to_ids(["hello", "not-in-vocab"]) == [13, 1]
    assert len(tokenizer) == tokenizer.vocab_size == len(TINY_VOCAB)
    assert tokenizer.ids_to_tokens[5] == "un" and tokenizer.vocab["un"] == 5


@pytest.mark.parametrize("bad_id", [-1, len(TINY_VOCAB), 10**9, 1.0])
def test_convert_ids_to_tokens_rejects_out_of_range(tiny_vocab, bad_id):
    with pytest.raises(ValueError, match=rf"token id {bad_id!r} .*size {len(TINY_VOCAB)}"):
        _tokenizer(tiny_vocab, "python").convert_ids_to_tokens([0, bad_id])


def test_max_len_warns_instead_of_raising(tiny_vocab, caplog):
    tokenizer = BertTokenizer(tiny_vocab, max_len=2)
    with caplog.at_level(logging.WARNING, logger="tokenization"):
        assert tokenizer.convert_tokens_to_ids(["un", "##want", "##ed"]) == [5, 6, 7]
    assert "(3 > 2)" in caplog.text


def test_real_vocab_ids():
    specials = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    for path, size in ((UNCASED_VOCAB, 30522), (CASED_VOCAB, 28996)):
        vocab = load_vocab(path)
        assert len(vocab) == size
        assert [vocab[t] for t in specials] == [0, 100, 101, 102, 103]


def test_a_token_on_two_lines_is_refused_naming_both_lines(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[UNK]\nhello\nworld\n hello \n", encoding="utf-8")  # stripped: a repeat
    for load in (load_vocab, BertTokenizer):
        with pytest.raises(VocabError, match=r"lists the token 'hello' twice, on lines 2 and 4"):
            load(path)
    with pytest.raises(VocabError, match=str(path)):
        load_vocab(path)


def test_lines_are_read_as_googles_load_vocab_reads_them(tmp_path):
    path = tmp_path / "vocab.txt"
    # CRLF endings, a whitespace-only line (an id of its own), two blank lines, no final newline.
    path.write_bytes(b"[PAD]\r\n[UNK]\n \t\nhello\n\n\nworld")
    assert load_vocab(path) == {"[PAD]": 0, "[UNK]": 1, "": 5, "hello": 3, "world": 6}
    tokenizer = BertTokenizer(path)
    assert len(tokenizer) == 7
    assert tokenizer.convert_tokens_to_ids(["hello", "world"]) == [3, 6]
    path.write_bytes(b"\xef\xbb\xbf[PAD]\n[UNK]\n")  # a byte-order mark is not part of [PAD]
    assert load_vocab(path) == {"[PAD]": 0, "[UNK]": 1}


def test_the_casing_of_the_vocabulary_is_checked_against_lower_casing(caplog):
    with caplog.at_level(logging.WARNING, logger="tokenization"):
        BertTokenizer(UNCASED_VOCAB, do_lower_case=True)
        BertTokenizer(CASED_VOCAB, do_lower_case=False)
    assert caplog.text == ""
    with caplog.at_level(logging.WARNING, logger="tokenization"):
        BertTokenizer(CASED_VOCAB, do_lower_case=True)
    assert f"vocab file {CASED_VOCAB} is cased" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tokenization"):
        BertTokenizer(UNCASED_VOCAB, do_lower_case=False)
    assert f"vocab file {UNCASED_VOCAB} is uncased" in caplog.text
    assert vocab_casing(["[CLS]", "中", "国", "##文"] * 50) is None


def test_mostly_unknown_text_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="tokenization"):
        assert not warn_if_mostly_unknown("dev.json", 5, 100, "vocab.txt", True)
        assert warn_if_mostly_unknown("dev.json", 17, 100, "vocab.txt", False)
    assert caplog.text.count("WARNING") == 1
    assert "dev.json: 17% of the tokens are [UNK]" in caplog.text
    assert "vocabulary vocab.txt with lower-casing off" in caplog.text


def test_required_special_tokens(tmp_path):
    vocab = {"[UNK]": 0, "[CLS]": 1}
    require_tokens(vocab, ["[UNK]", "[CLS]"], "v.txt", "SQuAD features")
    with pytest.raises(VocabError, match=r"v\.txt has no \[SEP\], \[MASK\] token, needed by GLUE"):
        require_tokens(vocab, ["[CLS]", "[SEP]", "[MASK]"], "v.txt", "GLUE features")


# --- Fast backend gives the Python backend's tokens on every code point ------------------------


def _code_points_to_check() -> list[int]:
    """Every assigned code point, plus both ends and every 97th point of unassigned runs."""
    points, unassigned_run = [], []
    for cp in range(0x110000):
        category = unicodedata.category(chr(cp))
        if category == "Cn":
            unassigned_run.append(cp)
            continue
        if unassigned_run:
            points += [*unassigned_run[::97], unassigned_run[-1]]
            unassigned_run = []
        if category != "Cs":
            points.append(cp)
    return points + unassigned_run[::97] + unassigned_run[-1:]


@pytest.mark.slow
@pytest.mark.parametrize(("vocab", "lower"), [(UNCASED_VOCAB, True), (CASED_VOCAB, False)])
def test_fast_backend_matches_python_on_every_code_point(vocab, lower):
    python = BertTokenizer(vocab, do_lower_case=lower)
    fast = BertTokenizer(vocab, do_lower_case=lower, backend="fast")

    def contexts(char: str) -> str:  # inside a word, and before a combining accent
        return f"X{char}y {char}\u0301"

    # 64 characters a text keeps the Rust side from paying per-text overhead.
    chars = [chr(cp) for cp in _code_points_to_check()]
    chunks = [chars[i : i + 64] for i in range(0, len(chars), 64)]
    texts = [" ".join(map(contexts, chunk)) for chunk in chunks]
    pairs = zip(chunks, python.tokenize_batch(texts), fast.tokenize_batch(texts), strict=True)
    suspects = [c for chunk, p, f in pairs if p != f for c in chunk]
    mismatches = [
        (hex(ord(c)), python.tokenize(contexts(c)), fast.tokenize(contexts(c)))
        for c in suspects
        if python.tokenize(contexts(c)) != fast.tokenize(contexts(c))
    ]
    assert not suspects, mismatches[:5]


def test_fast_backend_rejects_never_split_that_lowercasing_reaches(tiny_vocab):
    with pytest.raises(ValueError, match=r"never_split.*\['x'\]"):
        BertTokenizer(tiny_vocab, never_split=("[CLS]", "x"), backend="fast")
    assert BertTokenizer(tiny_vocab, do_lower_case=False, never_split=("x",), backend="fast")


# --- Parity with Hugging Face on real corpora ----------------------------------------------------


def _tsv_column(path: Path, column: int) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[column] for row in rows[1:]]


@pytest.fixture(scope="module")
def corpora(shared_data: Path) -> dict[str, list[str]]:
    """Every line of the parity corpora: SQuAD dev contexts and questions, MRPC and SST-2
    sentences, WikiText-2 validation."""
    squad = json.loads((shared_data / "squad/v1.1/dev-v1.1.json").read_text(encoding="utf-8"))
    paragraphs = [p for article in squad["data"] for p in article["paragraphs"]]
    glue = shared_data / "glue"
    mrpc = [
        line
        for split in ("train", "dev", "test")
        for column in (3, 4)
        for line in _tsv_column(glue / f"MRPC/{split}.tsv", column)
    ]
    sst2 = [
        line
        for split, column in (("train", 0), ("dev", 0), ("test", 1))
        for line in _tsv_column(glue / f"SST-2/{split}.tsv", column)
    ]
    wiki = (shared_data / "text/wiki.valid.raw").read_text(encoding="utf-8").split("\n")[:-1]
    return {
        "squad_dev_contexts": [p["context"] for p in paragraphs],
        "squad_dev_questions": [qa["question"] for p in paragraphs for qa in p["qas"]],
        "mrpc_sentences": mrpc,
        "sst2_sentences": sst2,
        "wikitext2_valid": wiki,
    }


VOCABS = {"uncased": (UNCASED_VOCAB, True), "cased": (CASED_VOCAB, False)}


def python_bert_tokenizer(transformers):
    """transformers' pure-Python BERT tokenizer: `BertTokenizerLegacy` from 5.0 on, before it
    `BertTokenizer` itself (the Rust one was `BertTokenizerFast` then)."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy
    except ImportError:
        return transformers.BertTokenizer
    return BertTokenizerLegacy


@pytest.fixture(scope="module")
def hf_ids(corpora):
    """``hf_ids(kind, vocab_name)``: Hugging Face ids per corpus, computed once per module.

    ``kind`` "fast" is transformers' default ``BertTokenizer`` (Rust), "legacy" its Python one.
    """
    import transformers

    cache: dict[tuple[str, str], dict[str, list[list[int]]]] = {}

    def get(kind: str, vocab_name: str) -> dict[str, list[list[int]]]:
        if (kind, vocab_name) not in cache:
            vocab, lower = VOCABS[vocab_name]
            if kind == "fast":
                hf = transformers.BertTokenizer(str(vocab), do_lower_case=lower)
                ids = {
                    n: hf(lines, add_special_tokens=False)["input_ids"]
                    for n, lines in corpora.items()
                }
            else:
                hf = python_bert_tokenizer(transformers)(str(vocab), do_lower_case=lower)
                unk_id = hf.vocab["[UNK]"]  # its own vocab dict: convert_tokens_to_ids is slow
                ids = {
                    n: [[hf.vocab.get(t, unk_id) for t in hf.tokenize(line)] for line in lines]
                    for n, lines in corpora.items()
                }
            cache[kind, vocab_name] = ids
        return cache[kind, vocab_name]

    return get


def _first_difference(tokenizer, ours, theirs, label):
    """Both token sequences around the first position where the ids differ."""
    same = (a == b for a, b in zip(ours, theirs, strict=False))  # lengths may differ
    k = next((i for i, equal in enumerate(same) if not equal), min(len(ours), len(theirs)))
    window = slice(max(k - 5, 0), k + 10)
    return (
        f"  first difference at token {k}\n"
        f"  ours: {tokenizer.convert_ids_to_tokens(ours[window])}\n"
        f"  {label}: {tokenizer.convert_ids_to_tokens(theirs[window])}"
    )


@pytest.fixture(scope="module")
def our_ids(corpora):
    """``our_ids(tokenizer)``: its ids per corpus, computed once per module for each vocabulary,
    casing and backend (the comparison with the legacy tokenizer reuses the Python backend's)."""
    cache: dict[tuple[str, bool, str], dict[str, list[list[int]]]] = {}

    def get(tokenizer: BertTokenizer) -> dict[str, list[list[int]]]:
        key = (tokenizer.vocab_file, tokenizer.do_lower_case, tokenizer.backend)
        if key not in cache:
            cache[key] = {
                name: [tokenizer.convert_tokens_to_ids(t) for t in tokenizer.tokenize_batch(lines)]
                for name, lines in corpora.items()
            }
        return cache[key]

    return get


def _assert_same_ids(tokenizer, corpora, ours, reference, label):
    """Compare each corpus line by line; on mismatch, show the first three lines of each."""
    counts, examples = [], []
    for name, lines in corpora.items():
        bad = [
            i for i, (a, b) in enumerate(zip(ours[name], reference[name], strict=True)) if a != b
        ]
        counts.append(f"{name}: {len(bad)} of {len(lines)} lines differ")
        examples += [
            f"{name}[{i}] {lines[i][:150]!r}\n"
            + _first_difference(tokenizer, ours[name][i], reference[name][i], label)
            for i in bad[:3]
        ]
    assert not examples, "\n".join(counts + examples)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("vocab_name", list(VOCABS))
def test_ids_match_hugging_face_bert_tokenizer(corpora, hf_ids, our_ids, vocab_name, backend):
    vocab, lower = VOCABS[vocab_name]
    tokenizer = BertTokenizer(vocab, do_lower_case=lower, backend=backend)
    _assert_same_ids(tokenizer, corpora, our_ids(tokenizer), hf_ids("fast", vocab_name), "HF")


@pytest.mark.slow
@pytest.mark.parametrize("vocab_name", list(VOCABS))
def test_ids_match_hugging_face_legacy_python_tokenizer(corpora, hf_ids, our_ids, vocab_name):
    vocab, lower = VOCABS[vocab_name]
    tokenizer = BertTokenizer(vocab, do_lower_case=lower)
    reference = hf_ids("legacy", vocab_name)
    _assert_same_ids(tokenizer, corpora, our_ids(tokenizer), reference, "HF legacy")


# --- Bad input ----------------------------------------------------------------------------------


def test_missing_vocab_file(tmp_path):
    missing = tmp_path / "no_such_vocab.txt"
    with pytest.raises(FileNotFoundError, match=r"no_such_vocab\.txt"):
        BertTokenizer(missing)
    with pytest.raises(FileNotFoundError, match="vocab file not found"):
        load_vocab(missing)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "holds no tokens"),
        (b"\n  \n", "holds no tokens"),
        (b"[UNK]\n\xff\xfe\n", r"is not UTF-8 text: byte 0xff on line 2 cannot be decoded"),
        (b"[UNK]\nok\n\x80\x04K.\x00\x00", r"not a text file \(a NUL byte on line 3\)"),
    ],
)
def test_unusable_vocab_file(tmp_path, content, message):
    path = tmp_path / "bad_vocab.txt"
    path.write_bytes(content)
    with pytest.raises(VocabError, match=message) as error:
        load_vocab(path)
    assert str(path) in str(error.value)


def test_vocab_that_is_a_directory(tmp_path):
    with pytest.raises(VocabError, match="is a directory") as error:
        BertTokenizer(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_vocab_without_unk(tmp_path):
    path = tmp_path / "no_unk.txt"
    path.write_text("[PAD]\nhello\n", encoding="utf-8")
    with pytest.raises(VocabError, match=r"no \[UNK\] token") as error:
        BertTokenizer(path)
    assert str(path) in str(error.value)


def test_unknown_backend(tiny_vocab):
    with pytest.raises(ValueError, match=r"'python', 'fast'.*'rust'"):
        BertTokenizer(tiny_vocab, backend="rust")


def test_fast_backend_without_tokenizers_package(tiny_vocab, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    assert not fast_backend_available()
    with pytest.raises(ImportError, match="pip install tokenizers") as error:
        BertTokenizer(tiny_vocab, backend="fast")
    assert "backend='fast'" in str(error.value)
