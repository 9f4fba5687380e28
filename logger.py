"""Rank-0 metrics logging in dllogger's layout: JSON lines for parsers, readable lines for people.

Each event is one line `DLLL {"timestamp": ..., "datetime": ..., "elapsedtime": ..., "type":
"LOG", "step": ..., "data": {...}}` in the `--json-summary` file (appended to, its folder
created), and one stdout line `DLL <date time> - <step> <key> : <value> <unit> ...`, exactly as
dllogger's JSONStreamBackend and StdOutBackend write them, so NVIDIA's log parsers read our logs
unchanged; units are `"type": "METADATA"` lines, steps "PARAMETER", (epoch, step) or () for the
summary, non-finite numbers bare `NaN`/`Infinity`. The real `dllogger` is used when installed.
Other ranks log nothing; TensorBoard scalars are optional. What to log is the callers'.
A write that fails (full disk, file-size limit) is a `fileio.WriteError` naming the log, and the
line it cut short is taken back out, so the earlier lines stay whole.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from errors import BertError, MissingDependency
from fileio import JsonError, WriteError, describe_os_error, os_error_in, parse_json

logger = logging.getLogger("bert")

Step = str | tuple | list

#: Units NVIDIA declares for the summary keys (HEAD's dllogger.metadata calls; None is declared
#: as a unit of None, which dllogger's stdout line prints as "None").
UNITS = {
    "e2e_train_time": "s",
    "training_sequences_per_second": "sequences/s",
    "final_loss": None,
    "raw_train_time": "s",
    "e2e_inference_time": "s",
    "inference_sequences_per_second": "sequences/s",
    "exact_match": None,
    "F1": None,
}


def format_step(step: Step) -> str:
    """NVIDIA's `utils.format_step`: strings as they are; each element of (epoch, iteration[,
    validation]) spelled out and followed by a space."""
    if isinstance(step, str):
        return step
    names = ("Training Epoch", "Training Iteration", "Validation Iteration")
    return "".join(f"{name}: {value} " for name, value in zip(names, step, strict=False))


def format_metric(metric: str, metadata: Mapping[str, Any], value: Any) -> str:
    """dllogger's default metric format: `key : value unit` (the unit may be empty)."""
    unit = metadata.get("unit", "")
    pattern = "{" + metadata["format"] + "}" if "format" in metadata else "{}"
    return f"{metric} : {pattern.format(value) if value is not None else value} {unit}"


