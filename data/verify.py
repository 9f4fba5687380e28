"""Verify pre-training shards before spending GPU hours on them (NVIDIA has no such check).

    python -m data.verify SHARD_DIR --max_seq_length 128 --max_predictions_per_seq 20 \\
        --vocab_file vocab/vocab --config_file bert_configs/large.json [--expected_shards 256]

Checks every `*.hdf5` file (or those named): NVIDIA's six datasets with their dtypes and shapes,
and the content in bounded-memory blocks: `[CLS]` first, mask of ones then zeros, zero padding,
segment ids 0 then 1, token ids inside the vocabulary, masked positions sorted, unique and
inside the sequence, rows of padding only (the rules training applies too, shared with
`pretraining_data.layout_problems`), datasets stored in other files (external links, virtual
datasets: not followed), next-sentence labels 0/1, our shards' vocabulary sha256 against
`--vocab_file`, and that vocabulary against `--config_file`. An LDDL parquet folder is checked as
`run_pretraining.py` reads it (`verify_parquet`; needs `--vocab_file`). Prints a summary
(shards, instances, tokens) and exits 1 with every problem found, one per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

import cli
import lddl_data
from fileio import sha256_file
from modeling import BertConfig
from pretraining_data import ShardError, data_elsewhere, layout_problems
from shard_format import SHARD_DTYPES, SHARD_NDIMS, VOCAB_SHA256
from tokenization import load_vocab

BLOCK_ROWS = 8192


@dataclasses.dataclass
class Expectations:
    """What the shards must match; None means 'not checked'."""

    max_seq_length: int | None = None
    max_predictions_per_seq: int | None = None
    vocab_file: Path | None = None
    config_file: Path | None = None
    expected_shards: int | None = None


@dataclasses.dataclass
class Report:
    shards: int = 0
    instances: int = 0
    tokens: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def shard_files(paths: Sequence[str | Path]) -> list[Path]:
    """The `.hdf5` files of the given folders and files, sorted."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.glob("*.hdf5")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such shard file or folder: {path}")
    return files


def _check_layout(path: Path, shard: h5py.File, expect: Expectations, problems: list[str]) -> int:
    """Keys, dtypes and shapes; returns the number of rows (0 when unusable)."""
    if elsewhere := data_elsewhere(shard):
        problems.append(f"{path}: {elsewhere}; not followed")
        return 0
    keys = set(shard.keys())
    missing, extra = sorted(set(SHARD_DTYPES) - keys), sorted(keys - set(SHARD_DTYPES))
    if missing:
        problems.append(f"{path}: missing dataset(s) {', '.join(missing)}")
        return 0
    if extra:
        problems.append(f"{path}: unexpected dataset(s) {', '.join(extra)}")
    groups = [key for key in SHARD_DTYPES if not isinstance(shard[key], h5py.Dataset)]
    if groups:
        problems.append(f"{path}: {groups[0]} is an HDF5 group, not a dataset")
        return 0
    rows = shard["next_sentence_labels"].shape[0]
    for key, dtype in SHARD_DTYPES.items():
        dataset = shard[key]
        if dataset.dtype != np.dtype(dtype):
            problems.append(f"{path}: {key} has dtype {dataset.dtype}, NVIDIA's layout is {dtype}")
        if dataset.shape[0] != rows or dataset.ndim != SHARD_NDIMS[key]:
            problems.append(f"{path}: {key} has shape {list(dataset.shape)} ({rows} instances)")
            return 0
    seq, pred = shard["input_ids"].shape[1], shard["masked_lm_positions"].shape[1]
    for key in ("input_mask", "segment_ids"):
        if shard[key].shape[1] != seq:
            problems.append(f"{path}: {key} width {shard[key].shape[1]} != input_ids width {seq}")
            return 0
    if shard["masked_lm_ids"].shape[1] != pred:
        problems.append(f"{path}: masked_lm_ids width differs from masked_lm_positions")
        return 0
    if expect.max_seq_length is not None and seq != expect.max_seq_length:
        problems.append(f"{path}: sequence length {seq}, expected {expect.max_seq_length}")
    if expect.max_predictions_per_seq is not None and pred != expect.max_predictions_per_seq:
        problems.append(
            f"{path}: max predictions {pred}, expected {expect.max_predictions_per_seq}"
        )
    if rows == 0:
        problems.append(f"{path}: holds no instances")
    return rows


