"""The pre-training data pipeline as named stages, each idempotent and runnable alone.

    python -m data.pipeline [--working_dir DIR] [--force] STAGE [STAGE ...] [options]

Owns the order of the stages (`STAGES`; `all` runs them all), where each writes under the
working dir (`--working_dir`, else `$BERT_PREP_WORKING_DIR`, else `data/`) in NVIDIA's folder
names, their completion markers (`run_stage`), and the checks of every path and setting before
any stage runs. A stage that fails or produces nothing stops the pipeline with one line naming
the stage and the path. The work of each stage is its module's (`data/download.py`,
`data/wikipedia.py`, `data/sharding.py`, `pretraining_instances.py`, `data/verify.py`);
`data/bertPrep.py` runs these stages behind NVIDIA's command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cli
from data.download import DATASETS as DATASETS_TO_DOWNLOAD
from data.download import download_dataset, download_wikipedia
from data.sharding import shard_articles
from data.stages import PipelineError
from data.wikipedia import extract, format_articles
from errors import UsageError
from fileio import atomic_path, atomic_write_text, read_json

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: In order, with what each writes under the working dir: download: `download/<dataset>/` (or
#: `--dump` names a local Wikipedia dump: offline); extract: `extracted/wikicorpus_en/`
#: (wikiextractor 3.1.0); format: `formatted_one_article_per_line/` with
#: `wikicorpus_en_one_article_per_line.txt` and `bookscorpus_one_book_per_line.txt` (BookCorpus
#: from a local folder of `.txt` books: `--books_dir`, `$BOOKS_DIR`, else `download/bookscorpus/`,
#: where NVIDIA's downloader put it); shard: `sharded_training_shards_<N>_test_shards_<M>_`
#: `fraction_<f>/<dataset>/`; hdf5: `hdf5_lower_case_<l>_seq_len_<L>_max_pred_<P>_masked_lm_prob_`
#: `<p>_random_seed_<s>_dupe_factor_<d>/<dataset>/` (`_whole_word_mask` appended with
#: `--do_whole_word_mask`, ours); verify: nothing but a report, and an error for a wrong shard.
STAGES = ("download", "extract", "format", "shard", "hdf5", "verify")
#: Each dataset and the formatted corpora it is sharded from, in the order they are read.
DATASET_CORPORA = {
    "wikicorpus_en": ("wikicorpus_en",),
    "bookscorpus": ("bookscorpus",),
    "books_wiki_en_corpus": ("wikicorpus_en", "bookscorpus"),
}
DATASETS = tuple(DATASET_CORPORA)
GLUE_TASK_DATASETS = {"mrpc": "MRPC", "sst-2": "SST-2"}


@dataclasses.dataclass
class Settings:
    """Every option of the pipeline; each stage's marker records the ones it depends on."""

    working_dir: Path
    dataset: str = "wikicorpus_en"
    downloads: tuple[str, ...] = ("wikicorpus_en",)
    wiki_date: str | None = None
    mirrors: tuple[str, ...] = ()
    dump: Path | None = None
    books_dir: Path | None = None
    input_files: tuple[Path, ...] = ()
    n_training_shards: int = 256
    n_test_shards: int = 256
    fraction_test_set: float = 0.1
    segmentation_seed: int = 12345
    n_processes: int = dataclasses.field(default_factory=lambda: max(1, os.cpu_count() or 1))
    vocab_file: Path = REPO_ROOT / "vocab" / "vocab"
    do_lower_case: bool = True
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    random_seed: int = 12345
    dupe_factor: int = 5
    short_seq_prob: float = 0.1
    do_whole_word_mask: bool = False
    tokenizer_backend: str = "python"
    config_file: Path | None = None

    # ---------------------------------------------------------------- NVIDIA's folder names
    @property
    def download_dir(self) -> Path:
        return self.working_dir / "download"

    @property
    def extracted_dir(self) -> Path:
        return self.working_dir / "extracted" / "wikicorpus_en"

    @property
    def formatted_dir(self) -> Path:
        return self.working_dir / "formatted_one_article_per_line"

    def formatted_file(self, corpus: str) -> Path:
        per_line = "book" if corpus == "bookscorpus" else "article"  # NVIDIA's two file names
        return self.formatted_dir / f"{corpus}_one_{per_line}_per_line.txt"

    @property
    def corpora(self) -> tuple[str, ...]:
        return DATASET_CORPORA[self.dataset]

    @property
    def books_folder(self) -> Path:
        """BookCorpus .txt files: `books_dir`, else NVIDIA's `download/bookscorpus`."""
        return self.books_dir or self.download_dir / "bookscorpus"

    @property
    def sharded_dir(self) -> Path:
        name = (
            f"sharded_training_shards_{self.n_training_shards}_test_shards_"
            f"{self.n_test_shards}_fraction_{self.fraction_test_set}"
        )
        return self.working_dir / name / self.dataset

    @property
    def hdf5_dir(self) -> Path:
        name = (
            f"hdf5_lower_case_{int(self.do_lower_case)}_seq_len_{self.max_seq_length}_max_pred_"
            f"{self.max_predictions_per_seq}_masked_lm_prob_{self.masked_lm_prob}_random_seed_"
            f"{self.random_seed}_dupe_factor_{self.dupe_factor}"
        )
        if self.do_whole_word_mask:  # ours: NVIDIA's names never held whole-word shards
            name += "_whole_word_mask"
        return self.working_dir / name / self.dataset


