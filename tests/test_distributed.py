"""distributed.py: who this process is under torchrun, srun and plain shells, and the timeout."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import distributed
from distributed import DistributedError, launch_environment

LAUNCH_VARIABLES = (
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_JOB_ID",
    distributed.TIMEOUT_ENV,
)


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


def test_barrier_without_a_process_group_returns_at_once(env):
    import torch

    started = time.perf_counter()
    assert distributed.barrier("the start") is None  # nothing to wait for
    assert time.perf_counter() - started < 1.0
    assert not torch.distributed.is_initialized()  # and no group was made for it


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    """One of two gloo ranks: the seconds it waited at a barrier that rank 1 reaches a second
    late, the DDP gradients of `_ddp_gradients`, then `cleanup` as every entry script ends; all
    three, and the gloo threads left after it, are saved for the parent."""
    import torch
    import torch.distributed as dist

    distributed.import_before_init_process_group()
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    distributed.barrier("the start")  # both ranks are here before the late one sleeps
    if rank == 1:
        time.sleep(1.0)
    started = time.perf_counter()
    distributed.barrier("the test's barrier")
    waited = time.perf_counter() - started
    results = _ddp_gradients(rank)  # the DDP models are gone when it returns
    distributed.cleanup()
    tasks = Path("/proc/self/task")  # Linux: one folder per thread, its name in "comm"
    threads = None
    if tasks.is_dir():
        threads = [(task / "comm").read_text().strip() for task in tasks.iterdir()]
    saved = {"gradients": results, "threads": threads, "barrier_wait": waited}
    torch.save(saved, f"{out_dir}/rank{rank}.pt")


def _ddp_gradients(rank: int) -> dict:
    """Two micro-batches (the first under no_sync) per variant of `wrap_ddp`; the averaged
    gradients by variant and parameter name."""
    import torch

    import training

    state = distributed.DistState(rank=rank, world_size=2)
    inputs, targets = _ddp_data()
    results = {}
    for compression in (None, "fp16", "bf16"):
        model = _ddp_model()
        ddp = distributed.wrap_ddp(model, state, compression=compression)
        for micro in range(2):  # rows [rank*4 + micro*2, +2): each rank sees half of the batch
            rows = slice(rank * 4 + micro * 2, rank * 4 + micro * 2 + 2)
            with training.no_sync_unless(ddp, sync=micro == 1):
                loss = torch.nn.functional.mse_loss(ddp(inputs[rows]), targets[rows])
                (loss / 2).backward()
        results[str(compression)] = {n: p.grad.clone() for n, p in model.named_parameters()}
    return results


def _ddp_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))


def _ddp_data():
    import torch

    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 16, generator=generator), torch.randn(8, 4, generator=generator)


@pytest.fixture(scope="module")
def ddp_ranks(tmp_path_factory):
    """What each of the two gloo ranks of `_ddp_worker` saved."""
    import torch
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("ddp")
    mp.spawn(_ddp_worker, args=(str(folder / "init"), str(folder)), nprocs=2, join=True)
    return [torch.load(folder / f"rank{r}.pt") for r in range(2)]


def test_ddp_gradients_equal_one_process_with_and_without_compression(ddp_ranks):
    """Two gloo ranks with no_sync accumulation give the single-process gradient of the whole
    batch: exactly in fp32, to 16-bit rounding when compressed (fp16 or bf16)."""
    import torch

    model = _ddp_model()
    inputs, targets = _ddp_data()
    torch.nn.functional.mse_loss(model(inputs), targets).backward()
    expected = {n: p.grad for n, p in model.named_parameters()}
    tolerances = {"None": 1e-6, "fp16": 2e-3, "bf16": 2e-2}
    for compression, tolerance in tolerances.items():
        for name, grad in expected.items():
            scale = float(grad.abs().max())
            for rank in ddp_ranks:
                error = float((rank["gradients"][compression][name] - grad).abs().max())
                assert error <= tolerance * scale, (compression, name, error / scale)


def test_barrier_waits_for_the_late_rank(ddp_ranks):
    """Rank 1 reached the barrier a second after rank 0, which waited there for it."""
    early, late = (rank["barrier_wait"] for rank in ddp_ranks)
    assert early >= 0.8 and late < early, (early, late)


def test_cleanup_stops_the_gloo_worker_threads(ddp_ranks):
    """After DDP backward passes (compressed ones too), `cleanup` destroys the process group
    and joins gloo's worker threads, so none of them can still be freeing a collective, which
    takes the GIL, while the interpreter exits (that aborted the process with SIGABRT)."""
    for rank in ddp_ranks:
        if rank["threads"] is None:
            pytest.skip("needs /proc/self/task to list the threads")
        assert not [name for name in rank["threads"] if "gloo" in name], rank["threads"]


def test_allreduce_compression_follows_the_precision():
    assert distributed.allreduce_compression("bf16", True) == "bf16"
    assert distributed.allreduce_compression("fp16", True) == "fp16"
    assert distributed.allreduce_compression("fp32", True) == "fp16"
    assert distributed.allreduce_compression("bf16", False) is None


def test_rng_state_round_trips_through_plain_values():
    import pickle
    import random

    import numpy as np
    import torch

    distributed.seed_everything(5, rank=1)
    state = distributed.rng_state()
    pickle.dumps(state)  # plain values only: gatherable and loadable with weights_only
    first = (random.random(), float(np.random.rand()), float(torch.rand(())))
    distributed.seed_everything(99)
    distributed.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == first
