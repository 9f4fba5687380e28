"""From a checkpoint to the fine-tuning accuracy and stability tables, in one command.

    python -m benchmarks.stability --init_checkpoint CKPT --config_file CFG --vocab_file VOCAB \
        --tasks mrpc,sst-2,squad --seeds 0,1,2,3,4 --glue_dir GLUE --squad_dir SQUAD \
        --output_dir OUT [--learning_rate ...] [--recipe mrpc:learning_rate=5e-5,batch_size=32]

Owns the plan (tasks, seeds, recipes: `RECIPES_HELP`), running every task and seed through the
real launchers (`scripts/run_glue.sh` with its 16 arguments, `scripts/run_squad.sh` with HEAD's
14, mode "train eval", into `OUT/<task>/seed_<N>/`, with this interpreter as their `PYTHON`),
resuming seed by seed (`earlier_results`), and the outputs: `results.md` with NVIDIA's accuracy
and stability tables, `results.json` and `spread.png` (`write_outputs`). A failed seed is
reported and the others still run; bad input is one line, exit 2, before any training. Training
and scoring are the entry scripts'; OUT is held with `output_lock.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cli
import glue
import storage
from errors import BertError, MissingDependency, UsageError, refuse_if_nothing_usable
from fileio import (
    JsonError,
    WriteError,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    describe_os_error,
    read_json,
    sha256_file,
)
from logger import read_dllogger_file

REPO = Path(__file__).resolve().parent.parent
PROG = "benchmarks.stability"
PRECISIONS = ("fp16", "fp32", "tf32", "bf16", "fp32_strict")  # the launchers' words
RESULT_FILE = "result.json"
LOG_FILE = "launcher.log"
LOG_TAIL_LINES = 20
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------- tasks


@dataclasses.dataclass(frozen=True)
class Metric:
    key: str  # in the launcher's dllogger summary
    label: str  # the row of the stability table
    scale: float  # to a percentage


@dataclasses.dataclass(frozen=True)
class Task:
    name: str  # canonical: glue.py's names, or "squad"
    title: str
    metrics: tuple[Metric, ...]

    @property
    def is_squad(self) -> bool:
        return self.name == "squad"


_ACC = Metric("acc", "Accuracy %", 100.0)
_GLUE_METRICS = {
    "cola": (Metric("mcc", "MCC %", 100.0),),
    "mrpc": (_ACC, Metric("f1", "F1 %", 100.0)),
    "qqp": (_ACC, Metric("f1", "F1 %", 100.0)),
    "sts-b": (Metric("pearson", "Pearson %", 100.0), Metric("spearmanr", "Spearman %", 100.0)),
    "mnli": (_ACC, Metric("mnli-mm_acc", "Mismatched accuracy %", 100.0)),
}
# SQuAD's rows as NVIDIA's stability table names them.
_SQUAD_METRICS = (Metric("exact_match", "Exact Match %", 1.0), Metric("F1", "f1 %", 1.0))

# NVIDIA HEAD's dgxa100-80g presets, per GPU on 8 GPUs; other GLUE tasks: run_glue.sh's defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "mrpc": {"learning_rate": 1.8e-5, "batch_size": 16, "epochs": 3.0, "warmup_proportion": 0.3},
    "sst-2": {"learning_rate": 1e-5, "batch_size": 128, "epochs": 3.0, "warmup_proportion": 0.1},
    "squad": {"learning_rate": 4.6e-5, "batch_size": 32, "epochs": 2.0, "warmup_proportion": 0.2},
}
GLUE_DEFAULTS = {"learning_rate": 2.4e-5, "batch_size": 16, "epochs": 3.0, "warmup_proportion": 0.1}

#: How the recipes are chosen (the epilog of --help).
RECIPES_HELP = """\
Recipes. Defaults are NVIDIA HEAD's dgxa100-80g presets (scripts/configs/glue_config.sh and
squad_config.sh, 8 GPUs), per GPU as the launchers take them: MRPC batch 16, lr 1.8e-5, warm-up
0.3, 3 epochs; SST-2 batch 128, lr 1e-5, warm-up 0.1, 3 epochs; SQuAD batch 32, lr 4.6e-5,
warm-up 0.2, 2 epochs; other GLUE tasks take run_glue.sh's defaults (batch 16, lr 2.4e-5,
warm-up 0.1, 3 epochs). Precision: the presets' fp16 on a GPU, fp32 on a CPU. The batch is per
GPU: on fewer than 8 GPUs the global batch is smaller than NVIDIA's. `--learning_rate`,
`--batch_size`, `--epochs`, `--warmup_proportion`, `--precision` and `--max_steps` override
every task; `--recipe TASK:key=value,...` (repeatable) overrides one task, after them."""


def get_task(name: str) -> Task:
    """The task of a name as users write it (`squad`, `MRPC`, `sst2`, ...); a ValueError names
    the accepted ones."""
    text = name.strip().lower()
    if text == "squad":
        return Task("squad", "SQuAD", _SQUAD_METRICS)
    if text == "mnli-mm":
        raise ValueError("mnli-mm is MNLI's mismatched evaluation: use mnli, which scores both")
    try:
        canonical = glue.normalize_task_name(text)
    except BertError:
        known = ", ".join(n for n in glue.TASK_NAMES if n != "mnli-mm")
        raise ValueError(f"unknown task {name!r}; expected squad or a GLUE task: {known}") from None
    processor = glue.get_processor(canonical)
    return Task(canonical, processor.folder, _GLUE_METRICS.get(canonical, (_ACC,)))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One task's fine-tuning settings, as the launchers take them."""

    learning_rate: float
    batch_size: int  # per GPU
    epochs: float
    warmup_proportion: float
    precision: str
    max_steps: int  # -1: the epochs decide


