"""Create masked-LM / next-sentence pre-training instances from text, as NVIDIA-layout HDF5.

    python create_pretraining_data.py --vocab_file vocab/vocab --input_file corpus.txt \\
        --output_file corpus.hdf5 --max_seq_length 128 --max_predictions_per_seq 20

Input: one sentence per line, a blank line between documents; a `.txt` file or a folder of
them. Output: one HDF5 file with the six datasets, dtypes and shapes of NVIDIA's shards
(`shard_format.py`), interchangeable with theirs. `--output_dir` writes one shard per input file
instead, `--processes` of them at a time.

The flags are NVIDIA's; the algorithm, reading and writing are `pretraining_instances.py`
(Google's algorithm draw for draw, with memory bounded by one input file, sorted input order,
one-line errors on bad input, atomic output and the settings stored in each shard).

Differences from NVIDIA's flags: `--do_lower_case` can be turned off (`--do_lower_case 0` or
`--no_lower_case`), where NVIDIA's was store_true with default True, so cased shards could not be
made; `--output_dir`, `--processes` and `--tokenizer_backend` are new; a second run writing the
same `--output_dir` is refused while the first holds its lock (`output_lock.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

from errors import BertError
from output_lock import claim_output
from pretraining_instances import (
    DataError,
    InstanceOptions,
    ShardJob,
    check_writable,
    create_shards,
    input_files,
)
from tokenization import BertTokenizer


def str_to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {value!r}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab_file", required=True, help="vocabulary (one token per line)")
    parser.add_argument("--input_file", required=True, help="a .txt file or a folder of them")
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--output_file", help="the .hdf5 shard to write")
    output.add_argument("--output_dir", help="write one <input name>.hdf5 per input file here")
    parser.add_argument("--bert_model", help="accepted; unused")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--dupe_factor", type=int, default=10)
    parser.add_argument("--max_predictions_per_seq", type=int, default=20)
    parser.add_argument("--masked_lm_prob", type=float, default=0.15)
    parser.add_argument("--short_seq_prob", type=float, default=0.1)
    parser.add_argument(
        "--do_lower_case",
        type=str_to_bool,
        nargs="?",
        const=True,
        default=True,
        help="lower-case the text (default); `--do_lower_case 0` keeps the case",
    )
    parser.add_argument(
        "--no_lower_case", dest="do_lower_case", action="store_false", help="keep the case"
    )
    parser.add_argument("--random_seed", type=int, default=12345)
    parser.add_argument(
        "--tokenizer_backend",
        choices=("python", "fast"),
        default="python",
        help="python (default) or fast (HF tokenizers); both give identical tokens",
    )
    parser.add_argument("--processes", type=int, default=1, help="shards built at a time")
    parser.add_argument("--disable_progress_bar", action="store_true")
    return parser.parse_args(argv)


def jobs_from_args(args: argparse.Namespace) -> list[ShardJob]:
    options = InstanceOptions.from_settings(args)
    vocab_file = Path(args.vocab_file)
    BertTokenizer(vocab_file, do_lower_case=args.do_lower_case)  # fail fast on a bad vocab
    files = input_files(args.input_file)
    common = {
        "vocab_file": vocab_file,
        "do_lower_case": args.do_lower_case,
        "options": options,
        "tokenizer_backend": args.tokenizer_backend,
    }
    if args.output_file:
        output = Path(args.output_file)
        check_writable(output)
        return [ShardJob(tuple(files), output, progress=not args.disable_progress_bar, **common)]
    out_dir = Path(args.output_dir)
    jobs = [ShardJob((path,), out_dir / f"{path.stem}.hdf5", **common) for path in files]
    check_writable(jobs[0].output)
    return jobs


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        jobs = jobs_from_args(args)
        if args.processes < 1:
            raise DataError(f"--processes must be at least 1, got {args.processes}")
        held = contextlib.nullcontext()  # one --output_file is written atomically: no lock
        if args.output_dir:  # a folder of shards is held for this run (see output_lock.py)
            held = claim_output(args.output_dir, "create_pretraining_data.py")
        with held:
            results = create_shards(jobs, args.processes, progress=not args.disable_progress_bar)
    except (BertError, FileNotFoundError) as err:
        print(f"create_pretraining_data.py: error: {err}", file=sys.stderr)
        return 1
    for result in results:
        megabytes = result["input_bytes"] / 1e6
        print(
            f"wrote {result['output']}: {result['instances']} instances from "
            f"{result['documents']} documents ({megabytes:.2f} MB of text) "
            f"in {result['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
