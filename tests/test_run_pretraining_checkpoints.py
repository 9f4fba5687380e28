"""run_pretraining.py's checkpoint folder, in-process on a tiny model: the newest three of the
phase kept on disk, corrupt checkpoints skipped on resume, a full or read-only disk ending the
run in one line with the older checkpoints kept, the folder's lock, phase 2 without phase 1,
and restarted torchrun workers resuming by themselves."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fileio
import run_pretraining
from checkpoint import torch_load
from tests.support import REPO_ROOT, TINY_CONFIG, plant, pretrain_in_process, write_random_shards

ARGS = [
    "--train_batch_size=8",
    "--gradient_accumulation_steps=2",
    "--learning_rate=2e-2",
    "--max_steps=100",
    "--warmup_proportion=0.5",
    "--num_steps_per_checkpoint=1",
]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Random shards (token ids below 3000) and a tiny config with a vocabulary to match, so
    that a checkpoint is a few MB and a test writes many in a few seconds."""
    folder = tmp_path_factory.mktemp("shards")
    write_random_shards(folder / "random")
    config = json.loads(TINY_CONFIG.read_text()) | {"vocab_size": 3072}
    (folder / "random" / "config.json").write_text(json.dumps(config))
    return folder / "random"


def pretrain(shards, output, *extra: str) -> int:
    """run_pretraining.main in this process (it restores its signal handlers itself)."""
    config, log = shards / "config.json", f"{output}.log.json"
    return pretrain_in_process(shards, output, config, log, *ARGS, *extra)


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory):
    """An uninterrupted run of 5 steps (ckpt_3..5 kept)."""
    output = tmp_path_factory.mktemp("reference") / "out"
    assert pretrain(shards, output, "--steps_this_run=5") == 0
    return output


@pytest.fixture(scope="module")
def first_three(shards, tmp_path_factory):
    """A run stopped after step 3 (ckpt_1..3); tests work on copies of its folder."""
    output = tmp_path_factory.mktemp("first_three") / "out"
    assert pretrain(shards, output, "--steps_this_run=3") == 0
    assert names(output) == ["ckpt_1.pt", "ckpt_2.pt", "ckpt_3.pt"]  # no lock left behind
    return output


@pytest.fixture
def output(first_three, tmp_path):
    return Path(shutil.copytree(first_three, tmp_path / "out"))


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def same_weights(a, b) -> bool:
    a, b = torch_load(a), torch_load(b)
    return a["global_step"] == b["global_step"] and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------- keeping three


def test_a_resumed_run_keeps_the_newest_three_on_disk(shards, reference, output):
    (output / "ckpt_007.pt").write_bytes(b"not a name this code writes")
    assert pretrain(shards, output, "--steps_this_run=5", "--resume_from_checkpoint") == 0
    assert names(output) == ["ckpt_007.pt", "ckpt_3.pt", "ckpt_4.pt", "ckpt_5.pt"]
    assert same_weights(output / "ckpt_5.pt", reference / "ckpt_5.pt")


def test_phase2_keeps_phase1s_checkpoints_and_three_of_its_own(shards, output):
    phase2 = ["--phase2", "--resume_from_checkpoint", "--phase1_end_step=3"]
    assert pretrain(shards, output, *phase2, "--steps_this_run=2") == 0
    assert names(output) == [f"ckpt_{n}.pt" for n in (1, 2, 3, 4, 5)]  # 3 started phase 2
    assert pretrain(shards, output, *phase2, "--steps_this_run=5") == 0  # interrupted, resumed
    assert names(output) == [f"ckpt_{n}.pt" for n in (1, 2, 3, 6, 7, 8)]
    assert torch_load(output / "ckpt_8.pt")["global_step"] == 5


def test_a_rewound_run_leaves_newer_checkpoints_until_it_overwrites_them(
    shards, reference, tmp_path, caplog
):
    output = Path(shutil.copytree(reference, tmp_path / "out"))  # ckpt_3..5
    with caplog.at_level(logging.WARNING):
        assert (
            pretrain(
                shards, output, "--resume_from_checkpoint", "--resume_step=3", "--steps_this_run=4"
            )
            == 0
        )
    assert any("also holds newer checkpoints (up to ckpt_5.pt)" in w for w in warnings(caplog))
    assert names(output) == ["ckpt_3.pt", "ckpt_4.pt", "ckpt_5.pt"]  # 4 rewritten, 5 untouched


