"""scripts/plot_loss.py, scripts/summarize_runs.py and TensorBoard logging, on synthetic logs
written by our own MetricLogger (the layout of NVIDIA's dllogger JSON files)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from logger import MetricLogger
from scripts import plot_loss, summarize_runs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pretraining_log(path: Path, phases=((128, 0, 5), (512, 5, 3))) -> None:
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


def test_runs_of_one_log_are_split_and_labelled(tmp_path):
    pretraining_log(tmp_path / "log.json")
    runs = plot_loss.split_runs(plot_loss.read_records(tmp_path / "log.json"))
    assert [run.label for run in runs] == ["seq 128", "seq 512"]
    assert sorted(runs[0].series) == ["average_loss", "mlm_loss", "nsp_loss"]
    assert runs[1].series["average_loss"] == ([6, 7, 8], [4.0, 3.0, 2.0])


def test_plot_writes_a_png_for_our_and_nvidia_style_logs(tmp_path):
    pretraining_log(tmp_path / "ours.json")
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


def test_summary_table_of_pretraining_and_fine_tuning(tmp_path, capsys):
    pretraining_log(tmp_path / "pretrain.json")
    squad = MetricLogger(tmp_path / "squad.json", use_dllogger=False)
    squad.log("PARAMETER", {"Config": ["x"]})
    squad.log((), {"e2e_train_time": 3.0, "training_sequences_per_second": 40.0, "final_loss": 4.2})
    squad.log((), {"e2e_inference_time": 1.0, "inference_sequences_per_second": 90.0})
    squad.log((), {"exact_match": 12.5, "F1": 20.25})
    squad.close()
    glue = MetricLogger(tmp_path / "glue.json", use_dllogger=False)
    glue.log(
        (),
        {
            "final_loss": 0.6,
            "training_sequences_per_second": 8.0,
            "exact_match": 0.69,
            "F1": 0.8166,
            "inference_sequences_per_second": 180.0,
        },
    )
    glue.close()
    capsys.readouterr()  # the loggers' own stdout lines
    status = summarize_runs.main(
        [
            "--pretraining",
            str(tmp_path / "pretrain.json"),
            "--squad",
            str(tmp_path / "squad.json"),
            "--glue",
            str(tmp_path / "glue.json"),
            "--seconds",
            "300",
            "--output",
            str(tmp_path / "summary.md"),
        ]
    )
    assert status == 0
    table = capsys.readouterr().out
    assert table == (tmp_path / "summary.md").read_text()
    assert "| pre-training phase 1 (seq 128) | final loss 5 | 321 seq/s | 12.5 s |" in table
    assert "| pre-training phase 2 (seq 512) | final loss 2 |" in table
    assert "| SQuAD fine-tuning | final loss 4.2 | 40 seq/s |" in table
    assert "| SQuAD dev prediction | EM 12.5 / F1 20.2 | 90 seq/s |" in table
    assert "| GLUE dev evaluation | accuracy 0.69 / F1 0.817 | 180 seq/s |" in table
    assert "wall time of the whole run: 300 s" in table


def test_summary_of_pretraining_phases_in_two_logs(tmp_path, capsys):
    """run_pretraining.sh leaves phase 1 in dllogger_phase1.json and phase 2 in dllogger.json."""
    pretraining_log(tmp_path / "dllogger_phase1.json", phases=((128, 0, 5),))
    pretraining_log(tmp_path / "dllogger.json", phases=((512, 5, 3),))
    logs = [str(tmp_path / "dllogger_phase1.json"), str(tmp_path / "dllogger.json")]
    assert summarize_runs.main(["--pretraining", *logs]) == 0
    table = capsys.readouterr().out
    assert "| pre-training phase 1 (seq 128) | final loss 5 | 321 seq/s | 12.5 s |" in table
    assert "| pre-training phase 2 (seq 512) | final loss 2 |" in table


def test_summary_of_an_unfinished_run_is_an_error(tmp_path, capsys):
    log = MetricLogger(tmp_path / "cut.json", use_dllogger=False)
    log.log((0, 1), {"average_loss": 3.0})
    log.close()
    assert summarize_runs.main(["--pretraining", str(tmp_path / "cut.json")]) == 1
    assert "cut.json: no final summary record" in capsys.readouterr().err


def test_tensorboard_event_files_hold_the_logged_scalars(tmp_path):
    pytest.importorskip("tensorboard")
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
    repo = Path(__file__).resolve().parent.parent
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
