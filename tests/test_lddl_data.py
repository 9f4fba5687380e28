"""lddl_data.py: LDDL parquet shards (NVIDIA HEAD's data) read without the lddl package.

The same instances, made by create_pretraining_data.py from the bundled sample, are written both
as NVIDIA HDF5 shards and as LDDL parquet files (by `write_lddl`, which follows LDDL's writer:
preprocess_bert_pretrain's columns and types, balance_dask_output's file names and
.num_samples.json), and the two loaders must give the same batches."""

from __future__ import annotations

import collections
import io
import itertools
import json
import logging
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

import lddl_data
from data import verify
from logger import read_dllogger_file
from pretraining_data import (
    DynamicMasking,
    PretrainingDataLoader,
    ShardChecks,
    ShardError,
    read_shard,
    training_files,
)
from pretraining_instances import InstanceOptions, ShardJob, create_shard
from tests.support import (
    REPO_ROOT,
    TINY_CONFIG,
    UNCASED_VOCAB,
    pretrain_in_process,
    whole_words,
)
from tokenization import load_vocab
from training import trim_padding

SEQ, PRED = 64, 10
SAMPLE = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"


@pytest.fixture(scope="module")
def hdf5_dir(tmp_path_factory):
    """Three HDF5 shards of create_pretraining_data instances from the bundled sample."""
    folder = tmp_path_factory.mktemp("hdf5")
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:600]
    options = InstanceOptions(max_seq_length=SEQ, max_predictions_per_seq=PRED, dupe_factor=1)
    for index in range(3):
        text = folder / f"sample_{index}.txt"
        text.write_text("\n".join(lines[index * 200 : (index + 1) * 200]) + "\n", encoding="utf-8")
        output = folder / f"sample_training_{index}.hdf5"
        create_shard(ShardJob((text,), output, UNCASED_VOCAB, True, options))
        text.unlink()
    return folder


def _save_array(array: np.ndarray) -> bytes:
    memory = io.BytesIO()
    np.save(memory, array)
    return memory.getvalue()


def lddl_rows(arrays: dict[str, np.ndarray], masked: bool = True) -> list[dict]:
    """HDF5 instances as LDDL samples: A and B as space-joined tokens, positions in the whole
    `[CLS] A [SEP] B [SEP]`; unmasked (original tokens, no mask columns) when `masked` is False."""
    tokens = list(load_vocab(UNCASED_VOCAB))
    rows = []
    for i in range(len(arrays["next_sentence_labels"])):
        length = int(arrays["input_mask"][i].sum())
        ids = arrays["input_ids"][i, :length].copy()
        count = int(np.cumprod(arrays["masked_lm_positions"][i] != 0).sum())
        positions = arrays["masked_lm_positions"][i, :count]
        labels = arrays["masked_lm_ids"][i, :count]
        if not masked:
            ids[positions] = labels
        len_a = int(np.argmax(arrays["segment_ids"][i, :length])) - 2
        row = {
            "A": " ".join(tokens[t] for t in ids[1 : 1 + len_a]),
            "B": " ".join(tokens[t] for t in ids[2 + len_a : length - 1]),
            "is_random_next": bool(arrays["next_sentence_labels"][i]),
            "num_tokens": length,
        }
        if masked:
            row["masked_lm_positions"] = _save_array(positions.astype(np.uint16))
            row["masked_lm_labels"] = " ".join(tokens[t] for t in labels)
        rows.append(row)
    return rows