def stdout_line(
    timestamp: datetime.datetime, step: Step, data: Mapping[str, Any], metadata: Mapping
) -> str:
    """One line as dllogger's StdOutBackend prints it with NVIDIA's `format_step`."""
    metrics = " ".join(format_metric(k, metadata.get(k, {}), v) for k, v in data.items())
    return f"DLL {timestamp} - {format_step(step)} {metrics}"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class MetricLogger:
    """dllogger-compatible metrics on the main process; silent elsewhere.

    `tensorboard_step_offset` is added to the step of TensorBoard points only (phase 2 logs its
    own step count, as NVIDIA's does, but its curve continues phase 1's)."""

    def __init__(
        self,
        json_path: str | os.PathLike | None,
        is_main_process: bool = True,
        use_dllogger: bool | None = None,
        tensorboard_dir: str | os.PathLike | None = None,
        tensorboard_step_offset: int = 0,
        hold_as: str | None = None,
    ) -> None:
        """`hold_as`: lock `json_path` for this program until `close` (`output_lock.py`), so a
        second live run given the same log is refused rather than mixing its lines in."""
        self.enabled = is_main_process
        self.start = datetime.datetime.now()
        self.file = None
        self.json_path: Path | None = None
        self.dllogger = None
        self.tensorboard = None
        self.tensorboard_step_offset = tensorboard_step_offset
        self.metadata_of: dict[str, dict[str, Any]] = {}
        self.lock = None
        if not self.enabled:
            return
        if json_path and hold_as:
            from output_lock import OutputLock

            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            self.lock = OutputLock(json_path, hold_as, "--json-summary", single_file=True)
            self.lock.acquire()
        try:
            self._open_outputs(json_path, use_dllogger, tensorboard_dir)
        except BaseException:
            self.close()  # the log's lock too: a refused start must not keep it
            raise
        for metric, unit in UNITS.items():
            self.metadata(metric, {"unit": unit})

    def _open_outputs(
        self,
        json_path: str | os.PathLike | None,
        use_dllogger: bool | None,
        tensorboard_dir: str | os.PathLike | None,
    ) -> None:
        """The dllogger backends or our own log file, and the TensorBoard writer."""
        if use_dllogger is None:  # the real dllogger when it is installed, as NVIDIA's scripts
            use_dllogger = importlib.util.find_spec("dllogger") is not None
        if use_dllogger:
            import dllogger

            backends = [dllogger.StdOutBackend(dllogger.Verbosity.VERBOSE, step_format=format_step)]
            if json_path:
                Path(json_path).parent.mkdir(parents=True, exist_ok=True)
                backends.append(
                    dllogger.JSONStreamBackend(dllogger.Verbosity.VERBOSE, str(json_path))
                )
            self.json_path = Path(json_path) if json_path else None
            with self._dllogger_errors():  # JSONStreamBackend opens its file here
                dllogger.init(backends=backends)
            self.dllogger = dllogger
        elif json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            self.json_path = Path(json_path)
            # unbuffered: a failed write leaves nothing pending that a later flush could add
            self.file = open(json_path, "ab", buffering=0)  # noqa: SIM115 (kept open)
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingDependency(
                    f"--tensorboard {tensorboard_dir}: needs the tensorboard package "
                    "(pip install tensorboard)"
                ) from None
            _quiet_tensorboard_writer_thread()
            self.tensorboard_dir = tensorboard_dir
            with self._tensorboard_errors():
                self.tensorboard = SummaryWriter(str(tensorboard_dir))

    def _write(self, now: datetime.datetime, record: dict[str, Any]) -> None:
        elapsed = str((now - self.start).total_seconds())
        times = {"timestamp": str(now.timestamp())}
        if record["type"] == "LOG":  # dllogger's key order differs between the two line types
            times |= {"datetime": str(now), "elapsedtime": elapsed}
        else:
            times |= {"elapsedtime": elapsed, "datetime": str(now)}
        line = ("DLLL " + json.dumps({**times, **record}) + "\n").encode("utf-8")
        start = os.fstat(self.file.fileno()).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[self.file.write(view) or 0 :]
        except OSError as err:
            self._give_up_file(start, err)

    def _give_up_file(self, start: int, err: OSError) -> None:
        """Take the cut-short line back out, close the log, and raise its WriteError."""
        file, self.file = self.file, None
        with contextlib.suppress(OSError):  # the reader skips a cut-short last line anyway
            os.ftruncate(file.fileno(), start)
        file.close()
        raise WriteError(
            f"cannot write log {self.json_path}: {describe_os_error(err)}; its earlier lines "
            "are intact"
        ) from err

    @contextlib.contextmanager
    def _dllogger_errors(self) -> Iterator[None]:
        """dllogger's writers failing: its JSON file or its stdout lines, which cannot be told
        apart (a cut-short last line stays in the file; `read_dllogger_file` skips it)."""
        try:
            yield
        except Exception as err:
            failure = os_error_in(err)
            if failure is None:
                raise
            where = f"log {self.json_path} or stdout" if self.json_path else "log to stdout"
            raise WriteError(f"cannot write {where}: {describe_os_error(failure)}") from err

    @contextlib.contextmanager
    def _tensorboard_errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as err:
            failure = os_error_in(err)
            if failure is None:
                raise
            self.tensorboard = None
            raise WriteError(
                f"--tensorboard {self.tensorboard_dir}: cannot write its events: "
                f"{describe_os_error(failure)}; the events written before are readable"
            ) from err

    def metadata(self, metric: str, metadata: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.metadata_of.setdefault(metric, {}).update(metadata)
        if self.dllogger is not None:
            with self._dllogger_errors():
                self.dllogger.metadata(metric, dict(metadata))
        elif self.file is not None:
            record = {"type": "METADATA", "metric": metric, "metadata": dict(metadata)}
            self._write(datetime.datetime.now(), record)

    def log(self, step: Step, data: Mapping[str, Any], verbose: bool = True) -> None:
        """One event: `step` is "PARAMETER", a tuple like (epoch, step), or () at the end."""
        if not self.enabled:
            return
        data = {key: _jsonable(value) for key, value in data.items()}
        step = tuple(step) if isinstance(step, list) else step
        if self.dllogger is not None:
            with self._dllogger_errors():
                self.dllogger.log(step=step, data=data)
        else:
            now = datetime.datetime.now()
            if self.file is not None:
                record = {"type": "LOG", "step": list(step) if isinstance(step, tuple) else step}
                self._write(now, record | {"data": data})
            if verbose:  # stdout, as dllogger's StdOutBackend prints
                print(stdout_line(now, step, data, self.metadata_of), flush=True)
        if self.tensorboard is not None and isinstance(step, tuple) and step:
            for key, value in data.items():
                if isinstance(value, (int, float)):
                    point = int(step[-1]) + self.tensorboard_step_offset
                    with self._tensorboard_errors():
                        self.tensorboard.add_scalar(key, value, global_step=point)

    def close(self) -> None:
        """Flush and close every output and release the log's lock; a second call does nothing."""
        if self.dllogger is not None:
            with self._dllogger_errors():
                self.dllogger.flush()
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tensorboard is not None:
            with self._tensorboard_errors():
                self.tensorboard.close()
            self.tensorboard = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _quiet_tensorboard_writer_thread() -> None:
    """Keep the traceback of a failed TensorBoard write off stderr: the events are written by a
    thread, whose error the writer raises again on the next call, where `MetricLogger` makes it
    one line. Other threads' errors are printed as before."""
    from tensorboard.summary.writer import event_file_writer

    previous = threading.excepthook
    if getattr(previous, "quiets_tensorboard", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        writer_thread = getattr(event_file_writer, "_AsyncWriterThread", ())
        if isinstance(args.exc_value, OSError) and isinstance(args.thread, writer_thread):
            return
        previous(args)

    hook.quiets_tensorboard = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class LogError(BertError, ValueError):
    """A log that cannot be read or used; the message names the file."""


def read_dllogger_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON records of a dllogger file, ours or NVIDIA's: `DLLL {...}` lines, or bare JSON
    object lines (dllogger's JSONStreamBackend without the prefix). Other lines, and a last line
    cut short by a killed run, are skipped; `json.loads` reads dllogger's bare `NaN` and
    `Infinity` back as floats. The one reader of logs, for the plot, the summaries and tests."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise LogError(f"{path}: cannot read: {err.strerror or err}") from None
    records = []
    for line in text.splitlines():
        line = line.strip().removeprefix("DLLL ")
        if not line.startswith("{"):
            continue
        try:
            record = parse_json(line, str(path))
        except JsonError:
            continue  # a line cut short by a killed run, or foreign output
        if isinstance(record, dict):
            records.append(record)
    return records
