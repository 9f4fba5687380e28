"""scripts/plot_loss.py on synthetic logs written by our own MetricLogger (the layout of NVIDIA's
dllogger JSON files) and on NVIDIA-style logs."""

from __future__ import annotations

import json

from logger import MetricLogger, read_dllogger_file
from scripts import plot_loss
from tests.support import write_pretraining_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_runs_of_one_log_are_split_and_labelled(tmp_path):
    write_pretraining_log(tmp_path / "log.json")
    runs = plot_loss.split_runs(read_dllogger_file(tmp_path / "log.json"))
    assert [run.label for run in runs] == ["seq 128", "seq 512"]
    assert sorted(runs[0].series) == ["average_loss", "mlm_loss", "nsp_loss"]
    assert runs[1].series["average_loss"] == ([6, 7, 8], [4.0, 3.0, 2.0])


def test_plot_writes_a_png_for_our_and_nvidia_style_logs(tmp_path):
    write_pretraining_log(tmp_path / "ours.json")
    # NVIDIA's dllogger lines, with a fine-tuning step_loss, stdout noise and a cut-off last line.
    records = [
        {"timestamp": "1", "type": "LOG", "step": [0, s], "data": {"step_loss": 2.0 / s}}
        for s in range(1, 4)
    ]
    lines = ["some stdout noise"] + [f"DLLL {json.dumps(r)}" for r in records] + ['DLLL {"type']
    (tmp_path / "nvidia.json").write_text("\n".join(lines) + "\n")
    output = tmp_path / "plots" / "loss.png"
    status = plot_loss.main(
        [
            str(tmp_path / "ours.json"),
            str(tmp_path / "nvidia.json"),
            "--output",
            str(output),
            "--title",
            "t",
        ]
    )
    assert status == 0
    assert output.read_bytes().startswith(PNG_MAGIC)
    assert list(output.parent.iterdir()) == [output]  # no partial file left


def test_plot_of_a_log_without_losses_is_one_error_naming_it(tmp_path, capsys):
    log = MetricLogger(tmp_path / "empty.json", use_dllogger=False)
    log.log("PARAMETER", {"Config": ["x"]})
    log.close()
    output = tmp_path / "loss.png"
    assert plot_loss.main([str(tmp_path / "empty.json"), "-o", str(output)]) == 1
    assert plot_loss.main([str(tmp_path / "missing.json"), "-o", str(output)]) == 2
    assert plot_loss.main([str(tmp_path / "empty.json"), "-o", str(tmp_path / "x.jpg")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "empty.json: no training records" in err[0]
    assert f"log {tmp_path / 'missing.json'}: no such file" in err[1]
    assert "expected a .png" in err[2]
    assert not output.exists()
    assert not output.exists()
