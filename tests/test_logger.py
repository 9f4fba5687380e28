"""logger.py writes dllogger's JSON and stdout layouts, so NVIDIA's log parsers read our logs;
optional TensorBoard scalars."""

from __future__ import annotations

import datetime
import json
import math
import re
import sys

from logger import MetricLogger, format_step, read_dllogger_file, stdout_line
from tests.support import REPO_ROOT


def test_dllogger_json_lines(tmp_path, capsys):
    path = tmp_path / "results" / "dllogger.json"  # the parent folder is created
    metrics = MetricLogger(path, use_dllogger=False)  # our writer, even where dllogger exists
    metrics.log("PARAMETER", {"SEED": 42, "Config": ["Namespace(...)"]})
    metrics.log(
        (0, 10),
        {"average_loss": 7.5, "learning_rate": 1e-4, "nan": float("nan"), "inf": float("inf")},
    )
    metrics.log((), {"e2e_train_time": 12.0, "final_loss": 7.5})
    metrics.close()
    lines = path.read_text().splitlines()
    assert all(line.startswith("DLLL {") for line in lines)
    assert '"nan": NaN, "inf": Infinity' in lines[-2]  # as json.dumps (and so dllogger) writes
    records = [json.loads(line[5:]) for line in lines]
    meta = [r for r in records if r["type"] == "METADATA"]
    assert list(meta[0]) == ["timestamp", "elapsedtime", "datetime", "type", "metric", "metadata"]
    assert meta[0]["metric"] == "e2e_train_time" and meta[0]["metadata"] == {"unit": "s"}
    assert {"metric": "final_loss", "metadata": {"unit": None}}.items() <= meta[2].items()
    logs = [r for r in records if r["type"] == "LOG"]
    assert list(logs[0]) == ["timestamp", "datetime", "elapsedtime", "type", "step", "data"]
    assert [r["step"] for r in logs] == ["PARAMETER", [0, 10], []]
    data = logs[1]["data"]
    assert math.isnan(data.pop("nan")) and data.pop("inf") == math.inf
    assert data == {"average_loss": 7.5, "learning_rate": 1e-4}
    assert len(read_dllogger_file(path)) == len(records)
    out = capsys.readouterr().out.splitlines()  # stdout, not only the logging module
    assert len(out) == 3 and all(re.match(r"DLL \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", o) for o in out)
    assert out[1].endswith(
        " - Training Epoch: 0 Training Iteration: 10  average_loss : 7.5  "
        "learning_rate : 0.0001  nan : nan  inf : inf "
    )
    assert out[2].endswith(" -  e2e_train_time : 12.0 s final_loss : 7.5 None")


def test_stdout_line_is_dlloggers():
    """StdOutBackend: "DLL " + str(datetime) + " - " + format_step(step) + " " + metrics."""
    when = datetime.datetime(2021, 11, 4, 12, 30, 5, 123456)
    line = stdout_line(when, "PARAMETER", {"SEED": 42}, {})
    assert line == "DLL 2021-11-04 12:30:05.123456 - PARAMETER SEED : 42 "
    line = stdout_line(when, (1, 2), {"x": 0.5}, {"x": {"unit": "s", "format": ":.2f"}})
    assert line.endswith(" - Training Epoch: 1 Training Iteration: 2  x : 0.50 s")


def test_other_ranks_write_nothing(tmp_path, capsys):
    metrics = MetricLogger(tmp_path / "log.json", is_main_process=False)
    metrics.log((), {"final_loss": 1.0})
    metrics.close()
    assert not (tmp_path / "log.json").exists()
    assert capsys.readouterr().out == ""


def test_step_format_is_nvidias():
    assert format_step("PARAMETER") == "PARAMETER"
    assert format_step((1, 20)) == "Training Epoch: 1 Training Iteration: 20 "
    assert format_step((1, 20, 3)).endswith("Validation Iteration: 3 ")
    assert format_step(()) == ""


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricLogger(tmp_path / "log.json", use_dllogger=False, tensorboard_dir=tmp_path / "tb")
    for step in (1, 2, 3):
        log.log((0, step), {"average_loss": 5.0 - step, "note": "text is skipped"})
    log.log((), {"final_loss": 2.0})  # the summary has no step: not a TensorBoard point
    log.close()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert events.Tags()["scalars"] == ["average_loss"]
    points = events.Scalars("average_loss")
    assert [(p.step, p.value) for p in points] == [(1, 4.0), (2, 3.0), (3, 2.0)]


def test_entry_scripts_take_a_tensorboard_folder():
    import run_pretraining
    import run_squad

    required = ["--input_dir", "i", "--config_file", "c", "--output_dir", "o"]
    assert run_pretraining.parse_arguments([*required, "--tensorboard", "tb"]).tensorboard == "tb"
    required = ["--output_dir", "o", "--vocab_file", "v", "--config_file", "c"]
    assert run_squad.parse_arguments([*required, "--tensorboard", "tb"]).tensorboard == "tb"


def test_tensorboard_without_the_package_is_one_error_line(tmp_path, monkeypatch, capsys):
    import run_glue

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    repo = REPO_ROOT
    status = run_glue.main(
        [
            "--task_name=mrpc",
            f"--data_dir={repo}/data/sample/glue/MRPC",
            f"--vocab_file={repo}/vocab/vocab",
            f"--config_file={repo}/bert_configs/tiny.json",
            "--do_lower_case",
            "--do_train",
            f"--output_dir={tmp_path}",
            f"--json-summary={tmp_path / 'log.json'}",
            f"--tensorboard={tmp_path / 'tb'}",
        ]
    )
    assert status == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"run_glue.py: error: --tensorboard {tmp_path / 'tb'}: needs the tensorboard "
        "package (pip install tensorboard)"
    ]
