"""scripts/summarize_runs.py: the summary table of pre-training and fine-tuning logs."""

from __future__ import annotations

from logger import MetricLogger
from scripts import summarize_runs
from tests.support import write_pretraining_log


def test_summary_table_of_pretraining_and_fine_tuning(tmp_path, capsys):
    write_pretraining_log(tmp_path / "pretrain.json")
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
    write_pretraining_log(tmp_path / "dllogger_phase1.json", phases=((128, 0, 5),))
    write_pretraining_log(tmp_path / "dllogger.json", phases=((512, 5, 3),))
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