def write_lddl(
    hdf5_files,
    folder,
    masked: bool = True,
    bin_size: int | None = None,
    counts: bool = True,
    balance: int | None = None,
):
    """LDDL's files for the HDF5 shards, named as balance_dask_output names them: one parquet
    file per HDF5 shard (the same samples in the same order), or with `balance`, the samples of
    each bin spread over that many files whose counts differ by at most one (its output). Binned
    files (`bin_size`) hold one bin each and a bin_id column."""
    folder.mkdir(parents=True, exist_ok=True)
    schema = {
        "A": pa.string(),
        "B": pa.string(),
        "is_random_next": pa.bool_(),
        "num_tokens": pa.uint16(),
    }
    if masked:
        schema |= {"masked_lm_positions": pa.binary(), "masked_lm_labels": pa.string()}
    if bin_size:
        schema |= {"bin_id": pa.int64()}
    shards = [lddl_rows(read_shard(path), masked) for path in hdf5_files]
    bins: list[int | None] = [None]
    if bin_size:
        bins = list(range(SEQ // bin_size))
        shards = [
            [row | {"bin_id": min((row["num_tokens"] - 1) // bin_size, bins[-1])} for row in rows]
            for rows in shards
        ]
    num_samples = {}
    for b in bins:
        of_bin = [[row for row in rows if row.get("bin_id") == b] for rows in shards]
        if balance:
            pooled = [row for rows in of_bin for row in rows]
            of_bin = [list(part) for part in np.array_split(np.array(pooled, object), balance)]
        for index, members in enumerate(of_bin):
            name = f"shard-{index}.parquet" + ("" if b is None else f"_{b}")
            table = pa.Table.from_pylist(members, schema=pa.schema(list(schema.items())))
            pq.write_table(table, folder / name)
            num_samples[name] = len(members)
    if counts:
        (folder / ".num_samples.json").write_text(json.dumps(num_samples))
    return folder


def epoch(loader) -> list[list[torch.Tensor]]:
    batches = []
    for batch in loader:
        if loader.epoch > 0:
            break
        batches.append(batch)
    return batches


def loader_for(folder, micro_batch=8, **options):
    return lddl_data.parquet_loader(folder, micro_batch, UNCASED_VOCAB, **options)


def test_file_names_and_bins(tmp_path):
    for name in (
        "shard-0.parquet",
        "shard-0.parquet_0",
        "shard-1.parquet_1",
        "_metadata",
        ".num_samples.json",
        "part.0.parquet",
    ):
        (tmp_path / name).write_bytes(b"")
    files = lddl_data.parquet_files(tmp_path)
    assert [p.name for p in files] == [
        "part.0.parquet",
        "shard-0.parquet",
        "shard-0.parquet_0",
        "shard-1.parquet_1",
    ]
    assert [lddl_data.bin_id(p) for p in files] == [None, None, 0, 1]
    with pytest.raises(ShardError, match=r"binned .* and unbinned .* shards mixed"):
        lddl_data.files_by_bin(files)
    with pytest.raises(ShardError, match=r"bin ids \[0, 2\] do not run 0, 1"):
        lddl_data.files_by_bin([tmp_path / "a.parquet_0", tmp_path / "a.parquet_2"])
    assert lddl_data.is_parquet_folder(tmp_path) and not lddl_data.is_parquet_folder(tmp_path / "x")


@pytest.mark.parametrize(
    ("world_size", "sharding"), [(1, "files"), (2, "files"), (2, "interleaved")]
)
def test_parquet_batches_equal_the_hdf5_batches(hdf5_dir, tmp_path, world_size, sharding):
    files = training_files(hdf5_dir)
    parquet = write_lddl(files, tmp_path / "parquet")
    for rank in range(world_size):
        options = {"rank": rank, "world_size": world_size, "seed": 7, "sharding": sharding}
        hdf5 = epoch(PretrainingDataLoader(files, 8, **options))
        lddl = epoch(loader_for(parquet, **options))
        assert len(hdf5) == len(lddl) > 0
        for ours, theirs in zip(hdf5, lddl, strict=True):
            longest = int(ours[2].sum(1).max())
            assert theirs[0].shape[1] == -(-longest // 8) * 8  # LDDL: longest, rounded up to 8
            ours = trim_padding(ours, ours[2], 8)
            for a, b in zip(ours, theirs, strict=True):
                assert a.dtype == b.dtype == torch.int64
                assert torch.equal(a, b)


def test_unmasked_folders_are_masked_dynamically(hdf5_dir, tmp_path):
    files = training_files(hdf5_dir)
    parquet = write_lddl(files, tmp_path / "parquet", masked=False, counts=False)
    masking = DynamicMasking.from_vocab_file(UNCASED_VOCAB)
    hdf5 = epoch(PretrainingDataLoader(files, 8, seed=3, dynamic_masking=masking))
    lddl = epoch(loader_for(parquet, seed=3))  # masking chosen because the columns are absent
    chosen = 0
    for ours, theirs in zip(hdf5, lddl, strict=True):
        for a, b in zip(trim_padding(ours, ours[2], 8), theirs, strict=True):
            assert torch.equal(a, b)  # the same originals, re-masked with the same generator
        labels = theirs[3]
        assert (labels[:, 0] == -1).all()  # [CLS] is never predicted
        chosen += int((labels >= 0).sum())
    real = sum(int(b[2].sum()) for b in lddl)
    assert 0.10 < chosen / real < 0.17  # Bernoulli(0.15) over the non-special tokens


def test_whole_word_dynamic_masking_of_parquet_folders(hdf5_dir, tmp_path):
    files = training_files(hdf5_dir)
    parquet = write_lddl(files, tmp_path / "parquet", masked=False, counts=False)
    masking = DynamicMasking.from_vocab_file(UNCASED_VOCAB, whole_word=True)
    hdf5 = epoch(PretrainingDataLoader(files, 8, seed=3, dynamic_masking=masking))
    lddl = epoch(loader_for(parquet, seed=3, dynamic_masking=masking))
    tokens = list(load_vocab(UNCASED_VOCAB))
    pieces = 0
    for ours, theirs in zip(hdf5, lddl, strict=True):
        for a, b in zip(trim_padding(ours, ours[2], 8), theirs, strict=True):
            assert torch.equal(a, b)  # the same words drawn from the same originals
        input_ids, _, mask, labels, _ = theirs
        original = torch.where(labels >= 0, labels, input_ids)
        for row in range(len(original)):
            real = int(mask[row].sum())
            for word in whole_words([tokens[i] for i in original[row, :real]]):
                chosen = labels[row, word] >= 0
                assert chosen.all() or not chosen.any()
                pieces += int(chosen.all()) * (len(word) > 1)
    assert pieces > 10


@pytest.mark.slow
def test_run_pretraining_masks_whole_words_of_parquet_samples(hdf5_dir, tmp_path):
    parquet = write_lddl(training_files(hdf5_dir), tmp_path / "parquet", masked=False)
    first_loss = {}
    for name, flags in (("tokens", ()), ("words", ("--dynamic_masking", "--do_whole_word_mask"))):
        out = tmp_path / name
        code = pretrain_in_process(
            parquet,
            out,
            TINY_CONFIG,
            f"{out}/log.json",
            f"--vocab_file={UNCASED_VOCAB}",
            "--train_batch_size=8",
            "--max_steps=1",
            "--skip_checkpoint",
            "--precision=fp32",
            *flags,
        )
        assert code == 0
        first_loss[name] = next(
            event["data"]["average_loss"]
            for event in read_dllogger_file(out / "log.json")
            if event.get("type") == "LOG" and "average_loss" in event["data"]
        )
    assert first_loss["words"] != first_loss["tokens"]  # the same samples, other masks


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_binned_batches_come_from_one_bin_drawn_by_remaining_samples(
    hdf5_dir, tmp_path, world_size
):
    files = training_files(hdf5_dir)
    parquet = write_lddl(files, tmp_path / "binned", bin_size=16, balance=6)
    everything = collections.Counter(
        key for batch in epoch(PretrainingDataLoader(files, 8)) for key in sample_keys(batch)
    )
    ranks = [loader_for(parquet, rank=r, world_size=world_size, seed=11) for r in range(world_size)]
    assert all(isinstance(loader, lddl_data.BinnedParquetLoader) for loader in ranks)
    seen, plans = collections.Counter(), []
    for loader in ranks:
        plan = []
        for batch in epoch(loader):
            lengths = batch[2].sum(1)
            bins = set(torch.clamp((lengths - 1) // 16, max=3).tolist())
            assert len(bins) == 1  # one bin per batch
            plan.append(bins.pop())
            seen.update(sample_keys(batch))
        plans.append(plan)
    assert seen == everything  # every sample once, none on two ranks
    streams = ranks[0]._streams(0)  # the batches all ranks have of each bin
    lockstep = sum(min(len(ranks[0]._batch_sizes(s[b])) for s in streams) for b in range(4))
    assert lockstep >= 0.8 * len(plans[0])
    assert all(p[:lockstep] == plans[0][:lockstep] for p in plans)  # all ranks on the same bin
    if world_size == 1:  # LDDL's draw, re-derived: weights = samples left in each bin
        rng = random.Random(11 + 0)
        remaining = {b: 0 for b in range(4)}
        for batch in epoch(loader_for(parquet, seed=11)):
            lengths = batch[2].sum(1)
            remaining[min(int(lengths[0] - 1) // 16, 3)] += len(lengths)
        loader = loader_for(parquet, seed=11)
        for batch in epoch(loader):
            expected = rng.choices(range(4), weights=[remaining[b] for b in range(4)])[0]
            lengths = batch[2].sum(1)
            assert min(int(lengths[0] - 1) // 16, 3) == expected
            remaining[expected] -= len(lengths)


def sample_keys(batch) -> list[tuple]:
    """A sample's identity: its real token ids with the masked ones restored (unique here)."""
    ids = torch.where(batch[3] >= 0, batch[3], batch[0])
    return [tuple(row[: int(n)].tolist()) for row, n in zip(ids, batch[2].sum(1), strict=True)]


def test_binned_interleaved_ranks_split_the_single_stream(hdf5_dir, tmp_path):
    parquet = write_lddl(training_files(hdf5_dir), tmp_path / "binned", bin_size=16)
    single = [sample_keys(b) for b in itertools.islice(iter(loader_for(parquet, seed=2)), 20)]
    ranks = [
        [
            sample_keys(b)
            for b in itertools.islice(
                iter(loader_for(parquet, rank=r, world_size=2, seed=2, sharding="interleaved")), 10
            )
        ]
        for r in range(2)
    ]
    assert single[0::2] == ranks[0] and single[1::2] == ranks[1]


@pytest.mark.parametrize(
    ("bin_size", "sharding"), [(None, "files"), (16, "files"), (16, "interleaved")]
)
def test_resume_continues_at_the_exact_next_batch(hdf5_dir, tmp_path, bin_size, sharding):
    parquet = write_lddl(training_files(hdf5_dir), tmp_path / "p", bin_size=bin_size)
    options = {"rank": 1, "world_size": 2, "seed": 5, "sharding": sharding}
    expected = [sample_keys(b) for b in itertools.islice(iter(loader_for(parquet, **options)), 60)]
    for stop in (1, 9, 31, 50):  # 50: past the end of the first epoch
        loader = loader_for(parquet, **options)
        stream = iter(loader)
        head = [sample_keys(next(stream)) for _ in range(stop)]
        resumed = loader_for(parquet, position=loader.state(), **options)
        tail = [sample_keys(b) for b in itertools.islice(iter(resumed), 60 - stop)]
        assert head + tail == expected


def test_bad_folders_are_one_clear_error(hdf5_dir, tmp_path):
    files = training_files(hdf5_dir)
    good = write_lddl(files[:2], tmp_path / "good", counts=False)
    table = pq.read_table(good / "shard-1.parquet")

    def folder_with(name: str, broken) -> object:
        folder = tmp_path / name
        write_lddl(files[:2], folder, counts=False)
        broken(folder / "shard-1.parquet")
        return folder

    missing = folder_with("missing", lambda p: pq.write_table(table.drop_columns(["B"]), p))
    with pytest.raises(ShardError, match=r"shard-1\.parquet: column B is missing"):
        loader_for(missing)
    garbage = folder_with("garbage", lambda p: p.write_bytes(b"not parquet at all"))
    with pytest.raises(ShardError, match=r"shard-1\.parquet: not a readable parquet file"):
        loader_for(garbage)
    wrong_type = table.set_column(2, "is_random_next", pa.array([1] * len(table), pa.int64()))
    typed = folder_with("typed", lambda p: pq.write_table(wrong_type, p))
    with pytest.raises(ShardError, match="column is_random_next has type int64, expected bool"):
        loader_for(typed)
    dynamic = folder_with(
        "mixed",
        lambda p: pq.write_table(
            table.drop_columns(["masked_lm_positions", "masked_lm_labels"]), p
        ),
    )
    with pytest.raises(ShardError, match="static and dynamic masking are mixed"):
        loader_for(dynamic)

    # Cell errors show when the shard is read, with the file, the column and the row.
    cells = table.column("masked_lm_positions").to_pylist()
    bad_cells = table.set_column(4, "masked_lm_positions", pa.array([b"junk", *cells[1:]]))
    junk = folder_with("junk", lambda p: pq.write_table(bad_cells, p))
    with pytest.raises(ShardError, match=r"shard-1\.parquet: column masked_lm_positions, row 0"):
        epoch(loader_for(junk, prefetch=False))
    labels = table.column("masked_lm_labels").to_pylist()
    short = table.set_column(5, "masked_lm_labels", pa.array(["the " * 12, *labels[1:]]))
    few = folder_with("few", lambda p: pq.write_table(short, p))
    with pytest.raises(ShardError, match=r"column masked_lm_labels, row 0: 12 labels for"):
        epoch(loader_for(few, prefetch=False))
    with pytest.raises(ShardError, match=r"row \d+ has \d+ tokens, more than --max_seq_length 16"):
        epoch(loader_for(good, max_seq_length=16, prefetch=False))

    stale = write_lddl(files[:2], tmp_path / "stale")
    (stale / ".num_samples.json").write_text(
        json.dumps({"shard-0.parquet": 3, "shard-1.parquet": 3})
    )
    with pytest.raises(ShardError, match=r"samples, but .*\.num_samples\.json says 3"):
        epoch(loader_for(stale, prefetch=False))
    with pytest.raises(ShardError, match="pass --vocab_file"):
        lddl_data.parquet_loader(good, 8, None)
    with pytest.raises(ShardError, match="the folder is binned by LDDL already; drop --bin_size"):
        loader_for(write_lddl(files[:1], tmp_path / "b", bin_size=16), bin_size=16)


@pytest.mark.parametrize("rank", [0, 999])
def test_more_ranks_than_the_binned_folder_serves_are_refused_up_front(hdf5_dir, tmp_path, rank):
    parquet = write_lddl(training_files(hdf5_dir)[:1], tmp_path / "binned", bin_size=16)
    samples = sum(json.loads((parquet / ".num_samples.json").read_text()).values())
    options = {"rank": rank, "world_size": 1000, "seed": 1}
    with pytest.raises(ShardError) as error:
        loader_for(parquet, **options)
    assert str(error.value).startswith(f"{samples} samples in 4 file(s) make ")
    assert "shard pieces per epoch for 1000 ranks (micro-batch 8, --data_sharding files)" in str(
        error.value
    )
    with pytest.raises(ShardError, match=r"micro-batches of 8 per epoch for 1000 ranks"):
        loader_for(parquet, sharding="interleaved", **options)


def test_parquet_shards_mostly_unk_are_warned_about_once(hdf5_dir, tmp_path, caplog):
    folder = write_lddl(training_files(hdf5_dir)[:2], tmp_path / "p")
    checks = ShardChecks.for_run(UNCASED_VOCAB, 30522)
    with caplog.at_level(logging.WARNING):
        epoch(loader_for(folder, checks=checks, prefetch=False))
    assert caplog.text == ""
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path)
        cells = table.column("A").to_pylist()
        unknown = [" ".join("[UNK]" for _ in cell.split()) for cell in cells]  # as many tokens
        pq.write_table(table.set_column(0, "A", pa.array(unknown)), path)
    with caplog.at_level(logging.WARNING):
        epoch(loader_for(folder, checks=ShardChecks.for_run(UNCASED_VOCAB, 30522), prefetch=False))
    assert caplog.text.count("WARNING") == 1 and "% of the tokens are [UNK]" in caplog.text
    assert f"another vocabulary or casing than {UNCASED_VOCAB}'s" in caplog.text
    with pytest.raises(ShardError, match=r"has 30522 tokens, more than the model's 512"):
        loader_for(folder, checks=ShardChecks(vocab_size=512))


def test_verify_checks_parquet_folders(hdf5_dir, tmp_path, capsys):
    parquet = write_lddl(training_files(hdf5_dir), tmp_path / "parquet", bin_size=16)
    argv = [str(parquet), "--vocab_file", str(UNCASED_VOCAB), "--max_seq_length", str(SEQ)]
    assert verify.main(argv) == 0
    assert "LDDL parquet shards" in capsys.readouterr().out
    table = pq.read_table(parquet / "shard-0.parquet_1")
    pq.write_table(table.drop_columns(["A"]), parquet / "shard-0.parquet_1")
    source = next(p for p in sorted(parquet.glob("*.parquet_2")) if pq.read_metadata(p).num_rows)
    pq.write_table(pq.read_table(source), parquet / f"{source.stem}.parquet_3")  # in a wrong bin
    assert verify.main(argv) == 1
    problems = capsys.readouterr().err.splitlines()
    assert any("shard-0.parquet_1: column A is missing" in line for line in problems)
    assert any(f"{source.stem}.parquet_3: column bin_id is not 3" in line for line in problems)
    assert any("are not 49 to 64 tokens long (bin 3 of 4)" in line for line in problems)
    assert any(".num_samples.json says" in line for line in problems)
    assert verify.main([str(parquet)]) == 1
    assert "pass --vocab_file" in capsys.readouterr().err


@pytest.mark.slow
def test_run_pretraining_trains_on_parquet_like_on_hdf5(hdf5_dir, tmp_path):
    parquet = write_lddl(training_files(hdf5_dir), tmp_path / "pretrain" / "phase1" / "parquet")
    losses = {}
    for name, folder in (("hdf5", hdf5_dir), ("parquet", parquet)):
        out = tmp_path / name
        code = pretrain_in_process(
            folder,
            out,
            TINY_CONFIG,
            f"{out}/log.json",
            f"--vocab_file={UNCASED_VOCAB}",
            "--train_batch_size=8",
            "--max_steps=2",
            "--skip_checkpoint",
            "--precision=fp32",
        )
        assert code == 0
        losses[name] = [
            event["data"]["average_loss"]
            for event in read_dllogger_file(out / "log.json")
            if event.get("type") == "LOG" and "average_loss" in event["data"]
        ]
    assert len(losses["hdf5"]) == 2 and losses["parquet"] == losses["hdf5"]


def test_a_folder_of_parquet_files_without_rows_is_refused(hdf5_dir, tmp_path, capsys):
    """Files with the columns and no rows: nothing to train on, evaluate or verify. One empty
    file among others is normal (a bin of one shard can be empty) and passes."""
    parquet = write_lddl(training_files(hdf5_dir), tmp_path / "parquet", bin_size=16)
    lddl_data.check_has_samples(parquet, "--input_dir")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in sorted(parquet.glob("shard-*"))[:2]:
        pq.write_table(pq.read_table(path).slice(0, 0), empty / path.name)
    with pytest.raises(ShardError, match=rf"--eval_dir {empty}: no usable samples \(its 2 parq"):
        lddl_data.check_has_samples(empty, "--eval_dir")
    assert verify.main([str(empty), "--vocab_file", str(UNCASED_VOCAB)]) == 1
    assert f"{empty}: no usable samples" in capsys.readouterr().err


def test_wrong_content_in_valid_parquet_files_is_refused_naming_file_column_and_row(
    hdf5_dir, tmp_path
):
    files = training_files(hdf5_dir)
    table = pq.read_table(
        write_lddl(files[:2], tmp_path / "good", counts=False) / "shard-1.parquet"
    )

    def folder_with(name: str, changed) -> object:
        folder = tmp_path / name
        write_lddl(files[:2], folder, counts=False)
        pq.write_table(changed, folder / "shard-1.parquet")
        return folder

    cells = table.column("masked_lm_positions").to_pylist()
    first = np.lib.format.read_array(io.BytesIO(cells[2]))
    twice = np.sort(np.append(first[:-1], first[0])).astype(np.uint16)  # one position twice
    index = table.schema.get_field_index("masked_lm_positions")
    repeated = table.set_column(
        index, "masked_lm_positions", pa.array([*cells[:2], _save_array(twice), *cells[3:]])
    )
    with pytest.raises(
        ShardError,
        match=rf"shard-1\.parquet: column masked_lm_positions, row 2: position {first[0]} is "
        "masked twice",
    ):
        epoch(loader_for(folder_with("repeated", repeated), prefetch=False))
    tokens = table.column("num_tokens").to_numpy().astype(np.float64)
    index = table.schema.get_field_index("num_tokens")
    floats = table.set_column(index, "num_tokens", pa.array(tokens))
    with pytest.raises(ShardError, match="column num_tokens has type double, expected integers"):
        loader_for(folder_with("floats", floats))
