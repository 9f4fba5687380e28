"""create_pretraining_data.py: equality with a plain transcription of Google's algorithm, the
statistics of the instances on the bundled sample corpus, NVIDIA's shard layout, bad input."""

from __future__ import annotations

import collections
import random
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import create_pretraining_data
import pretraining_instances as cpd  # the library create_pretraining_data.py runs
from fileio import sha256_file
from output_lock import LOCK_NAME
from pretraining_data import PretrainingShard, masked_lm_labels
from tests.support import (
    CASED_VOCAB,
    REPO_ROOT,
    UNCASED_VOCAB,
    plant,
    run_main,
    write_shard_file,
)
from tokenization import BertTokenizer

SAMPLE_CORPUS = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"


# ----------------------------------------------------------------------------- reference


def nvidia_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng):
    """NVIDIA's create_masked_lm_predictions (Google's without whole-word masking), literally."""
    cand_indexes = [k for k, t in enumerate(tokens) if t not in ("[CLS]", "[SEP]")]
    rng.shuffle(cand_indexes)
    output_tokens = list(tokens)
    num_to_predict = min(
        max_predictions_per_seq,
        max(1, round(len(tokens) * masked_lm_prob)),
    )
    masked_lms = []
    covered = set()
    for index in cand_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        if index in covered:
            continue
        covered.add(index)
        if rng.random() < 0.8:
            masked_token = "[MASK]"
        elif rng.random() < 0.5:
            masked_token = tokens[index]
        else:
            masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
        output_tokens[index] = masked_token
        masked_lms.append((index, tokens[index]))
    masked_lms.sort(key=lambda x: x[0])
    return output_tokens, masked_lms


def google_masked_lm_predictions(do_whole_word_mask):
    """Google's create_masked_lm_predictions with its `do_whole_word_mask` flag, literally."""

    def predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng):
        cand_indexes = []
        for i, token in enumerate(tokens):
            if token == "[CLS]" or token == "[SEP]":
                continue
            if do_whole_word_mask and len(cand_indexes) >= 1 and token.startswith("##"):
                cand_indexes[-1].append(i)
            else:
                cand_indexes.append([i])
        rng.shuffle(cand_indexes)
        output_tokens = list(tokens)
        num_to_predict = min(max_predictions_per_seq, max(1, round(len(tokens) * masked_lm_prob)))
        masked_lms = []
        covered_indexes = set()
        for index_set in cand_indexes:
            if len(masked_lms) >= num_to_predict:
                break
            if len(masked_lms) + len(index_set) > num_to_predict:
                continue
            is_any_index_covered = False
            for index in index_set:
                if index in covered_indexes:
                    is_any_index_covered = True
                    break
            if is_any_index_covered:
                continue
            for index in index_set:
                covered_indexes.add(index)
                if rng.random() < 0.8:
                    masked_token = "[MASK]"
                elif rng.random() < 0.5:
                    masked_token = tokens[index]
                else:
                    masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
                output_tokens[index] = masked_token
                masked_lms.append((index, tokens[index]))
        assert len(masked_lms) <= num_to_predict
        masked_lms.sort(key=lambda x: x[0])
        return output_tokens, masked_lms

    return predictions


