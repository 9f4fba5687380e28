"""data/train_vocab.py: a WordPiece vocabulary trained with Hugging Face `tokenizers` on the bundled
text gives our tokenizer the ids of `tokenizers`' own BERT tokenizer on held-out text (uncased
and cased), is the same file on every run, is refused or warned about where it cannot work, and
carries the whole chain: shards, pre-training, SQuAD and GLUE fine-tuning."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import h5py
import pytest
import tokenizers

from data import train_vocab
from logger import read_dllogger_file
from modeling import BertConfig
from tests.support import (
    REPO_ROOT,
    SAMPLE_MRPC,
    SAMPLE_SQUAD,
    TINY_CONFIG,
    mrpc_dev_scores,
    official_squad_v1_scores,
    pretrain_in_process,
)
from tokenization import BertTokenizer, VocabError, load_vocab, vocab_casing

SAMPLE_TEXT = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"
VOCAB_SIZE = 3000

#: Text the training part never holds: accents, CJK ideographs (split one by one), control and
#: format characters (removed), odd white space, mixed case.
HAND_BUILT = [
    "Café naïve résumé, ÉCOLE Über straße.",
    "The 中文字符 and 日本語 are split , one ideograph at a time .",
    "con\x07trol\u200bled chars\x00 vanish ; tab\there\u00a0and\u3000wide space .",
    "ÀÉÎÕÜ àéîõü Ññ Çç Ω ω — “quoted” ‘text’ … 1,234.5 % $ ^ ` ~",
]


def split_sample(folder: Path) -> tuple[Path, Path]:
    """The bundled corpus cut at a document boundary: the first 70% of its documents to train
    on, the rest held out."""
    documents = SAMPLE_TEXT.read_text(encoding="utf-8").strip().split("\n\n")
    cut = int(0.7 * len(documents))
    train, held_out = folder / "train.txt", folder / "held_out.txt"
    train.write_text("\n\n".join(documents[:cut]) + "\n", encoding="utf-8")
    held_out.write_text("\n\n".join(documents[cut:]) + "\n", encoding="utf-8")
    return train, held_out


def train(*flags: str) -> int:
    return train_vocab.main(list(flags))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    return split_sample(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def vocabs(corpus, tmp_path_factory) -> dict[str, Path]:
    """{"uncased": path, "cased": path}, each of VOCAB_SIZE tokens trained on the training part."""
    folder = tmp_path_factory.mktemp("vocabs")
    paths = {}
    for casing, extra in (("uncased", ()), ("cased", ("--cased",))):
        paths[casing] = folder / f"{casing}.txt"
        args = ["--input_file", str(corpus[0]), "--output_file", str(paths[casing])]
        assert train(*args, "--vocab_size", str(VOCAB_SIZE), *extra) == 0
    return paths


def held_out_lines(held_out: Path) -> list[str]:
    lines = [line for line in held_out.read_text(encoding="utf-8").splitlines() if line.strip()]
    mrpc = (SAMPLE_MRPC / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    lines += [text for row in mrpc for text in row.split("\t")[3:]]
    squad = json.loads((SAMPLE_SQUAD / "v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    for article in squad["data"]:
        for paragraph in article["paragraphs"]:
            lines.append(paragraph["context"])
            lines += [qa["question"] for qa in paragraph["qas"]]
    return lines + HAND_BUILT


@pytest.mark.parametrize("casing", ["uncased", "cased"])
def test_our_tokenizer_gives_the_ids_of_tokenizers_bert_tokenizer_on_held_out_text(
    vocabs, corpus, casing
):
    lower = casing == "uncased"
    lines = held_out_lines(corpus[1])
    reference = tokenizers.BertWordPieceTokenizer(str(vocabs[casing]), lowercase=lower)
    expected = [e.ids for e in reference.encode_batch(lines, add_special_tokens=False)]
    ours = BertTokenizer(vocabs[casing], do_lower_case=lower)
    got = [ours.convert_tokens_to_ids(ours.tokenize(line)) for line in lines]
    for line, want, have in zip(lines, expected, got, strict=True):
        assert have == want, line
    ids = [i for row in got for i in row]
    assert len(lines) > 2500 and len(ids) > 100_000
    unk = ours.vocab["[UNK]"]
    assert ids.count(unk) < 0.01 * len(ids)  # the vocabulary fits text it was not trained on
    continuation = {i for i, t in ours.ids_to_tokens.items() if t.startswith("##")}
    assert len(continuation & set(ids)) > 500  # words were cut into pieces, not just looked up
    assert len(ours.tokenize("中文")) == 2  # ideographs split one by one
    assert ours.tokenize("con\x07trol") == ours.tokenize("control")


def test_layout_special_tokens_first_then_characters_then_pieces(vocabs):
    for casing, path in vocabs.items():
        tokens = path.read_text(encoding="utf-8").split("\n")
        assert tokens[-1] == ""  # every line ends with a line feed
        tokens.pop()
        assert len(tokens) == VOCAB_SIZE and list(load_vocab(path)) == tokens
        assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        assert not any(t.startswith("[unused") for t in tokens)
        pieces = tokens[5:]
        n = sum(1 for t in pieces if t.startswith("##") and len(t) == 3)
        continuation, characters = pieces[:n], pieces[n:]
        assert continuation == sorted(continuation) and all(len(t) == 3 for t in continuation)
        plain = [t for t in characters if len(t) == 1]
        assert characters[: len(plain)] == sorted(plain)  # the alphabet, then learned pieces
        assert {t[2:] for t in continuation} <= set(plain)
        assert vocab_casing(tokens) == casing
        assert ("the" in tokens) and (("The" in tokens) is (casing == "cased"))


def test_the_same_text_and_flags_give_the_same_file(vocabs, corpus, tmp_path):
    """tokenizers' trainer alone numbers the ##x characters in a hash table's order, which
    changes between runs (and with it the ids and the last tokens learned)."""
    again = tmp_path / "again.txt"
    args = ["--input_file", str(corpus[0]), "--output_file", str(again)]
    assert train(*args, "--vocab_size", str(VOCAB_SIZE)) == 0
    assert again.read_bytes() == vocabs["uncased"].read_bytes()


def error_line(capsys) -> str:
    """The one `error:` line a failed in-process run printed."""
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_paths_are_one_line_before_any_text_is_read(corpus, tmp_path, capsys):
    out = tmp_path / "vocab.txt"
    size = ["--vocab_size", "100"]
    cases = [
        (tmp_path, f"--input_file {tmp_path}: is a folder, expected a file"),
        (tmp_path / "none.txt", f"--input_file {tmp_path / 'none.txt'}: no such file"),
        ("/dev/null", "--input_file /dev/null: not a regular file"),
    ]
    for path, message in cases:
        assert (
            train("--input_file", str(corpus[0]), str(path), "--output_file", str(out), *size) == 2
        )
        assert message in error_line(capsys)
    assert train("--input_file", str(corpus[0]), "--output_file", str(corpus[0]), *size) == 2
    assert "writing it would overwrite an input" in error_line(capsys)
    assert train("--input_file", str(corpus[0]), "--output_file", str(tmp_path), *size) == 2
    assert f"--output_file {tmp_path}: is a folder" in error_line(capsys)
    config = tmp_path / "config.json"
    config.write_text("{}")
    args = ["--input_file", str(corpus[0]), "--output_file", str(out), *size]
    assert train(*args, "--config_file", str(config)) == 1
    assert str(config) in error_line(capsys)
    assert not out.exists() and list(tmp_path.iterdir()) == [config]


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "must be a positive integer"),
        ("5", "must be between 6 (the 5 special tokens and some text) and 1,000,000"),
        ("1000001", "and 1,000,000, got '1000001'"),
        ("3e3", "must be an integer"),
    ],
)
def test_vocab_size_out_of_bounds_is_refused_while_parsing(value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        train_vocab.parse_args(["--input_file=x", "--output_file=y", f"--vocab_size={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("data.train_vocab: error: argument --vocab_size: ") and message in err


def test_a_vocab_size_below_the_alphabet_is_refused_with_the_minimum(corpus, tmp_path, capsys):
    out, text = tmp_path / "vocab.txt", tmp_path / "text.txt"
    text.write_text("\n".join(corpus[0].read_text("utf-8").splitlines()[:300]), "utf-8")
    args = ["--input_file", str(text), "--output_file", str(out)]
    assert train(*args, "--vocab_size", "100") == 2
    line = error_line(capsys)
    assert "--vocab_size 100 cannot hold the 5 special tokens and the" in line
    minimum = int(line.rsplit("use at least ", 1)[1])
    assert not out.exists()
    assert train(*args, "--vocab_size", str(minimum)) == 0
    tokens = list(load_vocab(out))
    assert len(tokens) == minimum and all(len(t) == 1 or t.startswith("##") for t in tokens[5:])


def test_text_problems_name_the_file(tmp_path, capsys, caplog):
    out, empty, blank = tmp_path / "v.txt", tmp_path / "empty.txt", tmp_path / "blank.txt"
    empty.write_text("")
    blank.write_text("\n \n\t\n\n")
    assert (
        train("--input_file", str(empty), str(blank), "--output_file", str(out), "--vocab_size=50")
        == 1
    )
    assert f"{empty}, {blank}: no text (empty or blank lines)" in error_line(capsys)
    control = tmp_path / "control.txt"
    control.write_text("\x01\x02\n\u200b\n")
    assert train("--input_file", str(control), "--output_file", str(out), "--vocab_size=50") == 1
    assert f"{control}: no text left after cleaning" in error_line(capsys)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("good line\ncaf\u00e9\n".encode("latin-1"))
    assert train("--input_file", str(latin1), "--output_file", str(out), "--vocab_size=50") == 1
    assert f"{latin1}:2: not valid UTF-8 (byte 0xe9 at column 4)" in error_line(capsys)
    assert not out.exists()
    text = tmp_path / "text.txt"
    text.write_text("some words here .\nand more words there .\n")
    with caplog.at_level(logging.WARNING):
        assert (
            train(
                "--input_file", str(empty), str(text), "--output_file", str(out), "--vocab_size=50"
            )
            == 0
        )
    assert f"no text in {empty} (empty or blank lines); skipped" in caplog.text
    assert load_vocab(out)["[MASK]"] == 4


def test_missing_tokenizers_is_one_line(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    out = tmp_path / "v.txt"
    assert train("--input_file", str(corpus[0]), "--output_file", str(out), "--vocab_size=50") == 1
    assert "needs the tokenizers package (pip install tokenizers)" in error_line(capsys)


def test_small_text_and_config_mismatch_are_warned_about(tmp_path, caplog, capsys):
    text = tmp_path / "small.txt"
    text.write_text("the cat sat on the mat .\nthe cat ate the rat .\n\nthe end .\n")
    config = tmp_path / "config.json"
    config.write_text(TINY_CONFIG.read_text())  # vocab_size 30522
    out = tmp_path / "v.txt"
    args = ["--input_file", str(text), "--output_file", str(out), "--config_file", str(config)]
    with caplog.at_level(logging.WARNING):
        assert train(*args, "--vocab_size=1000") == 0
    tokens = len(load_vocab(out))
    assert 5 < tokens < 1000
    assert f"the text gave {tokens} tokens, fewer than --vocab_size 1000" in caplog.text
    assert (
        f'--config_file {config} has "vocab_size": 30522 but the vocabulary holds {tokens} tokens '
        f'({30522 - tokens} embedding rows would never be used); set "vocab_size": {tokens}'
    ) in caplog.text
    assert f'the model config needs "vocab_size": {tokens}' in capsys.readouterr().out
    config.write_text(json.dumps(json.loads(TINY_CONFIG.read_text()) | {"vocab_size": tokens}))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert train(*args, f"--vocab_size={tokens}") == 0
    assert caplog.text == ""


def test_config_mismatch_says_what_breaks():
    config = BertConfig.from_json_file(TINY_CONFIG).replace(vocab_size=2990)  # 2992 rows
    assert "exports trim the embedding" in train_vocab.config_mismatch(config, "c.json", 2992)
    message = train_vocab.config_mismatch(config, "c.json", 3001)
    assert "the scripts refuse" in message and "pads its embedding to 3008 rows" in message
    assert train_vocab.config_mismatch(config, "c.json", 2990) is None


def test_a_vocabulary_the_reader_would_refuse_is_never_written(tmp_path):
    out = tmp_path / "v.txt"
    with pytest.raises(VocabError, match=r"lists the token 'a' twice, on lines 6 and 7"):
        train_vocab.write_vocabulary(out, [*train_vocab.SPECIAL_TOKENS, "a", "a"])
    with pytest.raises(train_vocab.VocabTrainingError, match=r"token ' b' \(line 7\) would not"):
        train_vocab.write_vocabulary(out, [*train_vocab.SPECIAL_TOKENS, "a", " b"])
    with pytest.raises(train_vocab.VocabTrainingError, match=r"token 'c\\nd' \(line 7\)"):
        train_vocab.write_vocabulary(out, [*train_vocab.SPECIAL_TOKENS, "a", "c\nd"])
    assert list(tmp_path.iterdir()) == []


def squad_subset(folder: Path) -> tuple[Path, Path]:
    """Train and dev files of one article each of the bundled SQuAD v1.1 sample (17 training
    questions; 25 dev questions over 10 paragraphs)."""
    files = []
    for name, article in (("train", 0), ("dev", -1)):
        data = json.loads((SAMPLE_SQUAD / "v1.1" / f"{name}-v1.1.json").read_text("utf-8"))
        data["data"] = [data["data"][article]]
        if name == "train":
            data["data"][0]["paragraphs"] = data["data"][0]["paragraphs"][:2]
        files.append(folder / f"{name}.json")
        files[-1].write_text(json.dumps(data), encoding="utf-8")
    return files[0], files[1]


def test_the_whole_chain_runs_with_the_new_vocabulary(vocabs, corpus, tmp_path):
    """Shards, pre-training, SQuAD and GLUE fine-tuning with the trained vocabulary and a model
    config of its size, in this process."""
    import create_pretraining_data
    import run_glue
    import run_squad
    from data import verify

    vocab = vocabs["uncased"]
    config = tmp_path / "config.json"
    config.write_text(json.dumps(json.loads(TINY_CONFIG.read_text()) | {"vocab_size": VOCAB_SIZE}))
    text = tmp_path / "text.txt"  # a few held-out documents
    text.write_text("\n\n".join(corpus[1].read_text("utf-8").split("\n\n")[:4]), "utf-8")
    shard = tmp_path / "shards" / "sample_training_0.hdf5"
    common = [f"--vocab_file={vocab}", f"--config_file={config}"]
    status = create_pretraining_data.main(
        [
            *common,
            f"--input_file={text}",
            f"--output_file={shard}",
            "--max_seq_length=64",
            "--max_predictions_per_seq=10",
            "--dupe_factor=1",
            "--disable_progress_bar",
        ]
    )
    assert status == 0
    with h5py.File(shard, "r") as f:
        ids = f["input_ids"][:]
        assert len(ids) > 16 and ids.max() < VOCAB_SIZE and (ids[:, 0] == 2).all()  # [CLS]: 2
        assert (ids == 0).any() and f["masked_lm_ids"][:].max() < VOCAB_SIZE  # [PAD]: 0
    checks = ["--max_seq_length=64", "--max_predictions_per_seq=10", *common]
    assert verify.main([str(shard.parent), *checks]) == 0
    pretrained = tmp_path / "pretrain"
    status = pretrain_in_process(
        shard.parent,
        pretrained,
        config,
        tmp_path / "pretrain.json",
        f"--vocab_file={vocab}",
        "--train_batch_size=8",
        "--max_seq_length=64",
        "--max_predictions_per_seq=10",
        "--max_steps=2",
        "--num_steps_per_checkpoint=2",
        "--learning_rate=1e-3",
        "--dynamic_masking",
    )
    assert status == 0
    checkpoint = pretrained / "ckpt_2.pt"
    assert checkpoint.is_file()
    tuned = [*common, "--do_lower_case", f"--init_checkpoint={checkpoint}", "--max_steps=2"]
    squad_train, squad_dev = squad_subset(tmp_path)
    squad_out = tmp_path / "squad"
    status = run_squad.main(
        [
            *tuned,
            "--do_train",
            f"--train_file={squad_train}",
            "--train_batch_size=8",
            "--do_predict",
            "--do_eval",
            f"--predict_file={squad_dev}",
            "--max_seq_length=128",
            "--doc_stride=64",
            f"--output_dir={squad_out}",
            f"--json-summary={squad_out / 'log.json'}",
            "--skip_cache",
        ]
    )
    assert status == 0
    predictions = json.loads((squad_out / "predictions.json").read_text())
    dev = json.loads(squad_dev.read_text())["data"]
    questions = {qa["id"] for article in dev for p in article["paragraphs"] for qa in p["qas"]}
    assert set(predictions) == questions and all(isinstance(a, str) for a in predictions.values())
    summary = {
        k: v
        for e in read_dllogger_file(squad_out / "log.json")
        if e.get("step") == []
        for k, v in e["data"].items()
    }
    official = official_squad_v1_scores(squad_dev, predictions)
    assert summary["exact_match"] == pytest.approx(official["exact_match"], abs=1e-9)
    assert summary["F1"] == pytest.approx(official["f1"], abs=1e-9)
    glue_out = tmp_path / "glue"
    status = run_glue.main(
        [
            *tuned,
            "--task_name=mrpc",
            f"--data_dir={SAMPLE_MRPC}",
            "--do_train",
            "--do_eval",
            "--train_batch_size=16",
            f"--output_dir={glue_out}",
            f"--json-summary={glue_out / 'log.json'}",
        ]
    )
    assert status == 0
    results = json.loads((glue_out / "results.txt").read_text())
    assert results["global_step"] == 2
    expected = mrpc_dev_scores(glue_out / "pytorch_model.bin", config, vocab, SAMPLE_MRPC)
    assert results["acc"] == pytest.approx(expected["acc"], abs=1e-9)
    assert results["f1"] == pytest.approx(expected["f1"], abs=1e-9)
    assert results["eval:loss"] == pytest.approx(expected["eval:loss"], rel=1e-5)
