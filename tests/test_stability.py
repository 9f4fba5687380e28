"""benchmarks/stability.py: recipes against NVIDIA's presets, bad input refused in one line
before any training, launcher commands through the launchers' own checks (DRY_RUN), what counts
as a finished seed, and (slow) the whole command through the real launchers on small copies of
the bundled MRPC and SQuAD samples: a failed task reported while the other runs, the tables
against each seed's dllogger.json, skipping finished seeds, re-running a deleted one, and a
rerun with other settings refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import stability
from logger import read_dllogger_file
from tests.support import REPO_ROOT, SAMPLE_MRPC, SAMPLE_SQUAD, TINY_CONFIG, UNCASED_VOCAB


@pytest.fixture
def data(tmp_path) -> dict[str, Path]:
    """Small copies of the bundled samples in the layouts the command expects: GLUE/MRPC/ with
    train.tsv and dev.tsv, SQUAD/ with train-v1.1.json and dev-v1.1.json."""
    glue_dir = tmp_path / "glue"
    (glue_dir / "MRPC").mkdir(parents=True)
    for name, rows in (("train.tsv", 40), ("dev.tsv", 20)):
        lines = (SAMPLE_MRPC / name).read_text(encoding="utf-8-sig").splitlines()
        (glue_dir / "MRPC" / name).write_text("\n".join(lines[: rows + 1]) + "\n")
    squad_dir = tmp_path / "squad"
    squad_dir.mkdir()
    for split in ("train", "dev"):
        dataset = json.loads((SAMPLE_SQUAD / "v1.1" / f"{split}-v1.1.json").read_text())
        dataset["data"] = dataset["data"][:1]
        dataset["data"][0]["paragraphs"] = dataset["data"][0]["paragraphs"][:3]
        (squad_dir / f"{split}-v1.1.json").write_text(json.dumps(dataset))
    return {"glue": glue_dir, "squad": squad_dir, "out": tmp_path / "out"}


def command(data, checkpoint, *extra: str, tasks: str = "mrpc,squad") -> list[str]:
    return [
        f"--init_checkpoint={checkpoint}",
        f"--config_file={TINY_CONFIG}",
        f"--vocab_file={UNCASED_VOCAB}",
        f"--tasks={tasks}",
        "--seeds=0,1",
        f"--glue_dir={data['glue']}",
        f"--squad_dir={data['squad']}",
        f"--output_dir={data['out']}",
        "--max_steps=2",
        "--batch_size=4",
        *extra,
    ]


def preset(file: str, name: str) -> list[str]:
    """The positional arguments a preset of scripts/configs echoes."""
    script = f'source "scripts/configs/{file}" && "{name}"'
    done = subprocess.run(
        ["bash", "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_default_recipes_are_nvidia_heads_dgxa100_presets():
    args = stability.parse_args(
        ["--init_checkpoint=x", "--config_file=x", "--vocab_file=x", "--output_dir=x"]
    )
    on_gpu = stability.build_recipes(args, gpus=8)
    for task in ("mrpc", "sst-2"):
        words = preset("glue_config.sh", f"{task}_dgxa100-80g_8gpu_fp16")
        batch, accumulation, lr, warmup, epochs = words[7:12]
        assert accumulation == "1" and words[13] == "fp16"
        assert on_gpu[task] == stability.Recipe(
            float(lr), int(batch), float(epochs), float(warmup), "fp16", -1
        )
    words = preset("squad_config.sh", "dgxa100-80g_8gpu_fp16")
    epochs, batch, lr, warmup, precision = words[1:6]
    assert on_gpu["squad"] == stability.Recipe(
        float(lr), int(batch), float(epochs), float(warmup), precision, -1
    )
    on_cpu = stability.build_recipes(args, gpus=0)
    assert {recipe.precision for recipe in on_cpu.values()} == {"fp32"}


def test_flags_override_every_task_and_recipe_one_task_after_them():
    args = stability.parse_args(
        [
            *("--init_checkpoint=x", "--config_file=x", "--vocab_file=x", "--output_dir=x"),
            "--tasks=MRPC,sst2,squad,cola",
            "--learning_rate=2e-5",
            "--max_steps=7",
            "--recipe=sst2:learning_rate=5e-5,batch_size=32",
            "--recipe=squad:precision=bf16",
        ]
    )
    recipes = stability.build_recipes(args, gpus=0)
    assert [task.name for task in args.tasks] == ["mrpc", "sst-2", "squad", "cola"]
    assert recipes["mrpc"].learning_rate == 2e-5 and recipes["mrpc"].batch_size == 16
    assert recipes["sst-2"].learning_rate == 5e-5 and recipes["sst-2"].batch_size == 32
    assert recipes["squad"].precision == "bf16" and recipes["squad"].learning_rate == 2e-5
    assert recipes["cola"] == stability.Recipe(2e-5, 16, 3.0, 0.1, "fp32", 7)  # run_glue.sh's
    assert {recipe.max_steps for recipe in recipes.values()} == {7}


BAD_INPUT = {
    "an unknown task": (["--tasks=mrpc,sqad"], "sqad"),
    "a task named twice": (["--tasks=sst-2,sst2"], "twice"),
    "mnli-mm": (["--tasks=mnli-mm"], "mnli-mm"),
    "a seed named twice": (["--seeds=0,1,0"], "seed 0 is named twice"),
    "a negative seed": (["--seeds=0,-1"], "--seeds"),
    "a seed that is not a number": (["--seeds=0,x"], "--seeds"),
    "an empty seed list": (["--seeds=0,,1"], "--seeds"),
    "a recipe key": (["--recipe=mrpc:lr=1e-5"], "lr=1e-5"),
    "a recipe value": (["--recipe=mrpc:batch_size=0"], "batch_size"),
    "a recipe precision": (["--recipe=squad:precision=fp64"], "fp64"),
    "a recipe key given twice": (["--recipe=mrpc:epochs=1,epochs=2"], "twice"),
    "a recipe without a task": (["--recipe=learning_rate=1e-5"], "TASK:"),
    "a recipe of a task not run": (["--recipe=sst-2:epochs=1"], "not among --tasks"),
    "a recipe key given twice for a task": (
        ["--recipe=mrpc:epochs=1", "--recipe=mrpc:epochs=2"],
        "twice",
    ),
    "fp16 without a GPU": (["--precision=fp16"], "fp16 needs a CUDA GPU"),
    "a warm-up above 1": (["--warmup_proportion=1.5"], "--warmup_proportion"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_flags_are_one_line_and_exit_2_before_any_training(
    case, data, pretrained, capsys, monkeypatch
):
    monkeypatch.setattr(stability, "run_seed", pytest.fail)  # no launcher may start
    flags, message = BAD_INPUT[case]
    assert stability.main(command(data, pretrained, *flags)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("benchmarks.stability: error:"), lines
    assert message in lines[0]
    assert not data["out"].exists()


def _missing_squad_dev(data):
    (data["squad"] / "dev-v1.1.json").unlink()


def _no_mrpc_folder(data):
    (data["glue"] / "MRPC" / "train.tsv").unlink()
    (data["glue"] / "MRPC" / "dev.tsv").unlink()
    (data["glue"] / "MRPC").rmdir()


def _output_is_a_file(data):
    data["out"].write_text("x")


def _task_folder_is_a_link(data):
    data["out"].mkdir()
    (data["out"] / "mrpc").symlink_to(data["glue"])


def _data_inside_output(data):
    data["out"] = data["squad"].parent  # OUT/squad/ would be the SQuAD data folder


BAD_FILES = {
    "missing SQuAD dev file": (_missing_squad_dev, [], "dev-v1.1.json: no such file"),
    "missing GLUE task folder": (_no_mrpc_folder, [], "--glue_dir mrpc folder"),
    "missing --glue_dir": (None, ["--glue_dir="], "--glue_dir"),
    "missing checkpoint": (None, ["--init_checkpoint=nowhere.pt"], "--init_checkpoint"),
    "missing config": (None, ["--config_file=nowhere.json"], "--config_file"),
    "output is a file": (_output_is_a_file, [], "--output_dir"),
    "task folder is a link": (_task_folder_is_a_link, [], "not a plain folder"),
    "data inside the output": (_data_inside_output, [], "lies in --output_dir squad folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_missing_data_and_bad_paths_are_one_line_before_any_training(
    case, data, pretrained, capsys, monkeypatch
):
    monkeypatch.setattr(stability, "run_seed", pytest.fail)
    change, flags, message = BAD_FILES[case]
    if change:
        change(data)
    assert stability.main(command(data, pretrained, *flags)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert (data["glue"] / "MRPC" / "train.tsv").exists() or case == "missing GLUE task folder"


def test_dry_run_passes_the_launchers_checks_and_writes_nothing(data, pretrained, capsys):
    assert stability.main(command(data, pretrained, "--dry_run")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4  # one python command per task and seed
    for line, (script, seed) in zip(
        lines,
        [("run_glue.py", 0), ("run_glue.py", 1), ("run_squad.py", 0), ("run_squad.py", 1)],
        strict=True,
    ):
        assert line.startswith(f"{sys.executable} {REPO_ROOT / script} ")  # this interpreter
        assert f"--seed={seed} " in line and "--max_steps=2" in line
        assert "--train_batch_size=4" in line
    assert "--learning_rate=1.8e-05" in lines[0] and "--warmup_proportion=0.3" in lines[0]
    assert "--learning_rate=4.6e-05" in lines[2] and "--warmup_proportion=0.2" in lines[2]
    assert "--fp16" not in "".join(lines)  # fp32 on a CPU
    assert not data["out"].exists()


def _finish(plan, settings, task, seed, values):
    folder = stability.seed_folder(plan.output_dir, task, seed)
    folder.mkdir(parents=True)
    record = {
        "task": task,
        "seed": seed,
        "values": values,
        "e2e_train_time": 1.0,
        "training_sequences_per_second": 2.0,
        "settings": {"common": settings["common"], "task": settings["tasks"][task]},
    }
    (folder / stability.RESULT_FILE).write_text(json.dumps(record))
    return folder


def test_only_a_seed_with_its_own_result_file_counts_as_finished(data, pretrained):
    plan = stability.check_arguments(stability.parse_args(command(data, pretrained)))
    settings = stability.settings_of(plan)
    _finish(plan, settings, "mrpc", 0, {"acc": 60.0, "f1": 75.0})
    partial = stability.seed_folder(plan.output_dir, "mrpc", 1)
    partial.mkdir(parents=True)  # a run killed before it finished: a log, no result.json
    (partial / "dllogger.json").write_text('DLLL {"step": [], "data": {"acc": 0.9, "f1": 0.9}}\n')
    copied = _finish(plan, settings, "squad", 0, {"exact_match": 1.0, "F1": 2.0})
    (stability.seed_folder(plan.output_dir, "squad", 1)).mkdir(parents=True)
    (copied.parent / "seed_1" / stability.RESULT_FILE).write_text(
        (copied / stability.RESULT_FILE).read_text()  # seed 0's result in seed 1's folder
    )
    assert set(stability.earlier_results(plan, settings)) == {("mrpc", 0), ("squad", 0)}
    stability.clear_folder(partial, plan.output_dir)
    assert not partial.exists() and (partial.parent / "seed_0").is_dir()


@pytest.mark.parametrize("tasks", ["mrpc,squad", "mrpc"])
def test_a_finished_seed_of_other_settings_is_refused(tasks, data, pretrained, capsys, monkeypatch):
    """Another recipe of a task this command runs, or another checkpoint, config, vocabulary or
    GPU count anywhere in OUT (a task this command does not run included)."""
    other = stability.parse_args(command(data, pretrained, "--recipe=squad:epochs=1"))
    plan = stability.check_arguments(other)
    settings = stability.settings_of(plan)
    if tasks == "mrpc":
        settings["common"]["num_gpu"] = 2
    _finish(plan, settings, "squad", 1, {"exact_match": 1.0, "F1": 2.0})
    monkeypatch.setattr(stability, "run_seed", pytest.fail)
    assert stability.main(command(data, pretrained, tasks=tasks)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "holds results of other settings" in lines[0], lines
    expected = "num_gpu: 2 there, 1 now" if tasks == "mrpc" else "squad recipe epochs: 1.0 there"
    assert expected in lines[0] and "squad/seed_1/result.json" in lines[0]


def test_no_finished_seed_is_said_so_not_a_table_of_nan(data, pretrained, capsys, monkeypatch):
    """Every seed failing leaves nothing to summarise: the tables hold "-" and "failed", not NaN
    or 0, and the one error line says that no seed finished."""

    def fail(run, seed, plan, settings):
        folder = stability.seed_folder(plan.output_dir, run.task.name, seed)
        return stability._failure(run.task.name, seed, folder, "exit status 1", 1)

    monkeypatch.setattr(stability, "run_seed", fail)
    assert stability.main(command(data, pretrained)) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    out = data["out"]
    assert error.startswith(f"benchmarks.stability: error: --output_dir {out}: no usable seeds")
    assert "all 4 seeds failed, so no table holds a number: mrpc seed 0" in error
    table = (out / "results.md").read_text()
    assert (
        "nan" not in table.lower() and "0 of 2" in table and "| failed | failed | - | - |" in table
    )
    report = json.loads((out / "results.json").read_text())
    assert report["tasks"]["squad"]["metrics"]["F1"]["mean"] is None
    assert not (out / "spread.png").exists()


@pytest.mark.slow(seconds=30)
def test_checkpoint_to_tables_resume_and_failures(data, pretrained, capsys):
    good_dev = (data["glue"] / "MRPC" / "dev.tsv").read_text()
    lines = good_dev.splitlines()
    lines[2] = "7" + lines[2][1:]  # a label MRPC does not have: run_glue.py fails at reading
    (data["glue"] / "MRPC" / "dev.tsv").write_text("\n".join(lines) + "\n")
    out = data["out"]

    # 1. MRPC fails on both seeds, SQuAD still runs both; the command exits 1 at the end.
    assert stability.main(command(data, pretrained)) == 1
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("benchmarks.stability: error: 2 of 4 seeds failed: mrpc seed 0")
    assert str(out / "mrpc" / "seed_0" / "launcher.log") in error
    report = json.loads((out / "results.json").read_text())
    failed = report["tasks"]["mrpc"]["seeds"]["1"]
    assert failed["status"] == "failed" and failed["exit_status"] == 1
    assert "label '7'" in failed["log_tail"][-1]
    assert "label '7'" in (out / "results.md").read_text()
    assert report["tasks"]["squad"]["finished_seeds"] == 2

    # 2. Data fixed: the failed seeds run again, the finished ones are skipped.
    (data["glue"] / "MRPC" / "dev.tsv").write_text(good_dev)
    assert stability.main(command(data, pretrained)) == 0
    output = capsys.readouterr().out
    assert output.count("running the launcher") == 2
    assert "squad seed 0: finished earlier, skipped" in output
    check_tables(out, sys.executable)

    # 3. Everything finished: a rerun runs nothing.
    logs = sorted(out.glob("*/seed_*/dllogger.json"))
    stamps = [log.stat().st_mtime_ns for log in logs]
    assert stability.main(command(data, pretrained)) == 0
    assert "running the launcher" not in capsys.readouterr().out
    assert [log.stat().st_mtime_ns for log in logs] == stamps and len(logs) == 4

    # 4. A deleted seed folder is run again, and only it.
    values = json.loads((out / "results.json").read_text())["tasks"]["squad"]["metrics"]
    for path in sorted((out / "mrpc" / "seed_1").iterdir()):
        path.unlink()
    (out / "mrpc" / "seed_1").rmdir()
    assert stability.main(command(data, pretrained)) == 0
    output = capsys.readouterr().out
    assert output.count("running the launcher") == 1 and "mrpc seed 1: running" in output
    again = json.loads((out / "results.json").read_text())
    assert again["tasks"]["squad"]["metrics"] == values
    check_tables(out, sys.executable)

    # 5. Other settings into the same folder: one line, exit 2, nothing run.
    assert stability.main(command(data, pretrained, "--learning_rate=3e-5")) == 2
    captured = capsys.readouterr()
    assert "running the launcher" not in captured.out
    assert captured.err.count("\n") == 1 and "learning_rate" in captured.err


def check_tables(out: Path, python: str) -> None:
    """results.json, results.md and spread.png against each seed's own dllogger.json, with the
    mean and the sample standard deviation recomputed here."""
    report = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert "| Accuracy Metric | Seed 0 | Seed 1 | Mean | Standard Deviation |" in markdown
    for task, keys, scale in (("mrpc", ("acc", "f1"), 100), ("squad", ("exact_match", "F1"), 1)):
        finals = []
        for seed in (0, 1):
            log = out / task / f"seed_{seed}" / "dllogger.json"
            events = read_dllogger_file(log)
            finals.append(
                {k: v for e in events if e.get("step") == [] for k, v in e["data"].items()}
            )
            launcher_log = (out / task / f"seed_{seed}" / "launcher.log").read_text()
            assert launcher_log.startswith(python + " ")  # the launcher ran this interpreter
        summary = report["tasks"][task]
        for key in keys:
            values = [final[key] * scale for final in finals]
            numbers = summary["metrics"][key]
            assert [numbers["per_seed"][s] for s in ("0", "1")] == pytest.approx(values)
            assert numbers["mean"] == pytest.approx(np.mean(values))
            assert numbers["standard_deviation"] == pytest.approx(np.std(values, ddof=1))
            cells = [*values, np.mean(values), np.std(values, ddof=1)]
            row = " | ".join([numbers["label"], *(f"{cell:.2f}" for cell in cells)])
            assert f"| {row} |" in markdown
        train_time = np.mean([final["e2e_train_time"] for final in finals])
        assert summary["e2e_train_time"]["mean"] == pytest.approx(train_time)
        rate = np.mean([final["training_sequences_per_second"] for final in finals])
        assert summary["training_sequences_per_second"]["mean"] == pytest.approx(rate)
        assert f"| 2 of 2 | {train_time:.1f} | {rate:.2f} |" in markdown
    assert (out / "spread.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