# ------------------------------------------------------------------------------- corrupt files


def truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def not_a_zip(path):
    path.write_text("this is not a checkpoint\n")


def unpicklable(path):
    path.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c")  # cut pickle


def no_model(path):
    checkpoint = torch_load(path)
    del checkpoint["model"]
    torch.save(checkpoint, path)


def non_finite(path):
    checkpoint = torch_load(path)
    checkpoint["model"]["bert.encoder.layer.0.output.dense.weight"][0, 0] = float("nan")
    torch.save(checkpoint, path)


def integer_weights(path):
    checkpoint = torch_load(path)
    key = "bert.encoder.layer.0.output.dense.weight"
    checkpoint["model"][key] = checkpoint["model"][key].long()
    torch.save(checkpoint, path)


def integer_moments(path):
    checkpoint = torch_load(path)
    moments = checkpoint["optimizer"]["state"][0]
    moments["exp_avg"] = moments["exp_avg"].to(torch.int32)
    torch.save(checkpoint, path)


def non_finite_moments(path):
    checkpoint = torch_load(path)
    checkpoint["optimizer"]["state"][1]["exp_avg_sq"][0] = float("inf")
    torch.save(checkpoint, path)


def complex_learning_rate(path):
    checkpoint = torch_load(path)
    checkpoint["optimizer"]["param_groups"][1]["lr"] = torch.tensor(1e-3j)
    torch.save(checkpoint, path)


def text_step(path):
    checkpoint = torch_load(path)
    checkpoint["optimizer"]["param_groups"][0]["step"] = "3"
    torch.save(checkpoint, path)


def named_pipe(path):
    path.unlink()
    os.mkfifo(path)  # reading it would wait for a writer forever


CORRUPTIONS = {
    named_pipe: "is a named pipe, not a regular file",
    truncated: "not a readable PyTorch checkpoint",
    not_a_zip: "not a readable PyTorch checkpoint",
    unpicklable: "not a readable PyTorch checkpoint",
    no_model: "not a training checkpoint (no 'model' entry)",
    non_finite: "bert.encoder.layer.0.output.dense.weight holds 1 non-finite values",
    integer_weights: "bert.encoder.layer.0.output.dense.weight holds integer values",
    integer_moments: "optimizer state 0 exp_avg is not a floating tensor (a torch.int32",
    non_finite_moments: "optimizer state 1 exp_avg_sq holds NaN or infinity",
    complex_learning_rate: "optimizer param_groups[1] lr is not a finite number",
    text_step: "optimizer param_groups[0] step is not a finite number (a str)",
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS), ids=lambda f: f.__name__)
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(
    shards, reference, output, caplog, corrupt
):
    corrupt(output / "ckpt_3.pt")
    with caplog.at_level(logging.WARNING):
        assert pretrain(shards, output, "--steps_this_run=5", "--resume_from_checkpoint") == 0
    (skipped,) = [w for w in warnings(caplog) if "skipping" in w]
    assert f"{output}: skipping ckpt_3.pt, it cannot be resumed from: " in skipped
    assert CORRUPTIONS[corrupt] in skipped and "\n" not in skipped
    assert same_weights(output / "ckpt_5.pt", reference / "ckpt_5.pt")  # from step 2, exactly


def test_when_no_checkpoint_loads_one_error_lists_them_all(shards, output, capsys):
    (output / "ckpt_3.pt").unlink()
    truncated(output / "ckpt_2.pt")
    no_model(output / "ckpt_1.pt")
    before = {name: (output / name).read_bytes() for name in names(output)}
    capsys.readouterr()
    assert pretrain(shards, output, "--steps_this_run=3", "--resume_from_checkpoint") == 1
    (line,) = errors(capsys)
    assert f"no checkpoint in {output} can be resumed from: ckpt_2.pt: not a readable" in line
    assert line.endswith("; ckpt_1.pt: not a training checkpoint (no 'model' entry)")
    assert {name: (output / name).read_bytes() for name in names(output)} == before


