"""Samples/s of the pre-training loader at the phase-1 and phase-2 shapes (one process).

    python -m benchmarks.loader_speed [--rows 65536] [--micro_batch 64] [--shards DIR]

Writes a temporary shard of `--rows` random instances in NVIDIA's layout (or reads real shards
from `--shards`), then times a full pass of `PretrainingDataLoader` over it: reading, shuffling,
batch assembly and label construction, as the training loop receives the batches (CPU tensors).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

import cli
from pretraining_data import PretrainingDataLoader, training_files


def write_random_shard(path: Path, rows: int, seq: int, pred: int) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(seq // 4, seq + 1, rows)
    positions = np.arange(seq)[None, :]
    mask = (positions < lengths[:, None]).astype("i1")
    ids = rng.integers(1000, 30000, (rows, seq)).astype("i4") * mask
    # distinct sorted positions among the first quarter (every row is at least that long)
    candidates = rng.random((rows, max(seq // 4 - 1, pred))).argsort(axis=1)[:, :pred] + 1
    masked = np.sort(candidates, axis=1).astype("i4")
    with h5py.File(path, "w") as f:
        f.create_dataset("input_ids", data=ids, compression="gzip")
        f.create_dataset("input_mask", data=mask, compression="gzip")
        f.create_dataset("segment_ids", data=np.zeros((rows, seq), "i1"), compression="gzip")
        f.create_dataset("masked_lm_positions", data=masked, compression="gzip")
        f.create_dataset("masked_lm_ids", data=masked + 1000, compression="gzip")
        f.create_dataset("next_sentence_labels", data=np.zeros(rows, "i1"), compression="gzip")


def measure(files: list[Path], micro_batch: int) -> tuple[float, int]:
    loader = PretrainingDataLoader(files, micro_batch, seed=1)
    samples, start = 0, time.perf_counter()
    for batch in loader:
        if loader.epoch > 0:
            break
        samples += len(batch[0])
    return samples / (time.perf_counter() - start), samples


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="benchmarks.loader_speed", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rows", type=cli.positive_int, default=65536)
    parser.add_argument("--micro_batch", type=cli.batch_size, default=64)
    parser.add_argument("--shards", type=Path, help="real shards instead of a random one")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("benchmarks.loader_speed", parse_args, execute, argv)


def execute(args: argparse.Namespace) -> None:
    if args.shards:
        cli.check_input_dir(args.shards, "--shards")
        rate, samples = measure(training_files(args.shards), args.micro_batch)
        print(f"{args.shards}: {rate:,.0f} samples/s over {samples} samples")
        return
    with tempfile.TemporaryDirectory() as folder:
        for seq, pred in ((128, 20), (512, 80)):
            path = Path(folder) / f"random_{seq}_training_0.hdf5"
            write_random_shard(path, args.rows, seq, pred)
            rate, samples = measure([path], args.micro_batch)
            print(
                f"seq {seq} / {pred} predictions: {rate:,.0f} samples/s over {samples} samples "
                f"(micro-batch {args.micro_batch}, file read included)"
            )
            path.unlink()


if __name__ == "__main__":
    sys.exit(main())
