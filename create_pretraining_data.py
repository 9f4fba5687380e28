"""Create masked-LM / next-sentence pre-training instances from text, as NVIDIA-layout HDF5.

    python create_pretraining_data.py --vocab_file vocab/vocab --input_file corpus.txt \\
        --output_file corpus.hdf5 --max_seq_length 128 --max_predictions_per_seq 20

The entry script: NVIDIA's flags (and ours), every flag and path checked before any text is
read, and the jobs to run. Input: one sentence per line, a blank line between documents; a
`.txt` file or a folder of them. Output: one HDF5 file with the six datasets of NVIDIA's shards
(`shard_format.py`), interchangeable with theirs, or with `--output_dir` one shard per input
file, `--processes` at a time; the folder (or the one `--output_file`) is held with
`output_lock.py`. The algorithm, reading and writing are `pretraining_instances.py`'s; the
README lists how this script differs from NVIDIA's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cli
from errors import UsageError
from output_lock import OutputLock, claim_output
from pretraining_instances import (
    DataError,
    InstanceOptions,
    ShardJob,
    create_shards,
    input_files,
)
from tokenization import BertTokenizer

PROG = "create_pretraining_data.py"


def str_to_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (1/0, true/false), got {value!r}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="create_pretraining_data.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--vocab_file", required=True, help="vocabulary (one token per line)")
    parser.add_argument("--input_file", required=True, help="a .txt file or a folder of them")
    output = parser.add_mutually_exclusive_group(required=True)
    output.add_argument("--output_file", help="the .hdf5 shard to write")
    output.add_argument("--output_dir", help="write one <input name>.hdf5 per input file here")
    parser.add_argument("--bert_model", help="accepted; unused")
    parser.add_argument("--max_seq_length", type=cli.seq_length, default=128)
    parser.add_argument("--dupe_factor", type=cli.dupe_factor, default=10)
    parser.add_argument("--max_predictions_per_seq", type=cli.seq_length, default=20)
    parser.add_argument("--masked_lm_prob", type=cli.proportion, default=0.15)
    parser.add_argument("--short_seq_prob", type=cli.proportion, default=0.1)
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
    parser.add_argument("--random_seed", type=cli.seed_value, default=12345)
    parser.add_argument(
        "--do_whole_word_mask",
        type=str_to_bool,
        nargs="?",
        const=True,
        default=False,
        help="mask all WordPieces of a word together (Google's flag and rules); default off",
    )
    parser.add_argument(
        "--tokenizer_backend",
        choices=("python", "fast"),
        default="python",
        help="python (default) or fast (HF tokenizers); both give identical tokens",
    )
    parser.add_argument(
        "--processes", type=cli.process_count, default=1, help="shards built at a time"
    )
    parser.add_argument("--disable_progress_bar", action="store_true")
    parser.add_argument(
        "--config_file",
        help="the model the shards are for: --max_seq_length and the vocabulary must fit it",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def jobs_from_args(args: argparse.Namespace) -> list[ShardJob]:
    """The shard jobs, every flag and path checked before any text is read."""
    try:
        options = InstanceOptions.from_settings(args)
    except DataError as err:  # settings that cannot make an instance are flag errors
        raise UsageError(str(err)) from None
    if args.config_file:
        cli.check_model_files(args.config_file, args.vocab_file, args.max_seq_length)
    else:
        cli.check_input_file(args.vocab_file, "--vocab_file")
    vocab_file = Path(args.vocab_file)
    BertTokenizer(vocab_file, do_lower_case=args.do_lower_case)  # fail fast on a bad vocab
    cli.check_input_path(args.input_file, "--input_file")
    files = input_files(args.input_file)
    common = {
        "vocab_file": vocab_file,
        "do_lower_case": args.do_lower_case,
        "options": options,
        "tokenizer_backend": args.tokenizer_backend,
    }
    if args.output_file:
        output = cli.check_output_file(args.output_file, "--output_file")
        jobs = [ShardJob(tuple(files), output, progress=not args.disable_progress_bar, **common)]
    else:
        out_dir = cli.check_output_dir(args.output_dir, "--output_dir")
        jobs = [ShardJob((path,), out_dir / f"{path.stem}.hdf5", **common) for path in files]
    for job in jobs:
        check_job(job, args)
    return jobs


def check_job(job: ShardJob, args: argparse.Namespace) -> None:
    """A job's output is none of its inputs, and it has some text to read."""
    output = {"--output_file" if args.output_file else "--output_dir": job.output}
    cli.check_not_overwriting(
        {"--vocab_file": args.vocab_file, "--config_file": args.config_file}, output
    )
    for path in job.inputs:
        cli.check_not_overwriting({"--input_file": path}, output)
    if all(path.stat().st_size == 0 for path in job.inputs):
        names = ", ".join(str(path) for path in job.inputs)
        raise DataError(f"{names}: empty, no text to make instances from")


@contextlib.contextmanager
def hold_output_file(path: str) -> Iterator[None]:
    """`--output_file` locked for this run (a `.bert-run.lock.*` file beside it); its folder,
    when the run makes it, is removed again if the run leaves it empty."""
    folder = Path(path).parent
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with OutputLock(path, PROG, "--output_file", single_file=True):
            yield
    finally:
        if made and not any(folder.iterdir()):
            folder.rmdir()


def execute(args: argparse.Namespace) -> None:
    jobs = jobs_from_args(args)
    # One --output_file is held by a lock beside it: written atomically, a second run's would
    # silently replace the first's. A folder of shards is held for this run (output_lock.py).
    if args.output_dir:
        held = claim_output(args.output_dir, PROG)
    else:
        held = hold_output_file(args.output_file)
    with held:
        results = create_shards(jobs, args.processes, progress=not args.disable_progress_bar)
    for result in results:
        megabytes = result["input_bytes"] / 1e6
        print(
            f"wrote {result['output']}: {result['instances']} instances from "
            f"{result['documents']} documents ({megabytes:.2f} MB of text) "
            f"in {result['seconds']:.1f} s"
        )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(PROG, parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