def test_resume_step_names_one_checkpoint_and_never_falls_back(shards, output, capsys):
    non_finite(output / "ckpt_3.pt")
    capsys.readouterr()
    assert pretrain(shards, output, "--resume_from_checkpoint", "--resume_step=3") == 1
    (line,) = errors(capsys)
    assert "ckpt_3.pt: bert.encoder.layer.0.output.dense.weight holds 1 non-finite" in line


# ------------------------------------------------------------------------------- full disks


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("write", errno.ENOSPC),
        ("write", errno.EDQUOT),
        ("fsync", errno.EIO),
        ("rename", errno.EROFS),
    ],
)
def test_a_checkpoint_that_cannot_be_written_ends_the_run_keeping_the_older_ones(
    shards, output, monkeypatch, capsys, where, code
):
    before = {name: (output / name).read_bytes() for name in names(output)}
    failure = OSError(code, os.strerror(code))

    def ours(path) -> bool:  # only ckpt_4.pt's temporary file fails
        return os.path.basename(path).startswith(".ckpt_4.pt.")

    real_open, real_fsync, real_replace = open, fileio._fsync, os.replace

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 4096:
                raise failure
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def failing_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return FullDisk(handle) if where == "write" and ours(path) else handle

    def failing_fsync(path):
        if where == "fsync" and ours(path):
            raise failure
        return real_fsync(path)

    def failing_replace(src, dst):
        if where == "rename" and ours(src):
            raise failure
        return real_replace(src, dst)

    monkeypatch.setattr(fileio, "open", failing_open, raising=False)
    monkeypatch.setattr(fileio, "_fsync", failing_fsync)
    monkeypatch.setattr(fileio.os, "replace", failing_replace)
    capsys.readouterr()
    assert pretrain(shards, output, "--steps_this_run=6", "--resume_from_checkpoint") == 1
    (line,) = errors(capsys)
    assert f"--output_dir {output}: cannot write ckpt_4.pt: {os.strerror(code)}" in line
    assert f"({errno.errorcode[code]})" in line and "the older checkpoints are kept" in line
    assert {name: (output / name).read_bytes() for name in names(output)} == before  # all kept


def test_a_read_only_folder_is_found_before_training(shards, tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fileio, "create_new_file", read_only)
    capsys.readouterr()
    assert pretrain(shards, tmp_path / "out", "--steps_this_run=3") == 1
    (line,) = errors(capsys)
    # the first lock file written is the log's (--json-summary, beside the folder)
    assert f"{tmp_path / 'out'}" in line and "cannot write its lock file there (Read-only" in line
    assert not (tmp_path / "out").exists()  # refused before the folder was made


# ------------------------------------------------------------------------------- the lock


def test_a_second_run_on_the_folder_is_refused_and_changes_nothing(shards, output, capsys):
    holder = plant(output, pid=1, program="run_pretraining.py")  # PID 1 always runs
    before = {name: (output / name).read_bytes() for name in names(output)}
    capsys.readouterr()
    assert pretrain(shards, output, "--steps_this_run=4", "--resume_from_checkpoint") == 1
    (line,) = errors(capsys)
    assert f"--output_dir {output} is in use by run_pretraining.py (pid 1 on {holder.host}" in line
    assert {name: (output / name).read_bytes() for name in names(output)} == before


def test_a_killed_runs_lock_and_temporary_files_are_cleared(shards, output, caplog):
    (output / "ckpt_3.pt").unlink()
    plant(output, pid=2**22 + 1)  # beyond Linux's largest PID: surely gone
    (output / ".ckpt_3.pt.0123abcd.tmp").write_bytes(b"half a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert pretrain(shards, output, "--steps_this_run=3", "--resume_from_checkpoint") == 0
    assert any(
        "taking over the lock" in w and "is no longer running" in w for w in warnings(caplog)
    )
    assert any(".ckpt_3.pt.0123abcd.tmp" in w for w in warnings(caplog))
    assert names(output) == ["ckpt_1.pt", "ckpt_2.pt", "ckpt_3.pt"]


@pytest.mark.parametrize("resumed", [False, True])
def test_a_signal_before_the_first_step_says_no_checkpoint_was_written(
    shards, output, tmp_path, monkeypatch, caplog, resumed
):
    """SIGTERM while the run sets up (after a resume or from scratch) stops it at once with
    status 0, writes nothing, and says that no checkpoint was written."""
    folder = output if resumed else tmp_path / "fresh"
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("ckpt_*.pt")}
    setup = run_pretraining.setup

    def setup_then_signal(*args, **kwargs):
        training = setup(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by the run: a stop is requested
        return training

    monkeypatch.setattr(run_pretraining, "setup", setup_then_signal)
    flags = ["--resume_from_checkpoint"] if resumed else []
    with caplog.at_level(logging.INFO):
        assert pretrain(shards, folder, *flags) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("ckpt_*.pt")} == before
    assert any(
        "SIGTERM received: no optimizer step since the run started, so no new checkpoint" in m
        for m in caplog.messages
    )