# ------------------------------------------------------------------------------- stages


def stage_download(s: Settings) -> dict[str, Any]:
    files: list[Path] = []
    for name in s.downloads:
        if name in GLUE_TASK_DATASETS:  # NVIDIA's dataset names for one GLUE task each
            files.extend(download_dataset("glue", s.download_dir, tasks=[GLUE_TASK_DATASETS[name]]))
        elif name == "wikicorpus_en":
            options = {"date": s.wiki_date} if s.wiki_date else {}
            if s.mirrors:
                options["mirrors"] = s.mirrors
            files.append(download_wikipedia(s.download_dir, local_dump=s.dump, **options))
        else:
            files.extend(download_dataset(name, s.download_dir))
    return {"files": [str(f) for f in files]}


def wikipedia_dump(s: Settings) -> Path:
    if s.dump is not None:
        return s.dump
    folder = s.download_dir / "wikicorpus_en"
    dumps = sorted(folder.glob("enwiki-*-pages-articles*.xml*"))
    # NVIDIA's downloader saved the latest dump as wikicorpus_en.xml.bz2 and unpacked it beside.
    dumps = dumps or [
        p for p in (folder / "wikicorpus_en.xml.bz2", folder / "wikicorpus_en.xml") if p.is_file()
    ]
    if not dumps:
        raise PipelineError(
            f"extract: no Wikipedia dump in {s.download_dir / 'wikicorpus_en'}; run the download "
            "stage first, or pass --dump PATH"
        )
    return dumps[-1]


def stage_extract(s: Settings) -> dict[str, Any]:
    # The markers decide what is done: a stage that runs replaces its own output folder.
    files = extract(wikipedia_dump(s), s.extracted_dir, processes=s.n_processes, overwrite=True)
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def stage_format(s: Settings) -> dict[str, Any]:
    summary = {}
    if "wikicorpus_en" in s.corpora:
        wiki = s.formatted_file("wikicorpus_en")
        summary["wikicorpus_en"] = format_articles(s.extracted_dir, wiki)
    if "bookscorpus" in s.corpora:
        books = sorted(s.books_folder.glob("*.txt"))
        if not books:
            raise PipelineError(
                f"format: the {s.dataset} dataset needs a local BookCorpus copy (a folder of .txt "
                f"books, --books_dir or BOOKS_DIR), none found in {s.books_folder}; BookCorpus can "
                "no longer be downloaded, and wiki_only needs none"
            )
        summary["bookscorpus"] = format_books(books, s.formatted_file("bookscorpus"))
    return summary