def reference_instances(
    lines,
    tokenizer,
    max_seq_length,
    dupe_factor,
    short_seq_prob,
    masked_lm_prob,
    max_predictions_per_seq,
    seed,
    masking=nvidia_masked_lm_predictions,
):
    """Google's create_pretraining_data (with NVIDIA's same-document rule) transcribed
    literally, on token strings, and written as NVIDIA's write_instance_to_example_file does;
    `masking` is NVIDIA's create_masked_lm_predictions or Google's."""
    rng = random.Random(seed)
    all_documents = [[]]
    for line in lines:
        line = line.strip()
        if not line:
            all_documents.append([])
        tokens = tokenizer.tokenize(line)
        if tokens:
            all_documents[-1].append(tokens)
    all_documents = [x for x in all_documents if x]
    rng.shuffle(all_documents)
    vocab_words = list(tokenizer.vocab.keys())
    instances = []
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            document = all_documents[document_index]
            max_num_tokens = max_seq_length - 3
            target_seq_length = max_num_tokens
            if rng.random() < short_seq_prob:
                target_seq_length = rng.randint(2, max_num_tokens)
            current_chunk, current_length, i = [], 0, 0
            while i < len(document):
                segment = document[i]
                current_chunk.append(segment)
                current_length += len(segment)
                if i == len(document) - 1 or current_length >= target_seq_length:
                    if current_chunk:
                        a_end = 1
                        if len(current_chunk) >= 2:
                            a_end = rng.randint(1, len(current_chunk) - 1)
                        tokens_a = []
                        for j in range(a_end):
                            tokens_a.extend(current_chunk[j])
                        tokens_b = []
                        if len(current_chunk) == 1 or rng.random() < 0.5:
                            is_random_next = True
                            target_b_length = target_seq_length - len(tokens_a)
                            for _ in range(10):
                                random_document_index = rng.randint(0, len(all_documents) - 1)
                                if random_document_index != document_index:
                                    break
                            if random_document_index == document_index:
                                is_random_next = False
                            random_document = all_documents[random_document_index]
                            random_start = rng.randint(0, len(random_document) - 1)
                            for j in range(random_start, len(random_document)):
                                tokens_b.extend(random_document[j])
                                if len(tokens_b) >= target_b_length:
                                    break
                            i -= len(current_chunk) - a_end
                        else:
                            is_random_next = False
                            for j in range(a_end, len(current_chunk)):
                                tokens_b.extend(current_chunk[j])
                        while len(tokens_a) + len(tokens_b) > max_num_tokens:
                            trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
                            if rng.random() < 0.5:
                                del trunc[0]
                            else:
                                trunc.pop()
                        tokens = ["[CLS]", *tokens_a, "[SEP]", *tokens_b, "[SEP]"]
                        segment_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
                        output_tokens, masked_lms = masking(
                            tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, rng
                        )
                        instances.append(
                            (
                                output_tokens,
                                segment_ids,
                                is_random_next,
                                [p for p, _ in masked_lms],
                                [label for _, label in masked_lms],
                            )
                        )
                    current_chunk, current_length = [], 0
                i += 1
    rng.shuffle(instances)
    n, seq, pred = len(instances), max_seq_length, max_predictions_per_seq
    out = {
        "input_ids": np.zeros((n, seq), "int32"),
        "input_mask": np.zeros((n, seq), "int32"),
        "segment_ids": np.zeros((n, seq), "int32"),
        "masked_lm_positions": np.zeros((n, pred), "int32"),
        "masked_lm_ids": np.zeros((n, pred), "int32"),
        "next_sentence_labels": np.zeros(n, "int32"),
    }
    for row, (tokens, segments, is_random, positions, labels) in enumerate(instances):
        ids = tokenizer.convert_tokens_to_ids(tokens)
        out["input_ids"][row, : len(ids)] = ids
        out["input_mask"][row, : len(ids)] = 1
        out["segment_ids"][row, : len(segments)] = segments
        out["masked_lm_positions"][row, : len(positions)] = positions
        out["masked_lm_ids"][row, : len(labels)] = tokenizer.convert_tokens_to_ids(labels)
        out["next_sentence_labels"][row] = int(is_random)
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """A new interpreter, as users run it: for the tests of determinism across processes and of
    parallel worker processes."""
    return subprocess.run(
        [sys.executable, "create_pretraining_data.py", "--disable_progress_bar", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """main(argv) in this process: no interpreter start-up (about 1.5 s of importing torch)."""
    return run_main("create_pretraining_data", ["--disable_progress_bar", *args], capsys)


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as shard:
        return {key: shard[key][()] for key in shard}


@pytest.fixture(scope="module")
def sample_lines() -> list[str]:
    return SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def sample_shard(tmp_path_factory) -> dict[str, np.ndarray]:
    """The bundled corpus at the phase-1 shape, dupe factor 3 (about 7,400 instances)."""
    output = tmp_path_factory.mktemp("shard") / "sample.hdf5"
    result = run_cli(
        "--vocab_file",
        str(UNCASED_VOCAB),
        "--input_file",
        str(SAMPLE_CORPUS),
        "--output_file",
        str(output),
        "--dupe_factor",
        "3",
    )
    assert result.returncode == 0, result.stderr
    return read(output)


# ----------------------------------------------------------------------------- the algorithm


@pytest.mark.parametrize(
    ("seq", "pred", "short", "seed"), [(128, 20, 0.1, 12345), (64, 10, 0.5, 7), (512, 80, 0.1, 1)]
)
def test_identical_to_the_reference_algorithm(tmp_path, sample_lines, seq, pred, short, seed):
    lines = sample_lines[:1500]  # several documents, including a short one at the cut
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(UNCASED_VOCAB)
    expected = reference_instances(lines, tokenizer, seq, 2, short, 0.15, pred, seed)
    options = cpd.InstanceOptions(seq, 2, pred, 0.15, short, seed)
    job = cpd.ShardJob((tmp_path / "in.txt",), tmp_path / "out.hdf5", UNCASED_VOCAB, True, options)
    cpd.create_shard(job)
    ours = read(tmp_path / "out.hdf5")
    assert len(expected["input_ids"]) > 100
    for key, array in expected.items():
        np.testing.assert_array_equal(ours[key], array, err_msg=key)


@pytest.mark.parametrize("whole_word", [False, True], ids=["pieces", "whole-words"])
def test_max_predictions_per_seq_caps_the_masked_count(tmp_path, sample_lines, whole_word):
    """At masked_lm_prob 0.5, 128 tokens would get about 64 predictions: the cap of 20 decides
    (at NVIDIA's 0.15 it never binds: round(128 x 0.15) = 19), and the shard still equals the
    reference algorithm's."""
    lines = sample_lines[:400]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(UNCASED_VOCAB)
    masking = google_masked_lm_predictions(True) if whole_word else nvidia_masked_lm_predictions
    expected = reference_instances(lines, tokenizer, 128, 1, 0.1, 0.5, 20, 5, masking)
    options = cpd.InstanceOptions(128, 1, 20, 0.5, 0.1, 5, do_whole_word_mask=whole_word)
    job = cpd.ShardJob((tmp_path / "in.txt",), tmp_path / "out.hdf5", UNCASED_VOCAB, True, options)
    cpd.create_shard(job)
    ours = read(tmp_path / "out.hdf5")
    for key, array in expected.items():
        np.testing.assert_array_equal(ours[key], array, err_msg=key)
    counts = (ours["masked_lm_positions"] > 0).sum(axis=1)
    lengths = ours["input_mask"].sum(axis=1)
    assert counts.max() == 20 and (counts == 20).mean() > 0.5, np.bincount(counts)
    assert (lengths * 0.5 > 20).mean() > 0.5  # the probability alone would have asked for more


@pytest.mark.parametrize(
    ("vocab_file", "lower", "seq", "pred", "seed", "whole_word"),
    [
        (UNCASED_VOCAB, True, 128, 20, 12345, True),
        (UNCASED_VOCAB, True, 64, 10, 7, True),
        (CASED_VOCAB, False, 128, 20, 3, True),
        (UNCASED_VOCAB, True, 128, 20, 12345, False),  # Google's walk without the flag
    ],
    ids=["uncased-128-seed12345", "uncased-64-seed7", "cased-128-seed3", "flag-off"],
)
def test_whole_word_masking_identical_to_googles(
    tmp_path, sample_lines, vocab_file, lower, seq, pred, seed, whole_word
):
    lines = sample_lines[:1500]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file, do_lower_case=lower)
    masking = google_masked_lm_predictions(whole_word)
    expected = reference_instances(lines, tokenizer, seq, 2, 0.1, 0.15, pred, seed, masking)
    output = tmp_path / "out.hdf5"
    args = [
        *("--vocab_file", str(vocab_file), "--input_file", str(tmp_path / "in.txt")),
        *("--output_file", str(output), "--dupe_factor", "2", "--random_seed", str(seed)),
        *("--max_seq_length", str(seq), "--max_predictions_per_seq", str(pred)),
        *("--do_lower_case", str(int(lower)), "--disable_progress_bar"),
    ]
    assert create_pretraining_data.main(args + ["--do_whole_word_mask"] * whole_word) == 0
    ours = read(output)
    assert len(expected["input_ids"]) > 100
    for key, array in expected.items():
        np.testing.assert_array_equal(ours[key], array, err_msg=key)
    with h5py.File(output) as shard:
        assert bool(shard.attrs["do_whole_word_mask"]) is whole_word
    labels = tokenizer.convert_ids_to_tokens(ours["masked_lm_ids"][ours["masked_lm_positions"] > 0])
    pieces = sum(label.startswith("##") for label in labels)
    assert pieces > (100 if whole_word else 0)  # words of several pieces were masked


def test_whole_word_masking_masks_every_piece_of_a_word_within_the_cap():
    # [CLS] un ##believ ##able cat [SEP] ##s dog [SEP]; "##s" follows [SEP], which Google skips,
    # so it joins "cat": the words are {1, 2, 3}, {4, 6} and {7}.
    vocab = cpd.Vocabulary(1, 2, 3, list(range(5000, 5100)), frozenset({11, 12, 13}))
    tokens = np.array([1, 20, 11, 12, 21, 2, 13, 22, 2], dtype=np.int32)

    def masked_sets(masked_lm_prob: float, whole_word: bool) -> set[tuple[int, ...]]:
        options = cpd.InstanceOptions(masked_lm_prob=masked_lm_prob, do_whole_word_mask=whole_word)
        seen = set()
        for seed in range(200):
            masked = tokens.copy()
            positions, labels = cpd._mask_tokens(masked, options, vocab, random.Random(seed))
            assert positions == sorted(positions) and labels == tokens[positions].tolist()
            changed = np.flatnonzero(masked != tokens).tolist()
            assert set(changed) <= set(positions)
            assert all(masked[i] == 3 or masked[i] >= 5000 for i in changed)
            seen.add(tuple(positions))
        return seen

    # 9 tokens x 0.3: 3 predictions, filled by whole words only
    assert masked_sets(0.3, True) == {(1, 2, 3), (4, 6, 7)}
    # 2 predictions: the three-piece word never fits; a word drawn first may leave one unused
    assert masked_sets(0.2, True) == {(4, 6), (7,)}
    # without the flag, pieces are masked alone, always 3 of them
    plain = masked_sets(0.3, False)
    assert {len(p) for p in plain} == {3} and any(2 in p and 3 not in p for p in plain)


def test_same_document_rule_and_next_sentence_labels():
    """Documents of disjoint id ranges show where each B came from."""
    vocab = cpd.Vocabulary(cls_id=1, sep_id=2, mask_id=3, word_ids=list(range(5000, 6000)))
    documents = [
        [
            np.arange(100 * d + 10 * s + 1000, 100 * d + 10 * s + 1005, dtype=np.int32)
            for s in range(8)
        ]
        for d in range(6)
    ]
    options = cpd.InstanceOptions(max_seq_length=32, dupe_factor=40, masked_lm_prob=0.01)
    arrays = cpd.create_instances(documents, options, vocab, random.Random(3))
    doc_of_a, doc_of_b = [], []
    for ids, segments, mask in zip(
        arrays["input_ids"], arrays["segment_ids"], arrays["input_mask"], strict=True
    ):
        real = ids[mask == 1]
        seg = segments[mask == 1]
        a, b = real[1 : (seg == 0).sum() - 1], real[(seg == 0).sum() : -1]
        a, b = a[(a >= 1000) & (a < 5000)], b[(b >= 1000) & (b < 5000)]  # masked tokens aside
        doc_of_a.append((a // 100)[0] if len(a) else -1)
        doc_of_b.append((b // 100)[0] if len(b) else -1)
    labels = arrays["next_sentence_labels"]
    same = np.array(doc_of_a) == np.array(doc_of_b)
    assert np.all(same[labels == 0]) and not np.any(same[labels == 1])
    assert 0.4 < labels.mean() < 0.7

    single = cpd.create_instances(documents[:1], options, vocab, random.Random(3))
    assert single["next_sentence_labels"].sum() == 0  # only one document: never "random"


def test_instance_statistics_on_the_sample(sample_shard):
    ids, mask, segments = (
        sample_shard["input_ids"],
        sample_shard["input_mask"],
        sample_shard["segment_ids"],
    )
    positions, labels = sample_shard["masked_lm_positions"], sample_shard["masked_lm_ids"]
    tokenizer = BertTokenizer(UNCASED_VOCAB)
    cls_id, sep_id, mask_id = (tokenizer.vocab[t] for t in ("[CLS]", "[SEP]", "[MASK]"))
    lengths = mask.sum(1)
    assert len(ids) > 7000
    assert np.all(lengths <= 128) and np.all(lengths >= 5)
    # layout [CLS] A [SEP] B [SEP], zero padding, segment 0 then 1
    assert np.all(ids[:, 0] == cls_id)
    assert np.all(ids[np.arange(len(ids)), lengths - 1] == sep_id)
    assert np.all((ids == sep_id).sum(1) >= 2)
    assert np.all(ids[mask == 0] == 0) and np.all(segments[mask == 0] == 0)
    assert np.all(np.diff(mask.astype(int), axis=1) <= 0)  # ones, then zeros
    len_a = (segments == 0).sum(1) - (mask == 0).sum(1) - 2
    assert np.all(len_a >= 1) and np.all(ids[np.arange(len(ids)), len_a + 1] == sep_id)
    assert np.all(np.diff(segments.astype(int) * mask, axis=1)[mask[:, 1:] == 1] >= 0)

    counts = (positions != 0).sum(1)
    expected = np.minimum(20, np.maximum(1, np.round(lengths * 0.15)))
    np.testing.assert_array_equal(counts, expected)
    rate = counts.sum() / lengths.sum()
    assert abs(rate - 0.15) < 0.01, rate
    replaced, kept, randomised = 0, 0, 0
    for row in range(len(ids)):
        n = counts[row]
        pos, orig = positions[row, :n], labels[row, :n]
        assert np.all(np.diff(pos) > 0)  # sorted and unique
        assert np.all(positions[row, n:] == 0) and np.all(labels[row, n:] == 0)
        assert np.all(pos < lengths[row])
        assert not np.any(np.isin(orig, [cls_id, sep_id]))  # special tokens never masked
        now = ids[row, pos]
        replaced += (now == mask_id).sum()
        kept += (now == orig).sum()
        randomised += ((now != mask_id) & (now != orig)).sum()
    total = replaced + kept + randomised
    assert abs(replaced / total - 0.8) < 0.01
    assert abs(kept / total - 0.1) < 0.01  # a random word equal to the original counts as kept
    assert abs(randomised / total - 0.1) < 0.01
    nsp = sample_shard["next_sentence_labels"]
    assert set(np.unique(nsp)) == {0, 1} and 0.45 < nsp.mean() < 0.6


@pytest.mark.slow
def test_deterministic_by_seed(tmp_path, sample_shard):
    output = tmp_path / "again.hdf5"
    args = [
        "--vocab_file",
        str(UNCASED_VOCAB),
        "--input_file",
        str(SAMPLE_CORPUS),
        "--output_file",
        str(output),
        "--dupe_factor",
        "3",
    ]
    assert run_cli(*args).returncode == 0
    for key, array in read(output).items():
        np.testing.assert_array_equal(array, sample_shard[key], err_msg=key)
    assert run_cli(*args, "--random_seed", "1").returncode == 0
    assert not np.array_equal(read(output)["input_ids"], sample_shard["input_ids"])


# ----------------------------------------------------------------------------- files and options


def test_layout_is_nvidias_and_our_loader_reads_a_hand_written_shard(tmp_path, sample_shard):
    assert {k: (v.dtype.str[1:], v.ndim) for k, v in sample_shard.items()} == {
        "input_ids": ("i4", 2),
        "input_mask": ("i1", 2),
        "segment_ids": ("i1", 2),
        "masked_lm_positions": ("i4", 2),
        "masked_lm_ids": ("i4", 2),
        "next_sentence_labels": ("i1", 1),
    }
    # Written by hand exactly as NVIDIA's write_instance_to_example_file does (no attributes).
    path = tmp_path / "nvidia_training_0.hdf5"
    input_ids = np.zeros((2, 8), "int32")
    input_ids[0, :6] = [101, 103, 2003, 102, 103, 102]
    input_ids[1, :5] = [101, 7592, 102, 2088, 102]
    input_mask = (input_ids != 0).astype("int32")
    segment_ids = np.zeros((2, 8), "int32")
    segment_ids[0, 4:6] = 1
    segment_ids[1, 3:5] = 1
    positions = np.array([[1, 4, 0], [3, 0, 0]], "int32")
    lm_ids = np.array([[2023, 2001, 0], [2088, 0, 0]], "int32")
    arrays = {
        "input_ids": input_ids,
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "masked_lm_positions": positions,
        "masked_lm_ids": lm_ids,
        "next_sentence_labels": np.array([1, 0]),
    }
    nvidia_dtypes = {"input_ids": "i4", "input_mask": "i1", "segment_ids": "i1"}
    nvidia_dtypes |= {"masked_lm_positions": "i4", "masked_lm_ids": "i4"}
    nvidia_dtypes |= {"next_sentence_labels": "i1"}  # NVIDIA's, not read from shard_format
    write_shard_file(path, arrays, nvidia_dtypes, compression="gzip")
    shard = PretrainingShard(path)
    assert len(shard) == 2
    ids, segments, mask, labels, nsp = shard[0]
    assert ids.tolist() == input_ids[0].tolist() and segments.tolist() == segment_ids[0].tolist()
    assert mask.tolist() == input_mask[0].tolist() and nsp.item() == 1
    assert labels.tolist() == [-1, 2023, -1, -1, 2001, -1, -1, -1]
    assert shard[1][3].tolist() == [-1, -1, -1, 2088, -1, -1, -1, -1]
    assert all(t.dtype.is_floating_point is False and t.dtype.itemsize == 8 for t in shard[1])
    batch = shard.batch([1, 0])
    assert batch[3].tolist() == [shard[1][3].tolist(), labels.tolist()]


def test_masked_lm_labels_stop_at_the_first_zero():
    labels = masked_lm_labels(np.array([[2, 0, 5]]), np.array([[7, 8, 9]]), 6)
    assert labels.tolist() == [[-1, -1, 7, -1, -1, -1]]  # NVIDIA ignores what follows a 0


def test_lower_casing_can_be_turned_off(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("Paris Is Big .\nLondon Is Bigger .\n\nRome .\nOslo .\n")
    outputs = {}
    for flag in (["--do_lower_case", "0"], ["--no_lower_case"], ["--do_lower_case"]):
        output = tmp_path / f"{'_'.join(flag)}.hdf5"
        result = run_in_process(
            capsys,
            "--vocab_file",
            str(CASED_VOCAB),
            "--input_file",
            str(tmp_path / "in.txt"),
            "--output_file",
            str(output),
            "--dupe_factor",
            "1",
            *flag,
        )
        assert result.returncode == 0, result.stderr
        outputs[flag[-1]] = read(output)
    tokenizer = BertTokenizer(CASED_VOCAB, do_lower_case=False)
    cased_ids = set(tokenizer.convert_tokens_to_ids(["Paris", "London", "Rome", "Oslo"]))
    for name in ("0", "--no_lower_case"):
        seen = set(outputs[name]["input_ids"].ravel()) | set(outputs[name]["masked_lm_ids"].ravel())
        assert cased_ids <= seen
    lowered = set(outputs["--do_lower_case"]["input_ids"].ravel())
    assert not cased_ids & lowered


def test_fast_tokenizer_backend_gives_identical_shards(tmp_path, sample_shard, capsys):
    output = tmp_path / "fast.hdf5"
    result = run_in_process(
        capsys,
        "--vocab_file",
        str(UNCASED_VOCAB),
        "--input_file",
        str(SAMPLE_CORPUS),
        "--output_file",
        str(output),
        "--dupe_factor",
        "3",
        "--tokenizer_backend",
        "fast",
    )
    assert result.returncode == 0, result.stderr
    for key, array in read(output).items():
        np.testing.assert_array_equal(array, sample_shard[key], err_msg=key)


@pytest.mark.slow
def test_folder_input_in_parallel_processes(tmp_path, sample_lines):
    folder = tmp_path / "shards"
    folder.mkdir()
    documents = "\n".join(sample_lines[:3000]).split("\n\n")
    for i in range(3):
        (folder / f"part_training_{i}.txt").write_text("\n\n".join(documents[i::3]) + "\n")
    (folder / "notes.md").write_text("not a .txt file: ignored")
    base = ["--vocab_file", str(UNCASED_VOCAB), "--input_file", str(folder), "--dupe_factor", "1"]
    for processes in ("1", "2"):
        result = run_cli(
            *base, "--output_dir", str(tmp_path / f"out{processes}"), "--processes", processes
        )
        assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "out2").iterdir())
    assert names == [f"part_training_{i}.hdf5" for i in range(3)]
    for name in names:
        one, two = read(tmp_path / "out1" / name), read(tmp_path / "out2" / name)
        for key in one:
            np.testing.assert_array_equal(one[key], two[key])
    # A folder into a single file: the per-file shards concatenated in sorted file order.
    assert run_cli(*base, "--output_file", str(tmp_path / "all.hdf5")).returncode == 0
    merged = read(tmp_path / "all.hdf5")
    for key, array in merged.items():
        parts = [read(tmp_path / "out1" / name)[key] for name in names]
        np.testing.assert_array_equal(array, np.concatenate(parts), err_msg=key)
    with h5py.File(tmp_path / "all.hdf5") as shard:
        assert list(shard.attrs["input_files"]) == [f"part_training_{i}.txt" for i in range(3)]
        assert shard.attrs["vocab_sha256"] == sha256_file(UNCASED_VOCAB)


# ----------------------------------------------------------------------------- bad input


def one_line_error(result: subprocess.CompletedProcess, status: int = 1) -> str:
    assert result.returncode == status
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    def run_cli(*args: str) -> subprocess.CompletedProcess:
        return run_in_process(capsys, *args)

    good = tmp_path / "good.txt"
    good.write_text("One sentence .\nTwo sentences .\n")
    out = tmp_path / "out.hdf5"
    vocab = ["--vocab_file", str(UNCASED_VOCAB)]

    bad = tmp_path / "latin1.txt"
    bad.write_bytes("fine line\nsecond line caf\xe9\n".encode("latin-1"))
    line = one_line_error(run_cli(*vocab, "--input_file", str(bad), "--output_file", str(out)))
    assert f"{bad}:2: not valid UTF-8" in line

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    line = one_line_error(run_cli(*vocab, "--input_file", str(empty), "--output_file", str(out)))
    assert f"{empty}: no text found" in line

    line = one_line_error(
        run_cli(
            "--vocab_file",
            str(tmp_path / "nope"),
            "--input_file",
            str(good),
            "--output_file",
            str(out),
        ),
        2,
    )
    assert f"--vocab_file {tmp_path / 'nope'}: no such file" in line

    line = one_line_error(
        run_cli(
            *vocab, "--input_file", str(good), "--output_file", str(out), "--max_seq_length", "4"
        ),
        2,
    )
    assert "--max_seq_length 4 is too small" in line

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = blocker / "out.hdf5"  # its folder is a file: cannot be created
    line = one_line_error(
        run_cli(*vocab, "--input_file", str(good), "--output_file", str(target)), 2
    )
    assert f"--output_file {target}: {blocker} is a file, not a folder" in line

    line = one_line_error(
        run_cli(*vocab, "--input_file", str(tmp_path / "missing.txt"), "--output_file", str(out)), 2
    )
    assert "no such file or folder" in line
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))  # nothing half-written


def test_an_output_dir_another_run_holds_is_refused(tmp_path, capsys):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("One sentence .\nTwo sentences .\n")
    args = [
        "--vocab_file",
        str(UNCASED_VOCAB),
        "--input_file",
        str(tmp_path / "text"),
        "--output_dir",
        str(tmp_path / "out"),
        "--dupe_factor",
        "1",
        "--disable_progress_bar",
    ]
    plant(tmp_path / "out", pid=1, program="create_pretraining_data.py")  # PID 1 always runs
    assert create_pretraining_data.main(args) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "is in use by create_pretraining_data.py (pid 1 on" in errors[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LOCK_NAME]
    (tmp_path / "out" / LOCK_NAME).unlink()
    assert create_pretraining_data.main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.hdf5"]  # lock released


def test_an_interrupted_run_leaves_no_shard(tmp_path, monkeypatch):
    (tmp_path / "in.txt").write_text("A b c .\nD e f .\n\nG h .\nI j .\n")
    options = cpd.InstanceOptions(dupe_factor=1)
    job = cpd.ShardJob((tmp_path / "in.txt",), tmp_path / "out.hdf5", UNCASED_VOCAB, True, options)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cpd, "sha256_file", fail)  # dies after the instances, before commit
    with pytest.raises(KeyboardInterrupt):
        cpd.create_shard(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_counts_match_collections_counter(sample_shard):
    """Each instance's masked ids are tokens that occur in the text (no id is invented)."""
    tokenizer = BertTokenizer(UNCASED_VOCAB)
    corpus_ids = collections.Counter(
        tokenizer.convert_tokens_to_ids(tokenizer.tokenize(SAMPLE_CORPUS.read_text()))
    )
    masked = sample_shard["masked_lm_ids"][sample_shard["masked_lm_positions"] != 0]
    assert set(np.unique(masked)) <= set(corpus_ids)
