"""NVIDIA's `data/bertPrep.py` command line, run by the stages of `data/pipeline.py`.

    export BERT_PREP_WORKING_DIR=/data/bert     # default: data/ of this repository
    python data/bertPrep.py --action download --dataset wikicorpus_en
    python data/bertPrep.py --action create_hdf5_files --dataset wikicorpus_en \
        --max_seq_length 128 --max_predictions_per_seq 20 --vocab_file vocab/vocab

Owns NVIDIA's flags, choices and defaults and the mapping of each `--action` onto pipeline
stages (`plan`), which write NVIDIA's folders under the working dir; a stage already done with
the same settings is skipped (`--force` redoes it). What cannot work here (TFRecords,
`wikicorpus_zh`, `nvidia_pretrained_weights`, downloading BookCorpus) is one line and exit status
2 before any work; a failed stage is one line and status 1. The stages themselves are
`data/pipeline.py`'s; the README lists how this script differs from NVIDIA's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

ACTIONS = ("download", "text_formatting", "sharding", "create_tfrecord_files", "create_hdf5_files")
DATASETS = (
    "bookscorpus",
    "wikicorpus_en",
    "wikicorpus_zh",
    "books_wiki_en_corpus",
    "google_pretrained_weights",
    "nvidia_pretrained_weights",
    "mrpc",
    "sst-2",
    "squad",
    "all",
)
#: What `--action download --dataset all` fetches: every dataset that can still be downloaded.
DOWNLOADABLE = ("wikicorpus_en", "google_pretrained_weights", "squad", "mrpc", "sst-2")
#: The datasets that text_formatting, sharding and create_hdf5_files work on.
TEXT_DATASETS = ("wikicorpus_en", "bookscorpus", "books_wiki_en_corpus")


# Repository modules (cli, errors, data.pipeline) are imported inside the functions: run as
# `python data/bertPrep.py`, this file finds them only once the __main__ block below has put the
# repository root first on sys.path.


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    import cli

    parser = cli.ArgumentParser(prog="bertPrep.py", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--action", required=True, choices=ACTIONS, help="what to do")
    add("--dataset", required=True, choices=DATASETS, help="the dataset to do it on")
    add("--input_files", help="sharding: comma-separated one-article-per-line files to shard")
    add("--n_training_shards", type=cli.shard_count, default=256)
    add("--n_test_shards", type=cli.int_between(0, cli.MAX_SHARDS, "shard files"), default=256)
    add("--fraction_test_set", type=cli.proportion, default=0.1)
    add(
        "--segmentation_method",
        choices=("nltk",),
        default="nltk",
        help="accepted; data/segmentation.py splits sentences (no NLTK download)",
    )
    add("--n_processes", type=cli.process_count, default=4, help="worker processes")
    add("--random_seed", type=cli.seed_value, default=12345)
    add("--dupe_factor", type=cli.dupe_factor, default=5)
    add("--masked_lm_prob", type=cli.proportion, default=0.15)
    add("--max_seq_length", type=cli.seq_length, default=512)
    add("--max_predictions_per_seq", type=cli.seq_length, default=20)
    add("--do_lower_case", type=int, choices=(0, 1), default=1)
    add("--vocab_file", help="default: vocab/vocab (vocab/vocab_cased with --do_lower_case 0)")
    add(
        "--skip_wikiextractor",
        type=int,
        choices=(0, 1),
        default=0,
        help="1: format an earlier extraction in extracted/wikicorpus_en",
    )
    add("--interactive_json_config_generator", help="accepted; unused, as in NVIDIA's")
    add("--dump", type=Path, help="a local Wikipedia pages-articles dump instead of downloading")
    add("--wiki_date", help="Wikipedia dump date YYYYMMDD to download")
    add("--mirror", dest="mirrors", action="append", default=[], help="Wikipedia mirror URL")
    add(
        "--books_dir",
        type=Path,
        default=os.environ.get("BOOKS_DIR") or None,
        help="BookCorpus .txt files (default: $BOOKS_DIR, else download/bookscorpus)",
    )
    add("--force", action="store_true", help="redo stages already done with the same settings")
    add("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[str, tuple[str, ...], list[str]]:
    """(pipeline dataset, datasets to download, stages) for an action, or UsageError.

    download: the download stage, into `download/<dataset>/` (mrpc and sst-2:
    `download/glue/<task>/`); `--dataset all` fetches `DOWNLOADABLE`. text_formatting: extract
    (skipped by `--skip_wikiextractor 1`) and format, into `extracted/wikicorpus_en/` and
    `formatted_one_article_per_line/`. sharding: the shard stage, into
    `sharded_training_shards_<n>_test_shards_<m>_fraction_<f>/<dataset>/`. create_hdf5_files:
    the hdf5 and verify stages, into `hdf5_lower_case_<l>_seq_len_<L>_max_pred_<P>_`
    `masked_lm_prob_<p>_random_seed_<s>_dupe_factor_<d>/<dataset>/`. BookCorpus cannot be
    downloaded (its source is gone): its .txt books go in `download/bookscorpus/` or
    `$BOOKS_DIR` before `text_formatting`."""
    from errors import UsageError

    action, dataset = args.action, args.dataset
    if action == "create_tfrecord_files":
        raise UsageError(
            "--action create_tfrecord_files is not supported (TFRecords are TensorFlow's format; "
            "NVIDIA's PyTorch script asserted too): use --action create_hdf5_files"
        )
    if dataset == "wikicorpus_zh":
        raise UsageError("--dataset wikicorpus_zh is not supported (NVIDIA's asserted too)")
    if dataset == "nvidia_pretrained_weights":
        raise UsageError(
            "--dataset nvidia_pretrained_weights is not implemented (NVIDIA's asserted too); "
            "NGC checkpoints load directly with --init_checkpoint"
        )
    if action == "download":
        if dataset in ("bookscorpus", "books_wiki_en_corpus"):
            raise UsageError(
                f"--action download --dataset {dataset}: BookCorpus can no longer be downloaded; "
                "put its .txt books in $BERT_PREP_WORKING_DIR/download/bookscorpus (or $BOOKS_DIR)"
                ", download wikicorpus_en, then run --action text_formatting"
            )
        downloads = DOWNLOADABLE if dataset == "all" else (dataset,)
        return "wikicorpus_en", downloads, ["download"]
    if dataset not in TEXT_DATASETS:
        raise UsageError(
            f"--action {action} works on --dataset {', '.join(TEXT_DATASETS)}, not {dataset}"
        )
    if action == "text_formatting":
        wiki = dataset != "bookscorpus" and not args.skip_wikiextractor
        return dataset, (), ["extract", "format"] if wiki else ["format"]
    if action == "sharding":
        return dataset, (), ["shard"]
    return dataset, (), ["hdf5", "verify"]


def settings_from(args: argparse.Namespace, dataset: str, downloads: tuple[str, ...]):
    """The pipeline settings of NVIDIA's flags."""
    from data.pipeline import Settings

    working_dir = Path(os.environ.get("BERT_PREP_WORKING_DIR") or REPO_ROOT / "data")
    cased = not args.do_lower_case
    vocab = args.vocab_file or REPO_ROOT / "vocab" / ("vocab_cased" if cased else "vocab")
    inputs = tuple(Path(p) for p in (args.input_files or "").split(",") if p)
    options = {"wiki_date": args.wiki_date} if args.wiki_date else {}
    return Settings(
        working_dir=working_dir.absolute(),
        dataset=dataset,
        downloads=downloads,
        mirrors=tuple(args.mirrors),
        dump=args.dump,
        books_dir=args.books_dir,
        input_files=inputs,
        n_training_shards=args.n_training_shards,
        n_test_shards=args.n_test_shards,
        fraction_test_set=args.fraction_test_set,
        n_processes=args.n_processes,
        vocab_file=Path(vocab),
        do_lower_case=bool(args.do_lower_case),
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob,
        random_seed=args.random_seed,
        dupe_factor=args.dupe_factor,
        **options,
    )


def execute(args: argparse.Namespace) -> None:
    from data.pipeline import check_settings, run_pipeline

    dataset, downloads, stages = plan(args)
    settings = settings_from(args, dataset, downloads)
    check_settings(settings, stages, working_dir_flag="BERT_PREP_WORKING_DIR")
    print("Working Directory:", settings.working_dir)
    print("Action:", args.action)
    print("Dataset Name:", args.dataset)
    if args.action == "sharding":
        print("Segmentation: nltk is served by the built-in rule-based splitter (no NLTK download)")
    run_pipeline(settings, stages, args.force)


def main(argv: Sequence[str] | None = None) -> int:
    import cli

    return cli.run_main("bertPrep.py", parse_args, execute, argv)


if __name__ == "__main__":
    # `python data/bertPrep.py` (NVIDIA's way to call it) puts data/ first on sys.path; the
    # pipeline is imported as the `data` package from the repository root, so put that there.
    sys.path[0] = str(REPO_ROOT)
    sys.exit(main())