def format_books(books: list[Path], out_file: Path) -> int:
    """One book per line (NVIDIA's BookCorpus formatting): its non-empty lines joined."""
    count = 0
    with atomic_path(out_file) as tmp, open(tmp, "w", encoding="utf-8") as writer:
        for book in books:
            with open(book, encoding="utf-8", errors="replace") as reader:
                text = " ".join(line.strip() for line in reader if line.strip())
            if text:
                writer.write(text + "\n")
                count += 1
    return count


def stage_shard(s: Settings) -> dict[str, Any]:
    inputs = list(s.input_files) or [s.formatted_file(corpus) for corpus in s.corpora]
    missing = [str(path) for path in inputs if not path.is_file()]
    if missing:
        raise PipelineError(f"shard: {', '.join(missing)} not found; run the format stage first")
    summary = shard_articles(
        inputs,
        s.sharded_dir,
        prefix=s.dataset,
        n_training=s.n_training_shards,
        n_test=s.n_test_shards,
        fraction_test=s.fraction_test_set,
        seed=s.segmentation_seed,
        processes=s.n_processes,
        overwrite=True,
    )
    return {"shards": len(list(s.sharded_dir.glob("*.txt"))), "summary": summary}


def stage_hdf5(s: Settings) -> dict[str, Any]:
    # h5py and the tokenizer load only when this stage runs (the text stages need neither).
    from pretraining_instances import InstanceOptions, ShardJob, create_shards

    texts = sorted(p for p in s.sharded_dir.glob("*.txt") if p.stat().st_size > 0)
    if not texts:
        raise PipelineError(f"hdf5: no text shards in {s.sharded_dir}; run the shard stage first")
    options = InstanceOptions.from_settings(s)
    jobs = [
        ShardJob(
            (text,),
            s.hdf5_dir / f"{text.stem}.hdf5",
            s.vocab_file,
            s.do_lower_case,
            options,
            s.tokenizer_backend,
        )
        for text in texts
    ]
    results = create_shards(jobs, processes=s.n_processes)
    return {"shards": len(results), "instances": sum(r["instances"] for r in results)}


def stage_verify(s: Settings) -> dict[str, Any]:
    # torch loads (through modeling.py) only when this stage runs.
    from data.verify import Expectations, verify_shards

    expected = len([p for p in s.sharded_dir.glob("*.txt") if p.stat().st_size > 0]) or None
    report = verify_shards(
        [s.hdf5_dir],
        Expectations(
            s.max_seq_length,
            s.max_predictions_per_seq,
            s.vocab_file,
            s.config_file,
            expected,
        ),
    )
    if not report.ok:
        shown = "; ".join(report.problems[:5])
        more = f" (+{len(report.problems) - 5} more)" if len(report.problems) > 5 else ""
        raise PipelineError(f"verify: {s.hdf5_dir}: {shown}{more}")
    return {"shards": report.shards, "instances": report.instances, "tokens": report.tokens}


SHARD_SETTINGS = (
    "dataset",
    "input_files",
    "n_training_shards",
    "n_test_shards",
    "fraction_test_set",
    "segmentation_seed",
)
INSTANCE_SETTINGS = (
    "vocab_file",
    "do_lower_case",
    "max_seq_length",
    "max_predictions_per_seq",
    "masked_lm_prob",
    "random_seed",
    "dupe_factor",
    "short_seq_prob",
    "do_whole_word_mask",
)

#: Stage -> (function, the settings its output depends on).
STAGE_TABLE: dict[str, tuple[Callable[[Settings], dict], tuple[str, ...]]] = {
    "download": (stage_download, ("downloads", "wiki_date", "mirrors", "dump")),
    "extract": (stage_extract, ("dump", "wiki_date")),
    "format": (stage_format, ("dataset", "books_dir")),
    "shard": (stage_shard, SHARD_SETTINGS),
    "hdf5": (stage_hdf5, SHARD_SETTINGS + INSTANCE_SETTINGS),
    "verify": (stage_verify, SHARD_SETTINGS + INSTANCE_SETTINGS + ("config_file",)),
}


