"""run_pretraining.py end to end on CPU: the launcher's two phases on the bundled sample, exact
resume, signals, DDP (torchrun, gloo) against accumulation, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import torch_load
from logger import read_dllogger_file
from tests.support import (
    REPO_ROOT,
    TINY_CONFIG,
    launcher_env,
    one_error_line,
    pretrain_in_process,
    run_main,
    write_random_shards,
)


def pretrain(*args: str, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_pretraining.py", "--do_train", "--disable_progress_bar", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def common(shards, output, config=TINY_CONFIG, *extra: str) -> list[str]:
    return [
        f"--input_dir={shards}",
        f"--output_dir={output}",
        f"--config_file={config}",
        f"--json-summary={output}/log.json",
        "--train_batch_size=8",
        "--learning_rate=2e-2",
        "--max_seq_length=128",
        "--max_predictions_per_seq=20",
        "--no_cuda",
        *extra,
    ]  # CPU: gloo for torchrun, bit-exact resume


def losses(log) -> dict[int, float]:
    return {
        event["step"][1]: event["data"]["average_loss"]
        for event in read_dllogger_file(log)
        if event.get("type") == "LOG"
        and isinstance(event["step"], list)
        and len(event["step"]) == 2
        and "average_loss" in event["data"]
    }


def grad_norms(log) -> dict[int, float]:
    """The logged pre-clip global gradient norm of each optimizer step."""
    return {
        event["step"][1]: event["data"]["grad_norm"]
        for event in read_dllogger_file(log)
        if isinstance(event.get("step"), list)
        and len(event["step"]) == 2
        and "grad_norm" in event["data"]
    }


def losses_per_run(log) -> list[dict[int, float]]:
    """`losses` of each run appended to one log (a run starts at its Config record)."""
    runs: list[dict[int, float]] = []
    for event in read_dllogger_file(log):
        data, step = event.get("data", {}), event.get("step")
        if step == "PARAMETER" and "Config" in data:
            runs.append({})
        elif isinstance(step, list) and len(step) == 2 and "average_loss" in data:
            runs[-1][step[1]] = data["average_loss"]
    return runs


@pytest.mark.slow(seconds=75)
def test_launcher_runs_phase1_then_phase2_on_the_sample(sample_shards, tmp_path):
    env = launcher_env(RESULTS_DIR=str(tmp_path), SAMPLE_SHARDS=str(sample_shards))
    preset = subprocess.run(
        ["bash", "-c", "source scripts/configs/pretrain_config.sh && cpu_sample_tiny"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    (tmp_path / "dllogger.json").write_text('DLLL {"earlier": "run"}\n')  # kept, not overwritten
    result = subprocess.run(
        ["bash", "scripts/run_pretraining.sh", *preset],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (earlier,) = tmp_path.glob("dllogger.[0-9]*.json")
    assert earlier.read_text() == 'DLLL {"earlier": "run"}\n'
    first, second = losses(tmp_path / "dllogger_phase1.json"), losses(tmp_path / "dllogger.json")
    phase1 = [first[step] for step in range(1, 51)]
    assert sum(phase1[-5:]) / 5 < phase1[0] - 2.0, phase1  # well below the start (about 11)
    assert sorted(first) == list(range(1, 51))  # NVIDIA's file shape: dllogger.json holds ...
    assert sorted(second) == list(range(1, 21))  # ... phase 2 only, counting its own steps ...
    assert second[1] < phase1[0] - 2.0  # ... from phase 1's weights, not from scratch
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt_25.pt", "ckpt_50.pt", "ckpt_70.pt"]
    final = torch_load(tmp_path / "checkpoints" / "ckpt_70.pt")
    assert final["phase"] == 2 and final["global_step"] == 20
    assert final["model"]["bert.embeddings.word_embeddings.weight"].shape == (30528, 128)
    for name in ("dllogger_phase1.json", "dllogger.json"):
        summary = [e["data"] for e in read_dllogger_file(tmp_path / name) if e.get("step") == []]
        keys = {"e2e_train_time", "training_sequences_per_second", "final_loss", "raw_train_time"}
        assert len(summary) == 1 and keys <= set(summary[0])
    logs = sorted(p.name for p in tmp_path.glob("bert_sample_tiny.pyt_bert_pretraining_phase*"))
    assert len(logs) == 2 and "_fp32_gbs32." in logs[0] and "_fp32_gbs8." in logs[1]


@pytest.mark.slow
def test_stop_and_resume_is_bit_identical(sample_shards, tmp_path):
    shards = sample_shards / "phase1"
    args = [
        "--max_steps=12",
        "--gradient_accumulation_steps=2",
        "--warmup_proportion=0.2",
        "--num_steps_per_checkpoint=100",
    ]
    full = pretrain(*common(shards, tmp_path / "full"), *args)
    assert full.returncode == 0, full.stderr
    first = pretrain(*common(shards, tmp_path / "split"), *args, "--steps_this_run=5")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "split").glob("ckpt_*")) == ["ckpt_5.pt"]
    second = pretrain(*common(shards, tmp_path / "split"), *args, "--resume_from_checkpoint")
    assert second.returncode == 0, second.stderr
    expected, resumed = losses(tmp_path / "full/log.json"), losses(tmp_path / "split/log.json")
    assert [resumed[s] for s in range(1, 13)] == [expected[s] for s in range(1, 13)]  # exact
    a = torch_load(tmp_path / "full/ckpt_12.pt")["model"]
    b = torch_load(tmp_path / "split/ckpt_12.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def wait_for(path, process, seconds=120) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, process.stderr.read()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM])
def test_killed_runs_keep_a_loadable_checkpoint(sample_shards, tmp_path, kill):
    args = common(
        sample_shards / "phase1",
        tmp_path,
        TINY_CONFIG,
        "--max_steps=100000",
        "--num_steps_per_checkpoint=3",
        "--do_train",
    )
    process = subprocess.Popen(
        [sys.executable, "run_pretraining.py", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(tmp_path / "ckpt_3.pt", process)
        process.send_signal(kill)
        code = process.wait(timeout=120)
    finally:
        process.kill()
    saved = sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("ckpt_*.pt"))
    if kill == signal.SIGTERM:
        assert code == 0  # a clean exit ...
        assert saved[-1] > 3 or saved == [3]  # ... after writing the step it reached
        assert "SIGTERM received" in process.stderr.read()
    else:
        assert code == -signal.SIGKILL
    newest = torch_load(tmp_path / f"ckpt_{saved[-1]}.pt")
    assert newest["global_step"] == saved[-1]
    resumed = pretrain(
        *common(sample_shards / "phase1", tmp_path),
        "--resume_from_checkpoint",
        f"--max_steps={saved[-1] + 2}",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"ckpt_{saved[-1] + 2}.pt" in os.listdir(tmp_path)


@pytest.mark.slow
def test_two_processes_equal_one_with_twice_the_accumulation(sample_shards, tmp_path):
    config = json.loads(TINY_CONFIG.read_text()) | {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    shards = sample_shards / "phase1"
    extra = [
        "--max_steps=4",
        "--data_sharding=interleaved",
        "--num_steps_per_checkpoint=2",
        "--warmup_proportion=0.25",
    ]
    single = pretrain(
        *common(shards, tmp_path / "one", tmp_path / "config.json"),
        *extra,
        "--train_batch_size=16",
        "--gradient_accumulation_steps=4",
    )
    assert single.returncode == 0, single.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "run_pretraining.py",
        "--do_train",
        "--disable_progress_bar",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    double = subprocess.run(
        [
            *torchrun,
            *common(shards, tmp_path / "two", tmp_path / "config.json"),
            *extra,
            "--train_batch_size=8",
            "--gradient_accumulation_steps=2",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env | {"OMP_NUM_THREADS": "1"},
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one = torch_load(tmp_path / "one/ckpt_4.pt")
    two = torch_load(tmp_path / "two/ckpt_4.pt")
    assert two["world_size"] == 2 and len(two["data_position"]) == 2
    for key, value in one["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=0, atol=1e-6, msg=key)
    # the weights moved far more than the tolerance between steps 2 and 4, so agreeing to 1e-6
    # is not the agreement of weights that barely train
    earlier = torch_load(tmp_path / "one/ckpt_2.pt")["model"]
    moved = max(float((one["model"][k] - earlier[k]).abs().max()) for k in earlier)
    assert moved > 1e-3, moved
    l1, l2 = losses(tmp_path / "one/log.json"), losses(tmp_path / "two/log.json")
    assert all(abs(l1[s] - l2[s]) < 1e-5 for s in range(1, 5))
    n1, n2 = grad_norms(tmp_path / "one/log.json"), grad_norms(tmp_path / "two/log.json")
    assert [n2[s] for s in range(1, 5)] == pytest.approx([n1[s] for s in range(1, 5)], rel=1e-5)


def test_bad_input_is_one_clear_line(sample_shards, tmp_path, capsys):
    def pretrain(*args: str) -> subprocess.CompletedProcess:  # in-process: no start-up
        return run_main("run_pretraining", ["--do_train", "--disable_progress_bar", *args], capsys)

    shards = sample_shards / "phase1"
    line = one_error_line(
        pretrain(*common(shards, tmp_path / "a"), "--gradient_accumulation_steps=3"), 2
    )
    assert "--train_batch_size 8 is not divisible by --gradient_accumulation_steps 3" in line
    line = one_error_line(pretrain(*common(shards, tmp_path / "a"), "--precision=fp8"), 2)
    assert "--precision fp8 needs a CUDA GPU of compute capability 9.0 or newer" in line
    line = one_error_line(pretrain(*common(tmp_path / "missing", tmp_path / "a")), 2)
    assert "--input_dir" in line and "missing: no such folder" in line
    line = one_error_line(pretrain(*common(sample_shards / "phase2", tmp_path / "a")))
    assert "sequences of 512 tokens, but --max_seq_length is 128" in line
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "ckpt_7.pt").write_bytes(b"x")
    line = one_error_line(pretrain(*common(shards, tmp_path / "ckpts"), "--max_steps=1"), 2)
    assert "already holds checkpoints (ckpt_7.pt" in line
    line = one_error_line(pretrain(*common(shards, tmp_path / "ckpts"), "--resume_from_checkpoint"))
    assert "ckpt_7.pt: not a readable PyTorch checkpoint" in line
    broken = tmp_path / "broken"
    broken.mkdir()
    data = (shards / "sample_training_0.hdf5").read_bytes()
    (broken / "x_training_0.hdf5").write_bytes(data[: len(data) // 2])
    line = one_error_line(pretrain(*common(broken, tmp_path / "b"), "--max_steps=1"))
    assert "x_training_0.hdf5" in line
    line = one_error_line(
        pretrain(
            *common(shards, tmp_path / "c"),
            "--max_steps=20",
            "--learning_rate=1000",  # the flag's limit
            "--num_steps_per_checkpoint=1",
        )
    )
    assert "non-finite" in line and "the last good one is kept" in line
    for path in (tmp_path / "c").glob("ckpt_*.pt"):  # every checkpoint written holds finite weights
        model = torch_load(path)["model"]
        assert all(torch.isfinite(t).all() for t in model.values())


@pytest.mark.slow
def test_trimmed_batches_train_like_padded_ones(sample_shards, tmp_path):
    """The fast path (each batch cut to its longest sequence) and the plain one agree."""
    config = json.loads(TINY_CONFIG.read_text()) | {
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    shards = sample_shards / "phase2"  # real text: many sequences far shorter than 512
    for name, extra in (("trim", []), ("pad", ["--no_trim_padding"])):
        result = pretrain(
            *common(shards, tmp_path / name, tmp_path / "config.json"),
            "--max_steps=3",
            "--max_seq_length=512",
            "--max_predictions_per_seq=80",
            "--skip_checkpoint",
            *extra,
        )
        assert result.returncode == 0, result.stderr
    trimmed, padded = losses(tmp_path / "trim/log.json"), losses(tmp_path / "pad/log.json")
    assert all(abs(trimmed[s] - padded[s]) < 1e-5 for s in (1, 2, 3)), (trimmed, padded)


def test_accumulation_two_of_half_equals_one_full_batch(tmp_path):
    """One process, the same 8 samples per optimizer step, as one micro-batch or as two of 4:
    the logged pre-clip gradient norm of every step and the weights agree. The losses of the
    micro-batches must be divided by the accumulation steps; LAMB's clipping (norms here are
    far above 1) and its scale-free update would otherwise hide a sum of two batches."""
    write_random_shards(tmp_path / "shards", files=1, rows=32)
    config = json.loads(TINY_CONFIG.read_text()) | {
        "vocab_size": 3072,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    runs = {}
    for accumulation in (1, 2):
        out = tmp_path / f"ga{accumulation}"
        code = pretrain_in_process(
            tmp_path / "shards",
            out,
            tmp_path / "config.json",
            out / "log.json",
            "--train_batch_size=8",
            f"--gradient_accumulation_steps={accumulation}",
            "--learning_rate=2e-2",
            "--max_steps=3",
            "--warmup_proportion=0.5",
            "--log_freq=1",
            "--num_steps_per_checkpoint=3",
        )
        assert code == 0
        log = out / "log.json"
        runs[accumulation] = (grad_norms(log), losses(log), torch_load(out / "ckpt_3.pt"))
    (norms1, losses1, ckpt1), (norms2, losses2, ckpt2) = runs[1], runs[2]
    assert sorted(norms1) == [1, 2, 3] and min(norms1.values()) > 1.0  # clipping was active
    for step in (1, 2, 3):
        assert norms2[step] == pytest.approx(norms1[step], rel=1e-6), step
        # every row holds 5 masked tokens: the mean of two half-batch losses is the full one's
        assert losses2[step] == pytest.approx(losses1[step], rel=1e-6), step
    for key, value in ckpt1["model"].items():
        torch.testing.assert_close(ckpt2["model"][key], value, rtol=1e-6, atol=1e-6, msg=key)
