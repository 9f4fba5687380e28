"""Rank-0 metrics logging in dllogger's layout: JSON lines for parsers, readable lines for people.

Each event is one line `DLLL {"timestamp": ..., "datetime": ..., "elapsedtime": ..., "type":
"LOG", "step": ..., "data": {...}}` in the `--json-summary` file, exactly as dllogger's
JSONStreamBackend writes it, so NVIDIA log parsers read our logs unchanged; metadata lines
(units) use `"type": "METADATA"`. Steps are "PARAMETER", a tuple such as (epoch, step), or ()
for the final summary. When the real `dllogger` package is installed it is used instead
(`use_dllogger=True`). Other ranks log nothing. Optional TensorBoard scalars for numeric data.

Differences from NVIDIA: no dependency on a git-installed logger (REQ-13); the parent folder of
the JSON file is created; the stdout line is printed through the standard `logging` module.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from errors import MissingDependency

logger = logging.getLogger("bert")

Step = str | tuple | list

#: Units NVIDIA declares for the summary keys (HEAD's dllogger.metadata calls).
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
    """NVIDIA's format_step: strings as they are, (epoch, iteration[, validation]) spelled out."""
    if isinstance(step, str):
        return step
    parts = []
    names = ("Training Epoch", "Training Iteration", "Validation Iteration")
    for name, value in zip(names, step, strict=False):
        parts.append(f"{name}: {value}")
    return " ".join(parts)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN: keep the line valid for parsers
        return "nan"
    return value


class MetricLogger:
    """dllogger-compatible metrics on the main process; silent elsewhere."""

    def __init__(
        self,
        json_path: str | os.PathLike | None,
        is_main_process: bool = True,
        use_dllogger: bool | None = None,
        tensorboard_dir: str | os.PathLike | None = None,
    ) -> None:
        self.enabled = is_main_process
        self.start = time.time()
        self.file = None
        self.dllogger = None
        self.tensorboard = None
        if not self.enabled:
            return
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
            dllogger.init(backends=backends)
            self.dllogger = dllogger
        elif json_path:
            Path(json_path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(json_path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        if tensorboard_dir:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingDependency(
                    f"--tensorboard {tensorboard_dir}: needs the tensorboard package "
                    "(pip install tensorboard)"
                ) from None
            self.tensorboard = SummaryWriter(str(tensorboard_dir))
        for metric, unit in UNITS.items():
            self.metadata(metric, {"unit": unit} if unit else {})

    def _write(self, record: dict[str, Any]) -> None:
        now = datetime.datetime.now()
        line = {
            "timestamp": str(now.timestamp()),
            "datetime": str(now),
            "elapsedtime": str(time.time() - self.start),
            **record,
        }
        self.file.write("DLLL " + json.dumps(line) + "\n")
        self.file.flush()

    def metadata(self, metric: str, metadata: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        if self.dllogger is not None:
            self.dllogger.metadata(metric, dict(metadata))
        elif self.file is not None:
            self._write({"type": "METADATA", "metric": metric, "metadata": dict(metadata)})

    def log(self, step: Step, data: Mapping[str, Any], verbose: bool = True) -> None:
        """One event: `step` is "PARAMETER", a tuple like (epoch, step), or () at the end."""
        if not self.enabled:
            return
        data = {key: _jsonable(value) for key, value in data.items()}
        step = list(step) if isinstance(step, tuple) else step
        if self.dllogger is not None:
            self.dllogger.log(step=tuple(step) if isinstance(step, list) else step, data=data)
        else:
            if self.file is not None:
                self._write({"type": "LOG", "step": step, "data": data})
            if verbose:
                shown = " ".join(f"{k} : {_short(v)}" for k, v in data.items())
                logger.info(
                    "%s %s", format_step(tuple(step) if isinstance(step, list) else step), shown
                )
        if self.tensorboard is not None and isinstance(step, list) and step:
            for key, value in data.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, global_step=int(step[-1]))

    def close(self) -> None:
        if self.dllogger is not None:
            self.dllogger.flush()
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tensorboard is not None:
            self.tensorboard.close()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_dllogger_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The events of a dllogger JSON file (lines starting with `DLLL `), for tests and plots."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("DLLL "):
            events.append(json.loads(line[5:]))
    return events