# ------------------------------------------------------------------------------- running


def _marker(s: Settings, stage: str) -> tuple[Path, dict[str, Any]]:
    keys = STAGE_TABLE[stage][1]
    params = {key: _jsonable(getattr(s, key)) for key in keys}
    # Left out when unset, so that markers written before these settings existed still match.
    if not s.input_files:
        params.pop("input_files", None)
    if not s.do_whole_word_mask:
        params.pop("do_whole_word_mask", None)
    suffix = ""
    if stage in ("hdf5", "verify"):
        suffix = f"-{s.hdf5_dir.parent.name}"
    elif stage == "shard":
        suffix = f"-{s.sharded_dir.parent.name}"
    return s.working_dir / ".stages" / f"{stage}-{s.dataset}{suffix}.json", params


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def run_stage(s: Settings, stage: str, force: bool = False) -> dict[str, Any]:
    """Run one stage unless its marker shows it done with the same settings.

    The marker (`.stages/<stage>.json`: the settings and a summary) is written only after the
    stage's outputs are complete, so a failed stage leaves none; `force` redoes a stage."""
    marker, params = _marker(s, stage)
    if not force and marker.is_file() and stage != "verify":
        recorded = read_json(marker, "stage marker")
        if isinstance(recorded, dict) and recorded.get("params") == params:
            logger.info("%s: already done (%s); --force redoes it", stage, marker)
            return recorded["summary"]
    function = STAGE_TABLE[stage][0]
    logger.info("%s: running", stage)
    try:
        summary = function(s)
    except PipelineError:
        raise
    except Exception as err:  # every failure stops the pipeline with the stage's name
        raise PipelineError(f"{stage}: {err}") from err
    record = {"params": params, "summary": summary}
    atomic_write_text(marker, json.dumps(record, indent=2, default=str))
    logger.info("%s: done: %s", stage, json.dumps(summary, default=str)[:300])
    return summary


def run_pipeline(s: Settings, stages: list[str], force: bool = False) -> None:
    s.working_dir.mkdir(parents=True, exist_ok=True)
    for stage in stages:
        run_stage(s, stage, force)