def _check_block(
    start: int,
    block: dict[str, np.ndarray],
    ids: dict[str, int],
    vocab_size: int,
    found: dict[str, list[int]],
) -> int:
    """Content checks of rows [start, start + len); adds to `found` (problem -> [first, count])
    and returns the number of real tokens."""
    input_ids, mask = block["input_ids"].astype(np.int64), block["input_mask"].astype(np.int64)
    segments = block["segment_ids"].astype(np.int64)
    positions = block["masked_lm_positions"].astype(np.int64)
    lm_ids = block["masked_lm_ids"].astype(np.int64)
    lengths = mask.sum(1)
    rows = np.arange(len(input_ids))
    real = np.cumprod(positions != 0, axis=1).astype(bool)  # [N, P]: before the first 0

    def fail(what: str, bad: np.ndarray) -> None:
        if bad.any():
            entry = found.setdefault(what, [start + int(np.flatnonzero(bad)[0]), 0])
            entry[1] += int(bad.sum())

    fail("input_mask is not 0/1", ((mask != 0) & (mask != 1)).any(1))
    for problem, bad in layout_problems(input_ids, mask, positions):
        fail(problem, bad)
    fail("instance shorter than 5 tokens", lengths < 5)
    if ids:
        fail("first token is not [CLS]", input_ids[:, 0] != ids["[CLS]"])
        last = input_ids[rows, np.maximum(lengths - 1, 0)]
        fail("last real token is not [SEP]", last != ids["[SEP]"])
        special = np.isin(lm_ids, [ids["[CLS]"], ids["[SEP]"]]) & real
        fail("[CLS] or [SEP] was masked", special.any(1))
    fail("token id outside the vocabulary", ((input_ids < 0) | (input_ids >= vocab_size)).any(1))
    decreasing = (np.diff(segments, axis=1) < 0) & (mask[:, 1:] == 1)
    fail(
        "segment ids are not 0 then 1",
        ((segments < 0) | (segments > 1)).any(1)
        | decreasing.any(1)
        | ((segments == 1) & (mask == 0)).any(1),
    )
    counts = real.sum(1)
    fail("no masked position", counts == 0)
    fail("masked positions after the first 0 are not 0", ((positions != 0) & ~real).any(1))
    fail("masked ids after the last position are not 0", ((lm_ids != 0) & ~real).any(1))
    sorted_ok = np.where(real[:, 1:], np.diff(positions, axis=1) > 0, True).all(1)
    fail("masked positions not sorted and unique", ~sorted_ok)
    outside = (positions < 0) | (positions >= lengths[:, None])  # -1 would index from the end
    fail("masked position outside the sequence", (real & outside).any(1))
    fail(
        "masked id outside the vocabulary", (real & ((lm_ids < 0) | (lm_ids >= vocab_size))).any(1)
    )
    labels = block["next_sentence_labels"]
    fail("next_sentence_labels not 0/1", (labels != 0) & (labels != 1))
    return int(lengths.sum())


def verify_shards(paths: Sequence[str | Path], expect: Expectations) -> Report:
    """Check every shard; problems are collected, not raised, so one run shows them all."""
    report = Report()
    files = shard_files(paths)
    vocab = load_vocab(expect.vocab_file) if expect.vocab_file else None
    vocab_hash = sha256_file(expect.vocab_file) if expect.vocab_file else None
    vocab_size = len(vocab) if vocab else None
    if expect.config_file:
        config = BertConfig.from_json_file(expect.config_file)
        if vocab_size is not None and vocab_size != config.vocab_size:
            report.problems.append(
                f"{expect.vocab_file}: {vocab_size} tokens, but {expect.config_file} says "
                f"vocab_size {config.vocab_size}"
            )
        vocab_size = vocab_size or config.padded_vocab_size
    ids = {token: vocab[token] for token in ("[CLS]", "[SEP]")} if vocab else {}
    if not files:
        report.problems.append(f"no .hdf5 shards in {', '.join(map(str, paths))}")
    if expect.expected_shards is not None and len(files) != expect.expected_shards:
        report.problems.append(f"{len(files)} shards found, expected {expect.expected_shards}")
    for path in files:
        try:
            shard = h5py.File(path, "r")
        except OSError as err:
            report.problems.append(f"{path}: not a readable HDF5 file ({err})")
            continue
        with shard:
            report.shards += 1
            rows = _check_layout(path, shard, expect, report.problems)
            stored_hash = shard.attrs.get(VOCAB_SHA256)
            if vocab_hash and stored_hash is not None and stored_hash != vocab_hash:
                report.problems.append(
                    f"{path}: made with another vocabulary (sha256 {str(stored_hash)[:12]}...) "
                    f"than {expect.vocab_file} ({vocab_hash[:12]}...)"
                )
            found: dict[str, list[int]] = {}
            for start in range(0, rows, BLOCK_ROWS):
                block = {key: shard[key][start : start + BLOCK_ROWS] for key in SHARD_DTYPES}
                report.tokens += _check_block(start, block, ids, vocab_size or 2**31 - 1, found)
            report.problems.extend(
                f"{path}: {what} ({count} instances, the first is instance {first})"
                for what, (first, count) in found.items()
            )
            report.instances += rows
    return report