# ------------------------------------------------------------------------------- phase 2


def test_phase2_without_a_checkpoint_to_start_from(shards, tmp_path, capsys, caplog):
    capsys.readouterr()
    status = pretrain(
        shards, tmp_path / "empty", "--phase2", "--resume_from_checkpoint", "--steps_this_run=1"
    )
    assert status == 1
    (line,) = errors(capsys)
    assert "holds no checkpoint to start phase 2 from" in line and "almost always" in line
    assert names(tmp_path / "empty") == []
    with caplog.at_level(logging.WARNING):  # without --resume_from_checkpoint: NVIDIA's way
        assert pretrain(shards, tmp_path / "fresh", "--phase2", "--steps_this_run=1") == 0
    assert any("phase 2 starts from random weights" in w for w in warnings(caplog))


# ------------------------------------------------------------------------------- torchrun


@pytest.mark.parametrize(
    "extra", [[], ["--resume_step=1"], ["--skip_checkpoint", "--steps_this_run=1"]]
)
def test_a_restarted_torchrun_worker_resumes_from_the_newest(
    shards, reference, output, monkeypatch, extra
):
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # the same command line, restarted
    assert pretrain(shards, output, "--steps_this_run=5", *extra) == 0
    if "--skip_checkpoint" in extra:  # nothing of this run to resume: it starts over
        assert names(output) == ["ckpt_1.pt", "ckpt_2.pt", "ckpt_3.pt"]
        return
    assert names(output) == ["ckpt_3.pt", "ckpt_4.pt", "ckpt_5.pt"]
    assert same_weights(output / "ckpt_5.pt", reference / "ckpt_5.pt")
    shutil.rmtree(output)
    assert pretrain(shards, output, "--steps_this_run=2", *extra) == 0  # none yet: from scratch
    assert names(output) == ["ckpt_1.pt", "ckpt_2.pt"]


# ------------------------------------------------------------------------------- real torchrun


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(
    shards, output, *launch: str, script: tuple[str, ...] = ("run_pretraining.py",)
) -> subprocess.Popen:
    """`script` (run_pretraining.py) under torchrun with 2 gloo processes per job, 6 steps."""
    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *launch,
            *script,
            "--do_train",
            "--disable_progress_bar",
            "--no_cuda",
            f"--input_dir={shards}",
            f"--output_dir={output}",
            f"--config_file={shards / 'config.json'}",
            f"--json-summary={output}.log.json",
            *ARGS,
            "--steps_this_run=6",
            "--num_steps_per_checkpoint=2",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # a hung collective fails in 2 minutes with its traceback, inside finish()'s 180 s
        env=clean
        | {"OMP_NUM_THREADS": "1", "BERT_DIST_TIMEOUT_MINUTES": "2", "PYTHONPATH": str(REPO_ROOT)},
        start_new_session=True,
    )


def finish(*processes: subprocess.Popen, timeout: float = 180) -> list[str]:
    """Wait for every process, `timeout` seconds for all together; their stderr (each must have
    succeeded). If they overrun, every torchrun is killed with its workers and the failure
    shows each one's stderr (a hang on one node is usually explained by the other's log)."""
    deadline = time.monotonic() + timeout
    outputs, overran = [], False
    for process in processes:
        try:
            _, err = process.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            overran = True
            for each in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(each.pid, signal.SIGKILL)
            _, err = process.communicate()
        outputs.append(err)
    if overran:
        logs = "\n".join(f"--- torchrun {n}:\n{err[-3000:]}" for n, err in enumerate(outputs))
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{logs}")
    for process, err in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    return outputs