def check_settings(s: Settings, stages: list[str], working_dir_flag: str = "--working_dir") -> None:
    """The settings the chosen stages use, before any stage runs: flag combinations, the instance
    options, input files and folders, a writable working dir, and no stage output that replaces
    an input (each stage replaces its output folder whole). UsageErrors name the flag."""
    known = sorted({*DATASETS_TO_DOWNLOAD, *GLUE_TASK_DATASETS})
    unknown = [name for name in s.downloads if name not in known] if "download" in stages else []
    if unknown:
        raise UsageError(f"--downloads: unknown {unknown[0]!r}; choose from {', '.join(known)}")
    if not 0 <= s.fraction_test_set < 1:
        raise UsageError(f"--fraction_test_set must be below 1, got {s.fraction_test_set}")
    if s.fraction_test_set > 0 and s.n_test_shards < 1:
        raise UsageError(
            f"--fraction_test_set {s.fraction_test_set} puts articles in test shards: "
            "--n_test_shards must be at least 1"
        )
    if "hdf5" in stages:
        from pretraining_instances import DataError, InstanceOptions

        try:
            InstanceOptions.from_settings(s)
        except DataError as err:
            raise UsageError(str(err)) from None
    inputs = {
        "--dump": s.dump if {"download", "extract"} & set(stages) else None,
        "--vocab_file": s.vocab_file if {"hdf5", "verify"} & set(stages) else None,
        "--config_file": s.config_file if "verify" in stages else None,
    }
    if "shard" in stages:
        inputs |= {f"--input_files ({i + 1})": path for i, path in enumerate(s.input_files)}
    for flag, path in inputs.items():
        if path is not None:
            cli.check_input_file(path, flag)
    if s.books_dir is not None and "format" in stages and "bookscorpus" in s.corpora:
        cli.check_input_dir(s.books_dir, "--books_dir")
        inputs["--books_dir"] = s.books_dir
    cli.check_output_dir(s.working_dir, working_dir_flag)
    replaced = {"extract": s.extracted_dir, "shard": s.sharded_dir, "hdf5": s.hdf5_dir}
    folders = {f"the {name} stage's folder": replaced[name] for name in stages if name in replaced}
    cli.check_not_overwriting(inputs, {}, folders=folders)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = Settings(working_dir=Path("."))
    parser = cli.ArgumentParser(
        prog="data.pipeline",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stages", nargs="+", choices=(*STAGES, "all"))
    parser.add_argument("--working_dir", type=Path, help="default: $BERT_PREP_WORKING_DIR, data/")
    parser.add_argument("--force", action="store_true", help="redo stages already done")
    parser.add_argument("--dataset", choices=DATASETS, default=defaults.dataset)
    parser.add_argument(
        "--downloads",
        nargs="+",
        default=list(defaults.downloads),
        help="download stage: any of wikicorpus_en squad glue mrpc sst-2 google_pretrained_weights",
    )
    parser.add_argument("--wiki_date", help="pinned dump date, e.g. 20240601")
    parser.add_argument("--mirror", dest="mirrors", action="append", default=[])
    parser.add_argument("--dump", type=Path, help="a local pages-articles dump (offline)")
    parser.add_argument("--books_dir", type=Path, default=os.environ.get("BOOKS_DIR") or None)
    add_count_arguments(parser, defaults)
    parser.add_argument("--vocab_file", type=Path, default=defaults.vocab_file)
    parser.add_argument("--do_lower_case", type=int, choices=(0, 1), default=1)
    parser.add_argument("--tokenizer_backend", choices=("python", "fast"), default="python")
    parser.add_argument(
        "--do_whole_word_mask",
        action="store_true",
        help="hdf5: mask all WordPieces of a word together (Google's rules)",
    )
    parser.add_argument("--config_file", type=Path, help="verify: the model config to match")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def add_count_arguments(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    """The numeric flags of the shard and hdf5 stages (NVIDIA's names), with types that refuse
    impossible values while parsing."""
    types = {
        "n_training_shards": cli.shard_count,
        "n_test_shards": cli.int_between(0, cli.MAX_SHARDS, "shard files"),
        "fraction_test_set": cli.proportion,
        "n_processes": cli.process_count,
        "random_seed": cli.seed_value,
        "dupe_factor": cli.dupe_factor,
        "masked_lm_prob": cli.proportion,
        "max_seq_length": cli.seq_length,
        "max_predictions_per_seq": cli.seq_length,
        "short_seq_prob": cli.proportion,
    }
    for name, kind in types.items():
        parser.add_argument(f"--{name}", type=kind, default=getattr(defaults, name))


def settings_from(args: argparse.Namespace) -> tuple[Settings, list[str]]:
    working_dir = args.working_dir or Path(
        os.environ.get("BERT_PREP_WORKING_DIR") or REPO_ROOT / "data"
    )
    values = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(Settings)
        if f.name != "working_dir" and hasattr(args, f.name)
    }
    values["downloads"] = tuple(args.downloads)
    values["mirrors"] = tuple(args.mirrors)
    values["do_lower_case"] = bool(args.do_lower_case)
    stages = list(STAGES) if "all" in args.stages else args.stages
    return Settings(working_dir=working_dir, **values), stages


def execute(args: argparse.Namespace) -> None:
    settings, stages = settings_from(args)
    check_settings(settings, stages)
    run_pipeline(settings, stages, args.force)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("data.pipeline", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
