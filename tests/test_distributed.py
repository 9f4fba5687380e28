"""distributed.py: who this process is under torchrun, srun and plain shells, and the timeout."""

from __future__ import annotations

import pytest

import distributed
from distributed import DistributedError, launch_environment

LAUNCH_VARIABLES = (
    "WORLD_SIZE", "RANK", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID",
    "SLURM_STEP_NUM_TASKS", "SLURM_JOB_ID", distributed.TIMEOUT_ENV,
)  # fmt: skip


@pytest.fixture
def env(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_env


def test_plain_process_is_a_world_of_one(env):
    assert launch_environment() == (1, 0, None)


def test_torchrun(env):
    env(WORLD_SIZE=4, RANK=2, LOCAL_RANK=2, SLURM_NTASKS=1, SLURM_STEP_NUM_TASKS=1)
    assert launch_environment() == (4, 2, 2)


def test_srun_job_step_with_one_task_per_gpu(env):
    env(SLURM_JOB_ID=7, SLURM_NTASKS=16, SLURM_STEP_NUM_TASKS=16, SLURM_PROCID=9, SLURM_LOCALID=1)
    assert launch_environment() == (16, 9, 1)


def test_single_process_inside_an_allocation_is_not_rank_0_of_n(env):
    # an sbatch script or an salloc shell: the allocation has 8 tasks, this is one process
    env(SLURM_JOB_ID=7, SLURM_NTASKS=8, SLURM_PROCID=0, SLURM_LOCALID=0)
    assert launch_environment() == (1, 0, None)
    env(SLURM_STEP_NUM_TASKS=1)  # an interactive job step (salloc with use_interactive_step)
    assert launch_environment() == (1, 0, None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": 2, "RANK": 2}, "rank 2 is not within a world of 2"),
        ({"SLURM_STEP_NUM_TASKS": 4, "SLURM_PROCID": "$(id)"}, "SLURM_PROCID must be an integer"),
    ],
)
def test_malformed_launch_variables_are_one_clear_error(env, values, message):
    env(**values)
    with pytest.raises(DistributedError, match=message.replace("(", r"\(").replace(")", r"\)")):
        launch_environment()


def test_timeout_setting(env):
    assert distributed.timeout_minutes() == 30
    env(**{distributed.TIMEOUT_ENV: "0.5"})
    assert distributed.timeout_minutes() == 0.5
    env(**{distributed.TIMEOUT_ENV: "never"})
    with pytest.raises(DistributedError, match="positive number of minutes"):
        distributed.timeout_minutes()


def test_barrier_without_a_process_group_returns(env):
    distributed.barrier("the start")  # nothing to wait for