def _precision(text: str) -> str:
    if text not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(PRECISIONS)}, got {text!r}")
    return text


RECIPE_TYPES = {
    "learning_rate": cli.positive_float,
    "batch_size": cli.positive_int,
    "epochs": cli.positive_float,
    "warmup_proportion": cli.proportion,
    "precision": _precision,
    "max_steps": cli.positive_int_or_minus_one,
}


# ------------------------------------------------------------------------------- flags


def _items(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
    return items


def task_list(text: str) -> tuple[Task, ...]:
    tasks = []
    for item in _items(text, "tasks"):
        try:
            task = get_task(item)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        if task in tasks:
            raise argparse.ArgumentTypeError(f"{task.name} is named twice")
        tasks.append(task)
    return tuple(tasks)


def seed_list(text: str) -> tuple[int, ...]:
    seeds: list[int] = []
    for item in _items(text, "seeds"):
        seed = cli.seed_value(item)
        if seed in seeds:
            raise argparse.ArgumentTypeError(f"seed {seed} is named twice")
        seeds.append(seed)
    return tuple(seeds)


def recipe_override(text: str) -> tuple[str, dict[str, Any]]:
    """`TASK:key=value,...` -> (canonical task name, {key: checked value})."""
    name, colon, body = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError(f"expected TASK:key=value,..., got {text!r}")
    try:
        task = get_task(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    values: dict[str, Any] = {}
    for item in _items(body, "key=value pairs"):
        key, equals, value = (part.strip() for part in item.partition("="))
        if key not in RECIPE_TYPES or not equals:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {item!r} is not key=value with a key among {', '.join(RECIPE_TYPES)}"
            )
        if key in values:
            raise argparse.ArgumentTypeError(f"{text!r}: {key} is given twice")
        try:
            values[key] = RECIPE_TYPES[key](value)
        except argparse.ArgumentTypeError as err:
            raise argparse.ArgumentTypeError(f"{task.name} {key} {err}") from None
    return task.name, values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], epilog=RECIPES_HELP
    )
    add = parser.add_argument
    add("--init_checkpoint", required=True, help="pre-trained weights (any supported format)")
    add("--config_file", required=True)
    add("--vocab_file", required=True)
    add("--output_dir", required=True, help="OUT: one folder per task and seed, and the tables")
    add("--tasks", type=task_list, default=task_list("mrpc,sst-2,squad"), help="comma-separated")
    add("--seeds", type=seed_list, default=seed_list("0,1,2,3,4,5,6,7,8,9"), help="as NVIDIA: 10")
    add("--glue_dir", help="one folder per GLUE task in NVIDIA's layout (MRPC/, SST-2/, ...)")
    add("--squad_dir", help="train-v1.1.json and dev-v1.1.json")
    add("--num_gpu", type=cli.process_count, help="default: every GPU, else 1 process")
    for key, kind in RECIPE_TYPES.items():
        add(f"--{key}", type=kind, help="for every task (default: the task's preset)")
    add("--recipe", type=recipe_override, action="append", default=[], metavar="TASK:K=V,...")
    add("--dry_run", action="store_true", help="print the launcher commands; run nothing")
    add("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------- plan


@dataclasses.dataclass(frozen=True)
class TaskRun:
    task: Task
    recipe: Recipe
    data_dir: Path
    data_files: tuple[Path, ...]  # train first, then dev


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything checked, before any training."""

    runs: tuple[TaskRun, ...]
    seeds: tuple[int, ...]
    init_checkpoint: str
    config_file: Path
    vocab_file: Path
    num_gpu: int
    device: str  # the first GPU's name, or "CPU"
    output_dir: Path


def _visible_gpus() -> tuple[int, str]:
    """(the number of GPUs this process sees, the name of the first one, or "CPU")."""
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        return 0, "CPU"
    return torch.cuda.device_count(), torch.cuda.get_device_name(0)


def build_recipes(args: argparse.Namespace, gpus: int) -> dict[str, Recipe]:
    """Preset, then the flags for every task, then `--recipe` for one task."""
    names = [task.name for task in args.tasks]
    overrides: dict[str, dict[str, Any]] = {}
    for name, values in args.recipe:
        if name not in names:
            raise UsageError(f"--recipe {name}:...: {name} is not among --tasks {','.join(names)}")
        for key in values:
            if key in overrides.get(name, {}):
                raise UsageError(f"--recipe gives {name} {key} twice")
        overrides.setdefault(name, {}).update(values)
    recipes = {}
    for name in names:
        values = dict(PRESETS.get(name, GLUE_DEFAULTS))
        values |= {"precision": "fp16" if gpus else "fp32", "max_steps": -1}
        values |= {k: getattr(args, k) for k in RECIPE_TYPES if getattr(args, k) is not None}
        recipes[name] = Recipe(**(values | overrides.get(name, {})))
        if recipes[name].precision == "fp16" and not gpus:
            raise UsageError(f"{name}: precision fp16 needs a CUDA GPU and none is in use here")
    return recipes


def squad_version(squad_dir: Path) -> str:
    """The launcher's rule: a folder whose name ends in v2.0 holds SQuAD v2.0."""
    return "2.0" if os.fspath(squad_dir).rstrip("/").endswith("v2.0") else "1.1"


def _task_data(task: Task, args: argparse.Namespace) -> tuple[Path, tuple[Path, ...]]:
    """The task's data folder and files (train, dev, ...), each checked."""
    if task.is_squad:
        if not args.squad_dir:
            raise UsageError("--squad_dir is needed for squad")
        folder = cli.check_input_dir(args.squad_dir, "--squad_dir").absolute()
        version = squad_version(folder)
        names = (f"train-v{version}.json", f"dev-v{version}.json")
        flag = "--squad_dir"
    else:
        if not args.glue_dir:
            raise UsageError(f"--glue_dir is needed for {task.name}")
        processor = glue.get_processor(task.name)
        root = cli.check_input_dir(args.glue_dir, "--glue_dir").absolute()
        folder = cli.check_input_dir(root / processor.folder, f"--glue_dir {task.name} folder")
        names = (processor.train_file, processor.dev_file)
        if task.name == "mnli":  # its mismatched dev set is scored too
            names += (glue.get_processor("mnli-mm").dev_file,)
        flag = f"--glue_dir {task.name}"
    files = tuple(cli.check_input_file(folder / name, f"{flag} file") for name in names)
    return folder, files


def check_arguments(args: argparse.Namespace) -> Plan:
    """Every flag, file and folder before any training; one UsageError line on the first
    problem."""
    if shutil.which("bash") is None:
        raise MissingDependency("needs bash to run the launchers")
    seq = 384 if any(task.is_squad for task in args.tasks) else 128  # the launchers' lengths
    config = cli.check_input_file(args.config_file, "--config_file").absolute()
    vocab = cli.check_input_file(args.vocab_file, "--vocab_file").absolute()
    cli.check_model_files(config, vocab, seq)
    cli.check_weights_path(args.init_checkpoint, "--init_checkpoint")
    gpus, device = _visible_gpus()
    num_gpu = args.num_gpu or max(gpus, 1)
    if gpus and num_gpu > gpus:
        raise UsageError(f"--num_gpu {num_gpu}: only {gpus} GPUs are visible")
    recipes = build_recipes(args, gpus)
    runs = []
    for task in args.tasks:
        folder, files = _task_data(task, args)
        runs.append(TaskRun(task, recipes[task.name], folder, files))
    out = cli.check_output_dir(args.output_dir, "--output_dir").absolute()
    checkpoint = args.init_checkpoint
    if not storage.is_remote(checkpoint):
        checkpoint = os.fspath(Path(checkpoint).absolute())
    inputs = {"--init_checkpoint": checkpoint, "--config_file": config, "--vocab_file": vocab}
    inputs |= {f"{run.task.name} data": file for run in runs for file in run.data_files}
    folders = {f"--output_dir {run.task.name} folder": out / run.task.name for run in runs}
    for run in runs:
        _check_task_folder(out, run.task.name)
    cli.check_not_overwriting(inputs, {}, folders)
    return Plan(tuple(runs), args.seeds, checkpoint, config, vocab, num_gpu, device, out)


def _check_task_folder(out: Path, name: str) -> None:
    """OUT/<task> is missing or a real folder: seed folders are cleared only inside OUT."""
    folder = out / name
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UsageError(f"--output_dir {out}: {folder} is not a plain folder; move it away")


# ------------------------------------------------------------------------------- settings


def _checkpoint_identity(path: str) -> dict[str, Any]:
    """What tells one checkpoint from another without reading it whole: path, sizes, times."""
    if storage.is_remote(path):
        return {"path": path}
    target = Path(path) if os.path.exists(path) else Path(f"{path}.index")
    files = sorted(p for p in target.iterdir() if p.is_file()) if target.is_dir() else [target]
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return {"path": path, "files": [list(s) for s in stats]}


def settings_of(plan: Plan) -> dict[str, Any]:
    """The settings a table's seeds must share: {"common": ..., "tasks": {task: ...}}."""
    common = {
        "init_checkpoint": _checkpoint_identity(plan.init_checkpoint),
        "config_sha256": sha256_file(plan.config_file),
        "vocab_sha256": sha256_file(plan.vocab_file),
        "num_gpu": plan.num_gpu,
    }
    tasks = {
        run.task.name: {
            "recipe": dataclasses.asdict(run.recipe),
            "data_sha256": {file.name: sha256_file(file) for file in run.data_files},
        }
        for run in plan.runs
    }
    return {"format": FORMAT_VERSION, "common": common, "tasks": tasks}


def _difference(old: Any, new: Any, where: str = "") -> str | None:
    """The first setting that differs, as `where: old there, new now`; None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _difference(old.get(key), new.get(key), f"{where} {key}".strip())
            if found:
                return found
        return None
    return None if old == new else f"{where}: {json.dumps(old)} there, {json.dumps(new)} now"


def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except (OSError, JsonError):
        return None


# ------------------------------------------------------------------------------- seeds


@dataclasses.dataclass(frozen=True)
class SeedResult:
    task: str
    seed: int
    ok: bool
    ran: bool  # False: finished by an earlier command
    folder: Path
    values: dict[str, float] = dataclasses.field(default_factory=dict)  # metric key -> %
    train_time: float | None = None
    sequences_per_second: float | None = None
    exit_status: int | None = None
    reason: str = ""
    log_tail: tuple[str, ...] = ()
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)  # the fingerprint
    device: str = ""


def seed_folder(out: Path, task: str, seed: int) -> Path:
    return out / task / f"seed_{seed}"


def _seed_fingerprint(settings: dict[str, Any], task: str) -> dict[str, Any]:
    return {"common": settings["common"], "task": settings["tasks"][task]}


def _earlier_result(path: Path, out: Path) -> SeedResult | None:
    """The finished seed that `path` (a result.json) records; None if it is not one."""
    record = _read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("values"), dict):
        return None
    task, seed = record.get("task"), record.get("seed")
    if not isinstance(task, str) or not isinstance(seed, int) or path.parent.is_symlink():
        return None
    if path.parent != seed_folder(out, task, seed) or not isinstance(record.get("settings"), dict):
        return None  # a copy from elsewhere, not this folder's own result
    rates = (record.get("e2e_train_time"), record.get("training_sequences_per_second"))
    if not all(_is_number(value) for value in rates):
        return None
    return SeedResult(
        task,
        seed,
        ok=True,
        ran=False,
        folder=path.parent,
        values=record["values"],
        train_time=record.get("e2e_train_time"),
        sequences_per_second=record.get("training_sequences_per_second"),
        settings=record["settings"],
        device=str(record.get("device", "")),
    )


def earlier_results(plan: Plan, settings: dict) -> dict[tuple[str, int], SeedResult]:
    """The seeds OUT holds finished, by (task, seed). Every one must share this command's
    common settings, and those of this command's tasks their recipe and data: otherwise one
    UsageError, before any training.

    A seed is finished when its folder holds `result.json`, written atomically only after the
    launcher exited 0 and its `dllogger.json` gave every metric; a rerun skips finished seeds
    and clears and re-runs the others (a killed run's folder included), only ever inside OUT.
    The device is recorded per seed, not compared: the table says when seeds ran on different
    devices."""
    found = {}
    tasks = {run.task.name: run.task for run in plan.runs}
    for path in sorted(plan.output_dir.glob(f"*/seed_*/{RESULT_FILE}")):
        result = _earlier_result(path, plan.output_dir)
        if result is None:
            continue
        difference = _difference(result.settings.get("common"), settings["common"])
        if result.task in tasks and not difference:
            new = settings["tasks"][result.task]
            difference = _difference(result.settings.get("task"), new, result.task)
        if difference:
            raise UsageError(
                f"--output_dir {plan.output_dir} holds results of other settings "
                f"({path.relative_to(plan.output_dir)}: {difference}); seeds of two settings "
                "never share a table: use another --output_dir"
            )
        task = tasks.get(result.task)
        if task and all(_is_number(result.values.get(m.key)) for m in task.metrics):
            found[(result.task, result.seed)] = result
    return found


def clear_folder(folder: Path, out: Path) -> None:
    """Remove an unfinished seed's folder (a link: the link only), refusing any path that does
    not lie inside OUT."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
        return
    if not folder.exists():
        return
    if not folder.resolve().is_relative_to(out.resolve()):
        raise BertError(f"{folder} lies outside --output_dir {out}; not clearing it")
    shutil.rmtree(folder)


def launcher_command(run: TaskRun, seed: int, plan: Plan, folder: Path) -> list[str]:
    """`bash scripts/run_glue.sh` (16 arguments) or `bash scripts/run_squad.sh` (HEAD's 14)."""
    r = run.recipe
    if run.task.is_squad:
        arguments = [plan.init_checkpoint, r.epochs, r.batch_size, r.learning_rate]
        arguments += [r.warmup_proportion, r.precision, plan.num_gpu, seed, run.data_dir]
        arguments += [plan.vocab_file, folder, "train eval", plan.config_file, r.max_steps]
        script = "run_squad.sh"
    else:
        arguments = [plan.init_checkpoint, run.data_dir, plan.vocab_file, plan.config_file]
        arguments += [folder, run.task.name, plan.num_gpu, r.batch_size, 1, r.learning_rate]
        arguments += [r.warmup_proportion, r.epochs, r.max_steps, r.precision, seed, "train eval"]
        script = "run_glue.sh"
    return ["bash", os.fspath(REPO / "scripts" / script), *map(str, arguments)]


def launcher_env(dry_run: bool) -> dict[str, str]:
    """The launchers run $PYTHON: this interpreter, so the child sees the same packages."""
    return os.environ | {"PYTHON": sys.executable, "DRY_RUN": "1" if dry_run else "0"}


def stream(command: list[str], log: Path, cwd: Path) -> int:
    """Run `command`, its output both to stdout and to `log`; its exit status."""
    with open(log, "wb", buffering=0) as handle:  # unbuffered: nothing left to fail on close
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=launcher_env(False),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        try:
            for line in process.stdout:
                print(line, end="", flush=True)
                data = memoryview(line.encode("utf-8"))
                while data:
                    data = data[handle.write(data) or 0 :]
            return process.wait()
        except OSError as err:  # the log cannot be written: no run goes on unrecorded
            _stop(process)
            raise WriteError(
                f"cannot write {log}: {describe_os_error(err)}; the launcher was stopped"
            ) from err
        except KeyboardInterrupt:
            _stop(process)
            raise


def _stop(process: subprocess.Popen) -> None:
    """Interrupt the launcher as Ctrl-C would, killing it if it has not ended in 30 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_summary(folder: Path, seed: int) -> dict[str, Any]:
    """The final (empty-step) records of the seed's dllogger.json, merged; a BertError when the
    log is missing or belongs to another seed."""
    path = folder / "dllogger.json"
    if not path.is_file():
        raise BertError(f"{path}: missing")
    summary: dict[str, Any] = {}
    for record in read_dllogger_file(path):
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        if record.get("step") == "PARAMETER" and "SEED" in data and data["SEED"] != seed:
            raise BertError(f"{path}: records seed {data['SEED']}, not {seed}")
        if record.get("step") == []:
            summary |= data
    return summary


def _log_tail(log: Path) -> tuple[str, ...]:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    return tuple(lines[-LOG_TAIL_LINES:])


def _failure(name: str, seed: int, folder: Path, reason: str, status: int) -> SeedResult:
    return SeedResult(
        name,
        seed,
        ok=False,
        ran=True,
        folder=folder,
        exit_status=status,
        reason=reason,
        log_tail=_log_tail(folder / LOG_FILE),
    )


def run_seed(run: TaskRun, seed: int, plan: Plan, settings: dict) -> SeedResult:
    """Clear the seed's folder, run the launcher, read its metrics, write result.json."""
    name = run.task.name
    folder = seed_folder(plan.output_dir, name, seed)
    clear_folder(folder, plan.output_dir)
    folder.mkdir(parents=True)
    log = folder / LOG_FILE
    print(f"{PROG}: {name} seed {seed}: running the launcher (log {log})", flush=True)
    status = stream(launcher_command(run, seed, plan, folder), log, folder)
    if status != 0:
        return _failure(name, seed, folder, f"the launcher exited with status {status}", status)
    try:
        summary = read_summary(folder, seed)
    except BertError as err:
        return _failure(name, seed, folder, str(err), status)
    wanted = [metric.key for metric in run.task.metrics]
    wanted += ["e2e_train_time", "training_sequences_per_second"]
    missing = [key for key in wanted if not _is_number(summary.get(key))]
    if missing:
        reason = f"{folder / 'dllogger.json'} has no final {', '.join(missing)}"
        return _failure(name, seed, folder, reason, status)
    values = {m.key: summary[m.key] * m.scale for m in run.task.metrics}
    train_time = summary["e2e_train_time"]
    rate = summary["training_sequences_per_second"]
    record = {
        "task": name,
        "seed": seed,
        "values": values,
        "e2e_train_time": train_time,
        "training_sequences_per_second": rate,
        "device": plan.device,
        "settings": _seed_fingerprint(settings, name),
    }
    atomic_write_json(folder / RESULT_FILE, record)
    print(f"{PROG}: {name} seed {seed}: done: {_scores(run.task, values)}", flush=True)
    return SeedResult(name, seed, True, True, folder, values, train_time, rate, device=plan.device)


def _scores(task: Task, values: dict[str, float]) -> str:
    return ", ".join(f"{metric.label} {values[metric.key]:.2f}" for metric in task.metrics)


# ------------------------------------------------------------------------------- tables


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize(run: TaskRun, results: list[SeedResult]) -> dict[str, Any]:
    """Per-seed values, mean and sample standard deviation (n - 1) of each metric, and the
    mean time to train and training rate, over the finished seeds."""
    done = [result for result in results if result.ok]
    metrics = {}
    for metric in run.task.metrics:
        values = [result.values[metric.key] for result in done]
        metrics[metric.key] = {
            "label": metric.label,
            "per_seed": {str(r.seed): r.values[metric.key] if r.ok else None for r in results},
            "mean": _mean(values),
            "standard_deviation": statistics.stdev(values) if len(values) > 1 else None,
        }
    return {
        "title": run.task.title,
        "recipe": dataclasses.asdict(run.recipe),
        "data_dir": os.fspath(run.data_dir),
        "finished_seeds": len(done),
        "metrics": metrics,
        "e2e_train_time": {
            "per_seed": {str(r.seed): r.train_time for r in results},
            "mean": _mean([r.train_time for r in done]),
        },
        "training_sequences_per_second": {
            "per_seed": {str(r.seed): r.sequences_per_second for r in results},
            "mean": _mean([r.sequences_per_second for r in done]),
        },
        "seeds": {str(r.seed): _seed_record(r) for r in results},
    }


def _seed_record(result: SeedResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "status": "ok" if result.ok else "failed",
        "ran_now": result.ran,
        "folder": os.fspath(result.folder),
        "device": result.device or None,
    }
    if not result.ok:
        record |= {
            "exit_status": result.exit_status,
            "reason": result.reason,
            "log": os.fspath(result.folder / LOG_FILE),
            "log_tail": list(result.log_tail),
        }
    return record


def accuracy_table(plan: Plan, summaries: dict[str, dict]) -> list[str]:
    lines = [
        "| Task | GPUs | Batch size / GPU | Precision | Metric | Mean of seeds | Finished seeds "
        "| Time to train (s) | Training sequences/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in plan.runs:
        summary = summaries[run.task.name]
        for metric in run.task.metrics:
            cells = [
                run.task.title,
                str(plan.num_gpu) if plan.device != "CPU" else "none (CPU)",
                str(run.recipe.batch_size),
                run.recipe.precision,
                metric.label,
                _fmt(summary["metrics"][metric.key]["mean"]),
                f"{summary['finished_seeds']} of {len(plan.seeds)}",
                _fmt(summary["e2e_train_time"]["mean"], ".1f"),
                _fmt(summary["training_sequences_per_second"]["mean"], ".2f"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def stability_table(plan: Plan, run: TaskRun, summary: dict) -> list[str]:
    """NVIDIA's layout: `| Accuracy Metric | Seed 0 | ... | Mean | Standard Deviation |`."""
    head = ["Accuracy Metric", *(f"Seed {seed}" for seed in plan.seeds), "Mean"]
    lines = ["| " + " | ".join([*head, "Standard Deviation"]) + " |"]
    lines.append("|" + "---|" * (len(head) + 1))
    for metric in run.task.metrics:
        numbers = summary["metrics"][metric.key]
        cells = [metric.label]
        for seed in plan.seeds:
            value = numbers["per_seed"][str(seed)]
            cells.append("failed" if value is None else _fmt(value))
        cells += [_fmt(numbers["mean"]), _fmt(numbers["standard_deviation"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _devices(summaries: dict[str, dict]) -> str:
    """The machines the table's finished seeds ran on; a warning when they differ."""
    seeds = [seed for summary in summaries.values() for seed in summary["seeds"].values()]
    names = sorted({seed["device"] or "not recorded" for seed in seeds if seed["status"] == "ok"})
    if len(names) > 1:
        return f"seeds ran on different devices ({', '.join(names)}): times do not compare"
    return f"device {names[0]}" if names else "no seed finished"


def markdown(plan: Plan, summaries: dict[str, dict], failures: list[SeedResult]) -> str:
    seeds = ", ".join(map(str, plan.seeds))
    processes = f"{plan.num_gpu} GPU(s)" if plan.device != "CPU" else f"{plan.num_gpu} process(es)"
    lines = [
        "# Fine-tuning accuracy and stability",
        "",
        f"Checkpoint `{plan.init_checkpoint}`, config `{plan.config_file}`, {processes}, "
        f"{_devices(summaries)}, seeds {seeds}. Means over the finished seeds; standard "
        "deviation: the sample one (n - 1). Written by `python -m benchmarks.stability`; every "
        "per-seed number is in results.json.",
        "",
        "## Fine-tuning accuracy results",
        "",
        *accuracy_table(plan, summaries),
        "",
        "## Fine-tuning stability test",
    ]
    for run in plan.runs:
        r = run.recipe
        lines += [
            "",
            f"### {run.task.title}",
            "",
            f"{r.precision}, batch size {r.batch_size} per GPU, learning rate {r.learning_rate}, "
            f"warm-up {r.warmup_proportion}, {r.epochs} epochs"
            + (f", max steps {r.max_steps}" if r.max_steps > 0 else "")
            + ".",
            "",
            *stability_table(plan, run, summaries[run.task.name]),
        ]
    if failures:
        lines += ["", "## Failed seeds", ""]
        for failure in failures:
            last = failure.log_tail[-1].replace("`", "'") if failure.log_tail else "(empty)"
            lines.append(
                f"- {failure.task} seed {failure.seed}: {failure.reason}; log "
                f"`{failure.folder / LOG_FILE}`, last line: `{last}`"
            )
    return "\n".join(lines) + "\n"


def plot_spread(plan: Plan, summaries: dict[str, dict], path: Path) -> None:
    """One panel per task: each metric's per-seed values as points over a box, PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        1, len(plan.runs), figsize=(3.2 * len(plan.runs) + 1, 3.8), squeeze=False
    )
    for ax, run in zip(axes[0], plan.runs, strict=True):
        metrics = summaries[run.task.name]["metrics"]
        for index, metric in enumerate(run.task.metrics):
            values = [v for v in metrics[metric.key]["per_seed"].values() if v is not None]
            if not values:
                continue
            ax.boxplot(values, positions=[index], widths=0.5, showfliers=False)
            step = 0.3 / max(len(values) - 1, 1)  # the seeds side by side over the box
            offsets = [
                index - 0.15 + step * i if len(values) > 1 else index for i in range(len(values))
            ]
            ax.scatter(offsets, values, s=14, zorder=3)
        ax.set_xticks(range(len(run.task.metrics)), [m.label for m in run.task.metrics])
        ax.set_xlim(-0.6, len(run.task.metrics) - 0.4)
        ax.set_title(f"{run.task.title} ({summaries[run.task.name]['finished_seeds']} seeds)")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3, axis="y")
    figure.suptitle("per-seed spread (benchmarks.stability)", fontsize=9)
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, dpi=110, format="png"))
    plt.close(figure)


# ------------------------------------------------------------------------------- flow


def dry_run(plan: Plan, earlier: dict[tuple[str, int], SeedResult]) -> None:
    """Print the launcher commands (the launchers' DRY_RUN=1) of the seeds that would run."""
    for run in plan.runs:
        for seed in plan.seeds:
            if (run.task.name, seed) in earlier:
                print(f"{PROG}: {run.task.name} seed {seed}: finished, would be skipped")
                continue
            folder = seed_folder(plan.output_dir, run.task.name, seed)
            command = launcher_command(run, seed, plan, folder)
            done = subprocess.run(
                command, env=launcher_env(True), capture_output=True, text=True, check=False
            )
            print(done.stdout, end="")
            if done.returncode != 0:
                raise BertError(f"{command[1]} refused its arguments: {done.stderr.strip()}")


def train_all(
    plan: Plan, settings: dict, earlier: dict[tuple[str, int], SeedResult]
) -> list[tuple[TaskRun, list[SeedResult]]]:
    """Every task and seed in order: a seed finished earlier is skipped, the others run one
    after the other."""
    outcome = []
    for run in plan.runs:
        results = []
        for seed in plan.seeds:
            result = earlier.get((run.task.name, seed))
            if result is not None:
                print(f"{PROG}: {run.task.name} seed {seed}: finished earlier, skipped")
            else:
                result = run_seed(run, seed, plan, settings)
            results.append(result)
        outcome.append((run, results))
    return outcome


def write_outputs(
    plan: Plan, settings: dict, outcome: list[tuple[TaskRun, list[SeedResult]]]
) -> tuple[str, list[SeedResult]]:
    """results.json, results.md and spread.png in OUT; the Markdown and the failed seeds.

    `results.md`: the accuracy table (task, GPUs, batch per GPU, precision, metric, mean over the
    finished seeds, time to train = mean `e2e_train_time`, mean `training_sequences_per_second`),
    then one stability table per task headed `Seed N`, `Mean`, `Standard Deviation` as NVIDIA's
    README. The standard deviation is the sample one (n - 1), as NVIDIA's; metrics are
    percentages from our dllogger names (`acc`, `f1`, `mcc`, `pearson`, `spearmanr`,
    `mnli-mm_acc` times 100; SQuAD's `exact_match` and `F1`)."""
    summaries = {run.task.name: summarize(run, results) for run, results in outcome}
    failures = [result for _, results in outcome for result in results if not result.ok]
    text = markdown(plan, summaries, failures)
    document = {
        "command": PROG,
        "standard_deviation": "sample (n - 1)",
        "seeds": list(plan.seeds),
        "settings": settings,
        "init_checkpoint": plan.init_checkpoint,
        "config_file": os.fspath(plan.config_file),
        "vocab_file": os.fspath(plan.vocab_file),
        "num_gpu": plan.num_gpu,
        "device": plan.device,
        "tasks": summaries,
        "failed": [
            {"task": f.task, "seed": f.seed, "reason": f.reason, "log": _seed_record(f)["log"]}
            for f in failures
        ],
    }
    atomic_write_json(plan.output_dir / "results.json", document, indent=2)
    atomic_write_text(plan.output_dir / "results.md", text)
    if any(summary["finished_seeds"] for summary in summaries.values()):
        plot_spread(plan, summaries, plan.output_dir / "spread.png")
    else:  # an earlier command's plot would not match these tables
        (plan.output_dir / "spread.png").unlink(missing_ok=True)
    return text, failures


def report_failures(plan: Plan, failures: list[SeedResult], total: int) -> None:
    for failure in failures:
        print(f"\n{PROG}: {failure.task} seed {failure.seed} failed: {failure.reason}")
        print(f"last lines of {failure.folder / LOG_FILE}:")
        print("\n".join(f"    {line}" for line in failure.log_tail))
    named = "; ".join(f"{f.task} seed {f.seed} (log {f.folder / LOG_FILE})" for f in failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    why = (  # a table of means over no seed would be a result from nothing
        f"all {total} seeds failed, so no table holds a number: {named}{more}; "
        f"{plan.output_dir / 'results.md'} lists the failures"
    )
    refuse_if_nothing_usable(total - len(failures), f"--output_dir {plan.output_dir}", "seeds", why)
    raise BertError(
        f"{len(failures)} of {total} seeds failed: {named}{more}; the others are in "
        f"{plan.output_dir / 'results.md'}"
    )


def execute(args: argparse.Namespace) -> None:
    plan = check_arguments(args)
    settings = settings_of(plan)
    if args.dry_run:
        dry_run(plan, earlier_results(plan, settings))
        return
    from output_lock import claim_output

    with claim_output(plan.output_dir, PROG):
        earlier = earlier_results(plan, settings)
        outcome = train_all(plan, settings, earlier)
        text, failures = write_outputs(plan, settings, outcome)
    print("\n" + text, end="")
    print(f"{PROG}: tables in {plan.output_dir / 'results.md'}, every number in results.json")
    if failures:
        report_failures(plan, failures, len(plan.runs) * len(plan.seeds))


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main(PROG, parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