def verify_parquet(paths: Sequence[str | Path], expect: Expectations) -> Report:
    """LDDL parquet shards, each read as training reads it (columns and types, masked positions
    and labels, `num_tokens`, lengths within `max_seq_length`), plus tokens missing from the
    vocabulary, `.num_samples.json` counts, and each binned file's samples in its bin (bins
    of `max_seq_length / number of bins` tokens, as LDDL makes them)."""
    report = Report()
    if expect.vocab_file is None:
        report.problems.append("LDDL parquet shards hold WordPiece strings: pass --vocab_file")
        return report
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(lddl_data.parquet_files(path) if path.is_dir() else [path])
    try:
        groups = lddl_data.files_by_bin(files)
    except ShardError as err:
        report.problems.append(str(err))
        return report
    vocab = lddl_data.Vocabulary(expect.vocab_file)
    counts = lddl_data.ParquetShards(vocab, static=False)
    bin_size = None
    if None not in groups and expect.max_seq_length:
        bin_size = expect.max_seq_length // len(groups)
    static = None
    for path in files:
        try:
            shard = lddl_data.ParquetShard(path, vocab, static, expect.max_seq_length)
        except ShardError as err:
            report.problems.append(str(err))
            continue
        try:
            counts.check_count(shard)
        except ShardError as err:
            report.problems.append(str(err))
        static = shard.static
        report.shards += 1
        report.instances += len(shard)
        report.tokens += int(shard.lengths.sum())
        if shard.unknown_tokens:
            report.problems.append(
                f"{path}: {shard.unknown_tokens} tokens are not in {expect.vocab_file}"
            )
        b = lddl_data.bin_id(path)
        if b is not None and shard.bin_ids is not None and (shard.bin_ids != b).any():
            report.problems.append(f"{path}: column bin_id is not {b} in every row")
        if b is not None and bin_size:
            bins = np.minimum((shard.lengths - 1) // bin_size, len(groups) - 1)
            if (bins != b).any():
                report.problems.append(
                    f"{path}: {int((bins != b).sum())} samples are not {bin_size * b + 1} to "
                    f"{bin_size * (b + 1)} tokens long (bin {b} of {len(groups)})"
                )
    if report.shards and not report.instances:  # "all checks passed" over nothing
        where = ", ".join(map(str, paths))
        report.problems.append(
            f"{where}: no usable samples (its {report.shards} parquet files hold 0 rows)"
        )
    if expect.expected_shards is not None and len(files) != expect.expected_shards:
        report.problems.append(f"{len(files)} shards found, expected {expect.expected_shards}")
    return report


def is_parquet(paths: Sequence[str | Path]) -> bool:
    """Whether `paths` name LDDL parquet shards (a folder holding some, or such files)."""
    return any(
        lddl_data.is_parquet_folder(p) or ".parquet" in Path(p).suffix for p in map(Path, paths)
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(prog="verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="shard folders or files")
    parser.add_argument("--max_seq_length", type=cli.seq_length)
    parser.add_argument("--max_predictions_per_seq", type=cli.seq_length)
    parser.add_argument("--vocab_file", type=Path)
    parser.add_argument("--config_file", type=Path)
    parser.add_argument("--expected_shards", type=cli.shard_count)
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> None:
    """The paths before any shard is opened (a missing one would otherwise be found last)."""
    for path in args.paths:
        cli.check_input_path(path, "")
    if not is_parquet(args.paths) and not shard_files(args.paths):
        raise ShardError(f"no .hdf5 shards in {', '.join(map(str, args.paths))}")
    for flag, path in (("--vocab_file", args.vocab_file), ("--config_file", args.config_file)):
        if path is not None:
            cli.check_input_file(path, flag)


def execute(args: argparse.Namespace) -> int:
    """Check the shards; the report on stdout, each problem on its own stderr line; status 1 when
    there is any."""
    check_arguments(args)
    expect = Expectations(
        args.max_seq_length,
        args.max_predictions_per_seq,
        args.vocab_file,
        args.config_file,
        args.expected_shards,
    )
    parquet = is_parquet(args.paths)
    report = (verify_parquet if parquet else verify_shards)(args.paths, expect)
    kind = "LDDL parquet shards" if parquet else "shards"
    print(f"{report.shards} {kind}, {report.instances:,} instances, {report.tokens:,} tokens")
    for problem in report.problems:
        print(f"verify: {problem}", file=sys.stderr)
    if report.ok:
        print("verify: all checks passed")
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("verify", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
