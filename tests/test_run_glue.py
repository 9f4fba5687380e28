"""run_glue.py and scripts/run_glue.sh end to end on the bundled MRPC sample and a tiny STS-B
fixture with a tiny model: outputs, NVIDIA's keys next to ours, regression, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import environment
from logger import read_dllogger_file
from modeling import BertConfig
from tests.support import (
    REPO_ROOT,
    SAMPLE_MRPC,
    TINY_CONFIG,
    UNCASED_VOCAB,
    launcher_env,
    mrpc_dev_scores,
    one_error_line,
    plant,
    run_main,
)

pytestmark = pytest.mark.slow


TINY = [f"--vocab_file={UNCASED_VOCAB}", f"--config_file={TINY_CONFIG}", "--do_lower_case"]


def run_glue(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_glue.py", *TINY, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_launcher_on_the_mrpc_sample(pretrained, tmp_path):
    env = launcher_env(INIT_CHECKPOINT=str(pretrained), OUT_DIR=str(tmp_path))
    preset = subprocess.run(
        ["bash", "-c", "source scripts/configs/glue_config.sh && cpu_sample_tiny"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert len(preset) == 14
    result = subprocess.run(
        ["bash", "scripts/run_glue.sh", *preset, "1", "train eval prediction"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.txt").read_text())
    assert {"global_step", "train:loss", "train:throughput", "eval:loss", "acc", "f1"} <= set(
        results
    )
    assert results["global_step"] == 2 * 400 // 16  # 2 epochs of the 400-pair sample, batch 16
    events = read_dllogger_file(tmp_path / "dllogger.json")
    summary = {k: v for e in events if e.get("step") == [] for k, v in e["data"].items()}
    assert summary["exact_match"] == summary["acc"] == results["acc"]  # NVIDIA's key kept
    assert summary["F1"] == summary["f1"] == results["f1"]
    expected = mrpc_dev_scores(
        tmp_path / "pytorch_model.bin",
        TINY_CONFIG,
        UNCASED_VOCAB,
        REPO_ROOT / "data/sample/glue/MRPC",
    )
    assert results["acc"] == pytest.approx(expected["acc"], abs=1e-9)
    assert results["f1"] == pytest.approx(expected["f1"], abs=1e-9)
    assert results["eval:loss"] == pytest.approx(expected["eval:loss"], rel=1e-5)
    assert {
        "e2e_train_time",
        "training_sequences_per_second",
        "final_loss",
        "e2e_inference_time",
        "inference_sequences_per_second",
    } <= set(summary)
    submission = (tmp_path / "MRPC.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 51
    assert all(line.split("\t")[1] in ("0", "1") for line in submission[1:])
    assert len(json.loads((tmp_path / "predictions.json").read_text())) == 50
    assert (tmp_path / "pytorch_model.bin").exists() and (tmp_path / "logfile").exists()
    config = (tmp_path / "config.json").read_text()  # HEAD's name, and 21.11's beside it
    assert config == (tmp_path / "bert_config.json").read_text()
    assert BertConfig.from_json_file(tmp_path / "bert_config.json").hidden_size == 128
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic writes


def test_regression_task_sts_b(pretrained, tmp_path):
    data = tmp_path / "STS-B"
    data.mkdir()
    header = (
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    )
    rows = [
        f"{i}\tmain-news\tf\t2012\t{i}\tnone\tnone\tA man plays guitar {i}.\t"
        f"A person plays music {i % 3}.\t{(i % 6) * 0.9:.1f}"
        for i in range(40)
    ]
    (data / "train.tsv").write_text("\n".join([header, *rows]) + "\n")
    (data / "dev.tsv").write_text("\n".join([header, *rows[:20]]) + "\n")
    result = run_glue(
        "--task_name=sts-b",
        f"--data_dir={data}",
        f"--init_checkpoint={pretrained}",
        "--do_train",
        "--do_eval",
        f"--output_dir={tmp_path / 'out'}",
        "--train_batch_size=8",
        "--learning_rate=1e-3",
        "--num_train_epochs=1",
        f"--json-summary={tmp_path / 'out' / 'log.json'}",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out" / "results.txt").read_text())
    assert {"pearson", "spearmanr", "corr"} <= set(results) and results["global_step"] == 5


def test_bad_input(pretrained, tmp_path, capsys):
    def run_glue(*args: str) -> subprocess.CompletedProcess:  # in-process: stops before the work
        return run_main("run_glue", [*TINY, *args], capsys)

    out = [f"--output_dir={tmp_path / 'o'}", f"--json-summary={tmp_path / 'o' / 'l.json'}"]
    sample = REPO_ROOT / "data" / "sample" / "glue" / "MRPC"
    assert (
        "unknown"
        in one_error_line(
            run_glue(*out, "--task_name=squad", f"--data_dir={sample}", "--do_eval")
        ).lower()
    )
    missing = tmp_path / "nope"
    line = one_error_line(
        run_glue(*out, "--task_name=mrpc", f"--data_dir={missing}", "--do_eval"), 2
    )
    assert "--data_dir" in line and "nope" in line
    bad = tmp_path / "MRPC"
    bad.mkdir()
    text = (sample / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()
    text[3] = text[3].replace("\t", " ", 1)  # one column too few on line 4
    (bad / "dev.tsv").write_text("\n".join(text) + "\n")
    line = one_error_line(
        run_glue(
            *out,
            "--task_name=mrpc",
            f"--data_dir={bad}",
            "--do_eval",
            f"--init_checkpoint={pretrained}",
        )
    )
    assert "dev.tsv" in line and "line 4" in line
    text = (sample / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()
    text[2] = "7" + text[2][1:]  # label 7 is not a MRPC label
    (bad / "dev.tsv").write_text("\n".join(text) + "\n")
    line = one_error_line(
        run_glue(
            *out,
            "--task_name=mrpc",
            f"--data_dir={bad}",
            "--do_eval",
            f"--init_checkpoint={pretrained}",
        )
    )
    assert "'7'" in line
    batch = ["--train_batch_size=2", "--gradient_accumulation_steps=4"]
    line = one_error_line(
        run_glue(*out, "--task_name=mrpc", f"--data_dir={sample}", "--do_train", *batch), 2
    )
    assert "--gradient_accumulation_steps" in line
    plant(tmp_path / "o", pid=1, program="run_glue.py")  # another run, alive, holds it
    line = one_error_line(
        run_glue(
            *out,
            "--task_name=mrpc",
            f"--data_dir={sample}",
            "--do_eval",
            f"--init_checkpoint={pretrained}",
        )
    )
    assert f"--output_dir {tmp_path / 'o'} is in use by run_glue.py (pid 1 on" in line
    assert not (tmp_path / "o" / "results.txt").exists()


def test_main_in_process(pretrained, tmp_path):
    """run_glue.main in this process: train, evaluate and predict on the MRPC sample."""
    import run_glue as glue_script

    status = glue_script.main(
        [
            "--task_name=mrpc",
            f"--data_dir={REPO_ROOT / 'data' / 'sample' / 'glue' / 'MRPC'}",
            f"--vocab_file={UNCASED_VOCAB}",
            f"--config_file={TINY_CONFIG}",
            "--do_lower_case",
            f"--init_checkpoint={pretrained}",
            "--do_train",
            "--do_eval",
            "--do_predict",
            "--train_batch_size=16",
            "--max_steps=2",
            f"--output_dir={tmp_path}",
            f"--json-summary={tmp_path / 'log.json'}",
        ]
    )
    assert status == 0
    results = json.loads((tmp_path / "results.txt").read_text())
    assert results["global_step"] == 2 and "eval:num_steps" in results
    expected = mrpc_dev_scores(
        tmp_path / "pytorch_model.bin", TINY_CONFIG, UNCASED_VOCAB, SAMPLE_MRPC
    )
    assert results["acc"] == pytest.approx(expected["acc"], abs=1e-9)
    assert results["f1"] == pytest.approx(expected["f1"], abs=1e-9)
    assert results["eval:loss"] == pytest.approx(expected["eval:loss"], rel=1e-5)
    assert (tmp_path / "MRPC.tsv").is_file() and (tmp_path / "bert_config.json").is_file()
    events = read_dllogger_file(tmp_path / "log.json")
    reports = [e["data"] for e in events if "torch_version" in e.get("data", {})]
    assert len(reports) == 1 and tuple(reports[0]) == environment.KEYS  # logged once, at the start
    assert reports[0]["device"] == "cpu" and reports[0]["optimizer"] == "AdamW (foreach)"