@pytest.fixture(scope="module")
def one_node(shards, tmp_path_factory):
    """An uninterrupted run, one node with two processes."""
    output = tmp_path_factory.mktemp("one_node") / "out"
    finish(torchrun(shards, output, "--standalone", "--nproc_per_node=2"))
    assert names(output) == ["ckpt_2.pt", "ckpt_4.pt", "ckpt_6.pt"]
    return output


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_torchrun_restarts_a_killed_worker_and_ends_where_an_uninterrupted_run_does(
    shards, one_node, tmp_path, rank
):
    """A worker kills itself (SIGKILL) after step 3; torchrun restarts both, which resume from
    ckpt_2 by themselves (TORCHELASTIC_RESTART_COUNT), redo step 3 and end with the weights of
    a run that was never interrupted."""
    output = tmp_path / "out"
    # torchrun's shared rendezvous store keeps the failed attempt's keys; the restarted
    # workers work under a prefix of their own (distributed.restarted_attempt_store).
    process = torchrun(
        shards,
        output,
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=1",
        script=("tests/pretrain_then_die.py", f"3:{rank}"),
    )
    (err,) = finish(process)
    assert "torchrun restart 1: resuming from the newest checkpoint" in err
    assert names(output) == ["ckpt_2.pt", "ckpt_4.pt", "ckpt_6.pt"]
    assert same_weights(output / "ckpt_6.pt", one_node / "ckpt_6.pt")


@pytest.mark.slow
def test_two_nodes_meeting_at_a_c10d_rendezvous_equal_one_node(shards, one_node, tmp_path):
    output, port = tmp_path / "out", free_port()
    nodes = [
        torchrun(
            shards,
            output,
            "--nnodes=2",
            f"--node_rank={node}",
            "--nproc_per_node=1",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint=localhost:{port}",
            "--rdzv_id=two-nodes",
            f"--rdzv_conf=is_host={int(node == 0)}",
        )
        for node in (0, 1)
    ]
    finish(*nodes)
    assert names(output) == ["ckpt_2.pt", "ckpt_4.pt", "ckpt_6.pt"]
    assert same_weights(output / "ckpt_6.pt", one_node / "ckpt_6.pt")


def test_optimizer_state_kinds_are_checked_before_loading():
    from checkpoint import CheckpointError
    from pretraining_checkpoints import check_optimizer_types

    moments = {"exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}
    head = {"lr": torch.tensor(1e-3), "step": torch.tensor([7], dtype=torch.int32)}
    for good in (  # ours and 21.11's (numbers), HEAD's (tensors), other layouts (left alone)
        {"state": {0: moments}, "param_groups": [{"lr": 1e-3, "step": 7, "params": [0]}]},
        {"state": {0: {**moments, "step": torch.tensor(7.0)}}, "param_groups": [head]},
        None,
        [],
    ):
        check_optimizer_types(good, "ok.pt")
    bad = [
        ({"state": {0: {"exp_avg": torch.zeros(3, dtype=torch.int64)}}}, "state 0 exp_avg"),
        ({"state": {0: {"exp_avg_sq": torch.zeros(3, dtype=torch.bool)}}}, "0 exp_avg_sq"),
        ({"state": {0: {"exp_avg": torch.zeros(2, dtype=torch.complex64)}}}, "0 exp_avg is"),
        ({"state": {0: {"exp_avg": [0.0, 1.0]}}}, "0 exp_avg is not a floating tensor (a list)"),
        ({"state": {0: {"exp_avg": torch.tensor([float("nan")])}}}, "holds NaN or infinity"),
        ({"state": {"0\nfake": {"exp_avg": torch.zeros(1, dtype=torch.int8)}}}, "0\\nfake"),
        ({"state": {0: {"step": "7"}}}, "state 0 step is not a number (a str)"),
        ({"param_groups": [{"lr": float("nan")}]}, "param_groups[0] lr is not a finite number"),
        ({"param_groups": [{"lr": True}]}, "lr is not a finite number (True)"),
        ({"param_groups": [{}, {"step": torch.tensor([1, 2])}]}, "param_groups[1] step"),
    ]
    for state, message in bad:
        with pytest.raises(CheckpointError) as refused:
            check_optimizer_types(state, "bad.pt")
        text = str(refused.value)
        assert text.startswith("bad.pt: optimizer ") and message in text and "\n" not in text
