"""Paths and small helpers the tests share (fixtures are in conftest.py): the one HDF5 shard
writer, the tiny Wikipedia dump, a planted output lock, and the skip reasons CI accepts."""

from __future__ import annotations

import builtins
import collections
import csv
import dataclasses
import errno
import importlib
import io
import json
import logging
import os
import re
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from cli import LOG_FORMAT
from logger import MetricLogger
from modeling import BertConfig
from output_lock import LOCK_NAME, Holder
from shard_format import SHARD_DTYPES

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
UNCASED_VOCAB = REPO_ROOT / "vocab" / "vocab"
CASED_VOCAB = REPO_ROOT / "vocab" / "vocab_cased"
TINY_CONFIG = REPO_ROOT / "bert_configs" / "tiny.json"
SAMPLE_SQUAD = REPO_ROOT / "data" / "sample" / "squad"
SAMPLE_MRPC = REPO_ROOT / "data" / "sample" / "glue" / "MRPC"

# The only skip reasons `--strict-skips` (CI) accepts: the machine has or lacks a GPU, or the test
# needs another user than this one. Any other skip there fails the run.
NEEDS_CUDA = "needs a CUDA device"
FP16_RUNS_ON_THE_GPU = "fp16 is refused only without a GPU, and there is one"
NOT_AS_ROOT = "cannot run as root: root writes into read-only folders"
ACCEPTED_SKIPS = frozenset({NEEDS_CUDA, FP16_RUNS_ON_THE_GPU, NOT_AS_ROOT})


def launcher_env(**changes: str) -> dict[str, str]:
    """The environment for a bash script of `scripts/` or `data/`: this process's, with PYTHON
    (the interpreter the scripts run, `python3` from PATH by default) set to the one running the
    tests, so they pass without an activated virtual environment; then `changes`."""
    return {**os.environ, "PYTHON": sys.executable, **changes}


def tiny_config(**changes) -> BertConfig:
    """The 2-layer test config (`bert_configs/tiny.json`), with some fields changed."""
    return BertConfig.from_json_file(TINY_CONFIG).replace(**changes)


