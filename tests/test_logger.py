"""logger.py writes dllogger's JSON layout, so NVIDIA's log parsers read our logs."""

from __future__ import annotations

import json

from logger import MetricLogger, format_step, read_dllogger_file


def test_dllogger_json_lines(tmp_path):
    path = tmp_path / "results" / "dllogger.json"  # the parent folder is created
    metrics = MetricLogger(path, use_dllogger=False)  # our writer, even where dllogger exists
    metrics.log("PARAMETER", {"SEED": 42, "Config": ["Namespace(...)"]})
    metrics.log((0, 10), {"average_loss": 7.5, "learning_rate": 1e-4, "nan": float("nan")})
    metrics.log((), {"e2e_train_time": 12.0, "final_loss": 7.5})
    metrics.close()
    lines = path.read_text().splitlines()
    assert all(line.startswith("DLLL {") for line in lines)
    records = [json.loads(line[5:]) for line in lines]
    meta = [r for r in records if r["type"] == "METADATA"]
    assert {"metric": "e2e_train_time", "metadata": {"unit": "s"}}.items() <= meta[0].items()
    logs = [r for r in records if r["type"] == "LOG"]
    assert [r["step"] for r in logs] == ["PARAMETER", [0, 10], []]
    assert logs[1]["data"] == {"average_loss": 7.5, "learning_rate": 1e-4, "nan": "nan"}
    assert {"timestamp", "datetime", "elapsedtime"} <= set(logs[0])
    assert read_dllogger_file(path) == records


def test_other_ranks_write_nothing(tmp_path):
    metrics = MetricLogger(tmp_path / "log.json", is_main_process=False)
    metrics.log((), {"final_loss": 1.0})
    metrics.close()
    assert not (tmp_path / "log.json").exists()


def test_step_format_is_nvidias():
    assert format_step("PARAMETER") == "PARAMETER"
    assert format_step((1, 20)) == "Training Epoch: 1 Training Iteration: 20"
    assert format_step((1, 20, 3)).endswith("Validation Iteration: 3")
