"""output_lock.py: one run per output folder. A live holder refuses a second run in one line
naming it; a dead one (gone PID, restarted machine, an earlier torchrun attempt, no heartbeat
for STALE_SECONDS) is taken over with a warning; the lock goes when the run ends, however it
ends; what killed writers left is cleared and a read-only folder is found before any work."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
import time

import pytest

import fileio
import output_lock
from logger import MetricLogger, read_dllogger_file
from output_lock import LOCK_NAME, Holder, OutputError, OutputLock, claim_output, stale_reason
from tests.support import plant, plant_file_lock


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(process.stdout)


def test_a_live_holder_refuses_a_second_run_in_one_line(tmp_path):
    with OutputLock(tmp_path, "run_pretraining.py"):
        written = Holder.parse((tmp_path / LOCK_NAME).read_bytes())
        assert written.pid == os.getpid() and written.program == "run_pretraining.py"
        with pytest.raises(OutputError) as refused:
            OutputLock(tmp_path, "run_squad.py").acquire()
        message = str(refused.value)
        assert "\n" not in message and f"--output_dir {tmp_path} is in use by" in message
        assert f"run_pretraining.py (pid {os.getpid()} on {written.host}" in message
    assert not (tmp_path / LOCK_NAME).exists()  # released
    with OutputLock(tmp_path, "run_squad.py"):  # free again
        pass


@pytest.mark.parametrize(
    ("changes", "age", "reason"),
    [
        ({"pid": "dead"}, 0, "is no longer running"),
        ({"host": "node-7", "machine": "x/y"}, output_lock.STALE_SECONDS + 60, "not refreshed"),
        ({"machine": "another-boot/pid:[1]"}, 0, "this machine has restarted"),
        ({"torchrun_job": "job-1", "restart": 0}, 0, "attempt 0 of this torchrun job"),
    ],
)
def test_a_dead_holder_is_taken_over_with_a_warning(
    tmp_path, monkeypatch, caplog, changes, age, reason
):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    if changes.get("pid") == "dead":
        changes = {"pid": dead_pid()}
    stale = plant(tmp_path, age, **changes)
    with caplog.at_level(logging.WARNING), OutputLock(tmp_path, "run_pretraining.py") as lock:
        assert Holder.parse((tmp_path / LOCK_NAME).read_bytes()).token == lock.me.token
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and reason in warnings[0] and f"pid {stale.pid}" in warnings[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no aside copy left


@pytest.mark.parametrize(
    "changes",
    [
        {"host": "node-7", "machine": "x/y"},  # another machine, refreshed recently
        {"pid": 1},  # this machine, running (init)
        {"torchrun_job": "job-1", "restart": 1},  # this attempt of the job (another rank?)
        {"torchrun_job": "none", "restart": 0},  # c10d's default id names no job
    ],
)
def test_a_holder_that_may_live_is_respected(tmp_path, monkeypatch, changes):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", changes.get("torchrun_job", "job-1"))
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    plant(tmp_path, output_lock.STALE_SECONDS - 60, **changes)
    before = (tmp_path / LOCK_NAME).read_bytes()
    with pytest.raises(OutputError, match=r"is in use by other_run\.py"):
        OutputLock(tmp_path, "run_pretraining.py").acquire()
    assert (tmp_path / LOCK_NAME).read_bytes() == before


def test_an_unreadable_lock_is_respected_until_it_is_old(tmp_path):
    (tmp_path / LOCK_NAME).write_bytes(b"")  # O_EXCL fallback: created, not yet written
    with pytest.raises(OutputError, match="a run whose lock file cannot be read"):
        OutputLock(tmp_path, "run_pretraining.py").acquire()
    old = time.time() - output_lock.STALE_SECONDS - 1
    os.utime(tmp_path / LOCK_NAME, (old, old))
    with OutputLock(tmp_path, "run_pretraining.py"):
        pass


def test_lock_values_from_the_file_are_printed_safely(tmp_path):
    plant(tmp_path, host="evil\nDLL 2026 - forged line", program="\x1b[31mred")
    with pytest.raises(OutputError) as refused:
        OutputLock(tmp_path, "run_pretraining.py").acquire()
    assert "\n" not in str(refused.value) and "\x1b" not in str(refused.value)


def test_stale_reason_of_a_foreign_or_malformed_file():
    me = Holder.this_process("run_pretraining.py")
    for data in (b"{", b"[]", b'{"pid": "7"}', b"\xff\xfe", b'{"host": 1, "pid": 2}'):
        assert Holder.parse(data) is None
        assert stale_reason(None, 5.0, me) is None
    assert "not refreshed for 11 minutes" in stale_reason(None, 660.0, me)


def test_release_leaves_a_lock_another_run_took(tmp_path):
    lock = OutputLock(tmp_path, "run_pretraining.py")
    lock.acquire()
    other = plant(tmp_path)  # taken over while this run was frozen
    lock.release()
    assert Holder.parse((tmp_path / LOCK_NAME).read_bytes()).token == other.token


def test_taking_over_puts_back_a_lock_renewed_in_between(tmp_path):
    stale = plant(tmp_path, pid=dead_pid()).to_bytes()
    renewed = plant(tmp_path)  # another run took the stale lock just before us
    output_lock._LockFile(tmp_path).remove(stale)
    assert Holder.parse((tmp_path / LOCK_NAME).read_bytes()).token == renewed.token
    assert [p.name for p in tmp_path.iterdir()] == [LOCK_NAME]


def test_the_holder_refreshes_its_lock_and_notices_losing_it(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(output_lock, "HEARTBEAT_SECONDS", 0.05)
    lock = OutputLock(tmp_path, "run_pretraining.py")
    lock.acquire()
    try:
        old = time.time() - 3600
        os.utime(tmp_path / LOCK_NAME, (old, old))
        deadline = time.time() + 10
        while os.stat(tmp_path / LOCK_NAME).st_mtime < time.time() - 60:
            assert time.time() < deadline, "the lock was never refreshed"
            time.sleep(0.05)
        with caplog.at_level(logging.ERROR):
            plant(tmp_path)
            while not any("was taken by another run" in r.getMessage() for r in caplog.records):
                assert time.time() < deadline, "losing the lock went unnoticed"
                time.sleep(0.05)
    finally:
        lock.release()


def test_claim_clears_killed_writers_files_tests_a_write_and_releases(tmp_path, caplog):
    folder = tmp_path / "new" / "out"
    with claim_output(folder, "run_squad.py"):
        assert (folder / LOCK_NAME).is_file()
    assert list(folder.iterdir()) == []
    (folder / ".pytorch_model.bin.0123abcd.tmp").write_bytes(b"half")
    (folder / "pytorch_model.bin").write_bytes(b"kept")
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(KeyboardInterrupt),
        claim_output(folder, "run_squad.py"),
    ):
        raise KeyboardInterrupt
    assert sorted(p.name for p in folder.iterdir()) == ["pytorch_model.bin"]
    assert any(".pytorch_model.bin.0123abcd.tmp" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES])
@pytest.mark.parametrize("where", ["lock", "test write"])
def test_an_unwritable_folder_is_one_line_before_any_work(tmp_path, monkeypatch, code, where):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fileio, "create_new_file" if where == "lock" else "atomic_write", fail)
    with pytest.raises(OutputError) as refused, claim_output(tmp_path, "run_pretraining.py"):
        pytest.fail("the block must not run")
    assert str(refused.value).startswith(f"--output_dir {tmp_path}: cannot write")
    assert os.strerror(code) in str(refused.value) and "\n" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # the lock was given back


def test_an_output_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "out").write_text("a file")
    with (
        pytest.raises(OutputError, match="exists and is not a folder"),
        claim_output(tmp_path / "out", "run_glue.py"),
    ):
        pass


def test_claim_spares_a_lock_file_another_run_is_creating_right_now(tmp_path):
    fresh, old = tmp_path / f".{LOCK_NAME}.0123abcd.tmp", tmp_path / f".{LOCK_NAME}.89abcdef.tmp"
    for entry in (fresh, old):
        entry.write_bytes(b"{}")
    then = time.time() - 120
    os.utime(old, (then, then))
    with claim_output(tmp_path, "run_pretraining.py"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == [fresh.name]


# ------------------------------------------------------------------------------- single files


def test_a_single_file_output_is_held_by_its_own_lock_beside_it(tmp_path):
    log = tmp_path / "x_training_0.hdf5"
    with OutputLock(log, "run_squad.py", "--json-summary", single_file=True) as lock:
        (held,) = [p.name for p in tmp_path.iterdir()]
        assert held.startswith(LOCK_NAME + ".") and "training" not in held  # not a shard name
        assert Holder.parse((tmp_path / held).read_bytes()).token == lock.me.token
        with pytest.raises(OutputError) as refused:
            OutputLock(log, "run_glue.py", "--json-summary", single_file=True).acquire()
        message = str(refused.value)
        assert message.startswith(f"--json-summary {log} is in use by run_squad.py (pid ")
        assert "choose another --json-summary" in message
        with OutputLock(tmp_path / "other.json", "run_glue.py", single_file=True):
            pass  # another file of the folder is free
        with OutputLock(tmp_path, "run_glue.py"):
            pass  # and so is the folder itself, for a run whose log lies in its output folder
    assert list(tmp_path.iterdir()) == []


def test_a_dead_runs_file_lock_is_taken_over(tmp_path):
    log = tmp_path / "log.json"
    lock_file = plant_file_lock(log, pid=dead_pid())
    with OutputLock(log, "run_squad.py", "--json-summary", single_file=True) as lock:
        assert Holder.parse(lock_file.read_bytes()).token == lock.me.token
    assert not lock_file.exists()


def test_two_live_runs_never_share_one_json_summary(tmp_path):
    log = tmp_path / "logs" / "dllogger.json"
    first = MetricLogger(log, hold_as="run_squad.py", use_dllogger=False)
    first.log("PARAMETER", {"seed": 1})
    with pytest.raises(OutputError, match=r"--json-summary .*dllogger\.json is in use by run_sq"):
        MetricLogger(log, hold_as="run_glue.py", use_dllogger=False)
    MetricLogger(log, is_main_process=False, hold_as="run_glue.py").close()  # other ranks: no lock
    with first:
        first.log((), {"final_loss": 1.0})
    first.close()  # twice: nothing more happens
    with MetricLogger(log, hold_as="run_glue.py", use_dllogger=False) as second:  # free again
        second.log("PARAMETER", {"seed": 2})
    assert [p.name for p in log.parent.iterdir()] == ["dllogger.json"]
    seeds = [r["data"].get("seed") for r in read_dllogger_file(log) if r["type"] == "LOG"]
    assert seeds == [1, None, 2]