def random_batch(batch: int = 3, seq: int = 24, vocab: int = 30522, seed: int = 1):
    """(input_ids, token_type_ids, attention_mask) [B, S] of random ids, rows of mixed length."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab, (batch, seq), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, seq // 2 :] = 1
    attention_mask = torch.ones_like(input_ids)
    for row in range(1, batch):  # mixed lengths: row r has r * 5 padded positions
        attention_mask[row, seq - 5 * row :] = 0
        input_ids[row, seq - 5 * row :] = 0
    return input_ids, token_type_ids, attention_mask


def whole_words(tokens: list[str]) -> list[list[int]]:
    """The words of one sequence's real tokens as position lists, from the token strings: a
    "##" piece joins the word of the last token before it that is not [CLS], [SEP] or [PAD]."""
    words: list[list[int]] = []
    for position, token in enumerate(tokens):
        if token in ("[CLS]", "[SEP]", "[PAD]"):
            continue
        if token.startswith("##") and words:
            words[-1].append(position)
        else:
            words.append([position])
    return words


def run_main(script: str, argv: Sequence[str], capsys) -> subprocess.CompletedProcess:
    """An entry script's `main(argv)` in this process, returned as a subprocess run would be
    (exit status, stdout, stderr) for `one_error_line`: a new interpreter would spend about
    1.5 s importing torch before it reads the first flag. `main` turns every ending into an exit
    status and its one line, as for a user (an exception that escapes it fails the test).
    Warnings and errors logged during the run land in its stderr as they would in a process of
    its own (pytest's log capture keeps them from there otherwise); INFO lines do not. The
    caller's working folder is the script's."""
    capsys.readouterr()  # what the test printed before is not the script's
    handler = logging.StreamHandler(sys.stderr)  # capsys's stream, now
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    try:
        status = importlib.import_module(script).main(list(argv))
    finally:
        logging.getLogger().removeHandler(handler)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess([script, *argv], status, captured.out, captured.err)


def one_error_line(result: subprocess.CompletedProcess, status: int = 1) -> str:
    """The one `error:` line of a run that failed with `status`, and no traceback."""
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def write_pretraining_log(path: Path, phases=((128, 0, 5), (512, 5, 3))) -> None:
    """Runs appended to one file, as two entry-script runs sharing --json-summary write it."""
    for seq, first, steps in phases:
        log = MetricLogger(path, use_dllogger=False)
        log.log("PARAMETER", {"Config": ["Namespace(...)"], "SEED": 42})
        log.log("PARAMETER", {"train_start": True, "seq_length": seq})
        for step in range(first + 1, first + steps + 1):
            log.log(
                (0, step),
                {
                    "average_loss": 10.0 - step,
                    "mlm_loss": 9.0 - step,
                    "nsp_loss": 0.69,
                    "learning_rate": 1e-3,
                },
            )
        log.log(
            (),
            {
                "e2e_train_time": 12.5,
                "training_sequences_per_second": 321.0,
                "final_loss": 10.0 - first - steps,
            },
        )
        log.close()


def pretrain_in_process(shards, output, config, log, *flags: str) -> int:
    """`run_pretraining.main` in this process, on the CPU: the exit status."""
    import run_pretraining

    return run_pretraining.main(
        [
            "--do_train",
            "--disable_progress_bar",
            "--no_cuda",
            f"--input_dir={shards}",
            f"--output_dir={output}",
            f"--config_file={config}",
            f"--json-summary={log}",
            *flags,
        ]
    )


def write_shard_file(
    path: Path,
    arrays: Mapping[str, np.ndarray],
    dtypes: Mapping[str, str] = SHARD_DTYPES,
    **options,
) -> Path:
    """One HDF5 shard holding `arrays`, each stored in its dtype from `dtypes` (NVIDIA's by
    default; a name not in it keeps its own); `options` (e.g. compression) go to every dataset."""
    with h5py.File(path, "w") as f:
        for name, values in arrays.items():
            data = np.asarray(values)
            f.create_dataset(name, data=data.astype(dtypes.get(name, data.dtype)), **options)
    return path


def write_random_shards(
    folder: Path,
    files: int = 2,
    rows: int = 48,
    seq: int = 32,
    predictions: int = 5,
    name: str = "random_training",
    seed: int = 0,
) -> list[Path]:
    """HDF5 shards of random token ids (1000-2999) in NVIDIA's layout: `[CLS] A [SEP] B [SEP]`
    with the two halves as segments, `predictions` sorted masked positions in A, random
    next-sentence labels; files named `<name>_<i>.hdf5`. A config with vocab_size 3072 fits."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(files):
        ids = rng.integers(1000, 3000, (rows, seq)).astype("i4")
        ids[:, 0], ids[:, seq // 2], ids[:, -1] = 101, 102, 102
        segments = np.zeros((rows, seq), "i1")
        segments[:, seq // 2 + 1 :] = 1
        # distinct positions, as real shards have: every row has exactly `predictions` labels
        candidates = rng.random((rows, seq // 2 - 1)).argsort(axis=1)[:, :predictions] + 1
        positions = np.sort(candidates, axis=1)
        arrays = {
            "input_ids": ids,
            "input_mask": np.ones((rows, seq), "i1"),
            "segment_ids": segments,
            "masked_lm_positions": positions,
            "masked_lm_ids": np.take_along_axis(ids, positions, axis=1),
            "next_sentence_labels": rng.integers(0, 2, rows),
        }
        paths.append(write_shard_file(folder / f"{name}_{i}.hdf5", arrays))
    return paths


def official_squad_v1_scores(dataset_file: Path, predictions: dict[str, str]) -> dict[str, float]:
    """EM and F1 (percent) as SQuAD v1.1's official script scores `predictions`, restated
    independently of squad.py: answers normalised (lower case, no punctuation, no articles,
    single spaces), F1 over the token bags, the best of a question's answers, 0 for a question
    without a prediction."""

    def normalise(text: str) -> list[str]:
        text = "".join(c for c in text.lower() if c not in string.punctuation)
        return re.sub(r"\b(a|an|the)\b", " ", text).split()

    def f1(prediction: str, truth: str) -> float:
        predicted, true = normalise(prediction), normalise(truth)
        same = sum((collections.Counter(predicted) & collections.Counter(true)).values())
        if same == 0:
            return 0.0
        precision, recall = same / len(predicted), same / len(true)
        return 2 * precision * recall / (precision + recall)

    exact = overlap = total = 0.0
    for article in json.loads(Path(dataset_file).read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] in predictions:
                    truths = [answer["text"] for answer in qa["answers"]]
                    answer = predictions[qa["id"]]
                    exact += max(float(normalise(answer) == normalise(t)) for t in truths)
                    overlap += max(f1(answer, t) for t in truths)
    return {"exact_match": 100 * exact / total, "f1": 100 * overlap / total}


def mrpc_dev_scores(
    weights: Path, config_file: Path, vocab_file: Path, data_dir: Path, max_seq_length: int = 128
) -> dict[str, float]:
    """Accuracy, F1 of label 1 and mean cross-entropy of fine-tuned MRPC weights on `dev.tsv`,
    recomputed one pair at a time and unpadded, independently of run_glue.py's batching, features
    and metrics: the file read with csv, each pair lower-cased, tokenized and cut from the end of
    its longer side to fit [CLS] a [SEP] b [SEP] (NVIDIA's rule)."""
    import torch

    from checkpoint import load_model_weights
    from modeling import BertForSequenceClassification
    from tokenization import BertTokenizer

    tokenizer = BertTokenizer(vocab_file, do_lower_case=True)
    model = BertForSequenceClassification(BertConfig.from_json_file(config_file), 2).eval()
    load_model_weights(model, weights)
    with open(Path(data_dir) / "dev.tsv", encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    counts = collections.Counter()
    loss = 0.0
    for row in rows:
        label, a, b = int(row[0]), tokenizer.tokenize(row[3]), tokenizer.tokenize(row[4])
        while len(a) + len(b) > max_seq_length - 3:
            (a if len(a) > len(b) else b).pop()
        tokens = ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
        ids = torch.tensor([tokenizer.convert_tokens_to_ids(tokens)])
        segments = torch.tensor([[0] * (len(a) + 2) + [1] * (len(b) + 1)])
        with torch.no_grad():
            logits = model(ids, segments, torch.ones_like(ids))[0].double()
        loss -= float(torch.log_softmax(logits, dim=0)[label])
        counts[(int(logits.argmax()), label)] += 1
    true_positives = counts[(1, 1)]
    f1 = 2 * true_positives / (2 * true_positives + counts[(1, 0)] + counts[(0, 1)])
    accuracy = (counts[(1, 1)] + counts[(0, 0)]) / len(rows)
    return {"acc": accuracy, "f1": f1, "eval:loss": loss / len(rows)}


def make_sample_shards(out: Path, dupe_factor: int = 1) -> Path:
    """`scripts/make_sample_shards.sh` into `out`: phase-1 and phase-2 shards of the bundled
    sample (with their held-out test shards), as the quick start builds them."""
    result = subprocess.run(
        ["bash", "scripts/make_sample_shards.sh", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=launcher_env(DUPE_FACTOR=str(dupe_factor)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def plant(folder: Path, age: float = 0.0, **changes) -> Holder:
    """A lock file of another run in `folder`, last refreshed `age` seconds ago."""
    holder = dataclasses.replace(Holder.this_process("other_run.py"), **changes)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_bytes(holder.to_bytes())
    then = time.time() - age
    os.utime(folder / LOCK_NAME, (then, then))
    return holder


TOPICS = ["lobster", "river", "castle", "comet", "violin", "glacier", "harbour", "orchard", "canal"]


def tiny_dump(path) -> None:
    """A pages-articles XML dump of nine short articles with some wiki markup (one tag a line,
    as real dumps are and as WikiExtractor reads them)."""
    lines = [
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10">',
        "  <siteinfo>",
        "    <sitename>Wikipedia</sitename>",
        "    <dbname>enwiki</dbname>",
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>",
        "    <case>first-letter</case>",
        "    <namespaces>",
        '      <namespace key="0" case="first-letter" />',
        # WikiExtractor extracts nothing from a dump whose siteinfo lacks the Template namespace.
        '      <namespace key="10" case="first-letter">Template</namespace>',
        "    </namespaces>",
        "  </siteinfo>",
    ]
    for number, topic in enumerate(TOPICS, start=1):
        lines += [
            "  <page>",
            f"    <title>{topic.title()}</title>",
            "    <ns>0</ns>",
            f"    <id>{number}</id>",
            "    <revision>",
            f"      <id>{100 + number}</id>",
            f"      <text xml:space=\"preserve\">'''{topic.title()}''' is the subject of "
            f"this [[article|page]]. The {topic} was first described in {1800 + number}. "
            f"Many people visit the {topic} every year. It is well known in the region.",
            "",
            "== History ==",
            f"In {1900 + number} the {topic} changed. Dr. Smith wrote about it. The records "
            f"show {number} events. They are kept in the city archive.</text>",
            "    </revision>",
            "  </page>",
        ]
    lines.append("</mediawiki>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def assert_flag_refused(parser, argv: list[str], message: str, capsys) -> None:
    """`parser` (whose prog is prog.py) refuses `argv` with exit status 2 and one error line
    that names the flag (`argv[0]`) and holds `message`."""
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prog.py: error: argument ")
    assert argv[0] in err[0] and message in err[0]


class _FullDiskFile(io.FileIO):
    """A file on a simulated disk of `disk["free"]` bytes: a write past them fails, as on a
    full disk, with ENOSPC after writing what still fitted."""

    disk: dict[str, int]

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        room = self.disk["free"]
        if len(view) > room:
            if room:
                super().write(view[:room])
            self.disk["free"] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
        self.disk["free"] -= len(view)
        return super().write(view)


def fill_disk(monkeypatch, folder: Path, free: int = 0, reported: int | None = None) -> dict:
    """Make `folder` behave like a disk with `free` bytes left for files opened for writing
    under it (by `open`, as every writer here opens its files); returns the counter, whose
    "free" may be raised again. shutil.disk_usage reports the same, or `reported` (a disk that
    another process fills after the check)."""
    disk = {"free": free}
    real_open, real_usage = builtins.open, shutil.disk_usage
    root = str(Path(folder).resolve())

    def fake_open(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, *a):
        named = isinstance(file, (str, bytes, os.PathLike))
        under = named and os.path.abspath(os.fsdecode(file)).startswith(root)
        if not under or not any(flag in mode for flag in "wax+"):
            return real_open(file, mode, buffering, encoding, errors, newline, *a)
        raw_mode = mode.replace("b", "").replace("t", "")
        raw = _FullDiskFile(file, raw_mode)
        raw.disk = disk
        if buffering == 0:
            return raw
        buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
        if "b" in mode:
            return buffered
        return io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline)

    def fake_usage(path):
        usage = real_usage(path)
        if os.path.abspath(os.fsdecode(path)).startswith(root):
            return usage._replace(free=disk["free"] if reported is None else reported)
        return usage

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # TensorBoard's file layer calls io.open
    monkeypatch.setattr(shutil, "disk_usage", fake_usage)
    return disk


def plant_file_lock(path: Path, **changes) -> Path:
    """The lock of another live run (this process's PID, another token) on the single-file
    output `path`, as `OutputLock(path, ..., single_file=True)` takes it; returns the lock."""
    import dataclasses

    from output_lock import Holder, OutputLock

    where = Path(OutputLock(path, "other_run.py", single_file=True).store.where)
    holder = dataclasses.replace(Holder.this_process("other_run.py"), **changes)
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_bytes(holder.to_bytes())
    return where
