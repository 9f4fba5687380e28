"""Process groups, ranks, devices, seeding and the DDP wrapper shared by every entry script.

Ranks come from `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK), from an `srun` job step with one
process per task (SLURM_STEP_NUM_TASKS, SLURM_PROCID, SLURM_LOCALID), or from a legacy
`--local_rank`; without any of them the run is a single process (also inside an sbatch script or
an salloc shell). NCCL on GPUs, gloo on CPU; collectives give up after
$BERT_DIST_TIMEOUT_MINUTES (default 30) with one clear error.

Differences from NVIDIA: `torchrun` instead of `torch.distributed.launch` (`--local_rank` still
works); seeds are offset by the *global* rank (NVIDIA used the local rank, so ranks with the same
local rank on different nodes drew the same dropout masks); DDP buckets keep their default size
so communication overlaps the backward pass (NVIDIA HEAD passed a byte count as `bucket_cap_mb`,
which made one huge bucket and no overlap).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from errors import BertError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DistState:
    """Who this process is: global rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


class DistributedError(BertError, RuntimeError):
    """The launch environment or the process group cannot work; the message says why."""


#: Minutes a collective (and the process-group start) waits for the other ranks before failing.
TIMEOUT_ENV = "BERT_DIST_TIMEOUT_MINUTES"


def _env_int(name: str) -> int | None:
    """An integer environment variable, None when unset; a malformed value is an error."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise DistributedError(
            f"the environment variable {name} must be an integer, got {text!r}"
        ) from None


def launch_environment() -> tuple[int, int, int | None]:
    """(world size, global rank, local rank or None) of this process.

    torchrun (and torch.distributed.launch) set WORLD_SIZE/RANK/LOCAL_RANK. Under SLURM only a
    job step started by `srun` with several tasks counts (SLURM_STEP_NUM_TASKS, SLURM_PROCID,
    SLURM_LOCALID): SLURM_NTASKS describes the whole allocation, so a single process started
    inside an sbatch script or an salloc shell would otherwise take itself for rank 0 of N and
    wait forever for the others."""
    if os.environ.get("WORLD_SIZE", "").strip():
        world_size, rank, local_rank = (
            _env_int("WORLD_SIZE"), _env_int("RANK") or 0, _env_int("LOCAL_RANK"),
        )  # fmt: skip
    elif (_env_int("SLURM_STEP_NUM_TASKS") or 1) > 1:
        world_size = _env_int("SLURM_STEP_NUM_TASKS")
        rank, local_rank = _env_int("SLURM_PROCID") or 0, _env_int("SLURM_LOCALID")
    else:
        return 1, 0, None
    if world_size < 1 or not 0 <= rank < world_size:
        raise DistributedError(f"rank {rank} is not within a world of {world_size} processes")
    return world_size, rank, local_rank


def timeout_minutes() -> float:
    """How long collectives wait for the other ranks ($BERT_DIST_TIMEOUT_MINUTES, default 30)."""
    text = os.environ.get(TIMEOUT_ENV, "").strip() or "30"
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes < 1e6:
        raise DistributedError(f"{TIMEOUT_ENV} must be a positive number of minutes, got {text!r}")
    return minutes


def init_distributed(local_rank_arg: int = -1, use_cuda: bool = True) -> DistState:
    """Join the process group when launched as several processes; pick this process's device."""
    world_size, rank, local_rank = launch_environment()
    if local_rank is None:
        local_rank = max(local_rank_arg, 0)
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        os.environ.setdefault("RANK", str(rank))
        os.environ.setdefault("WORLD_SIZE", str(world_size))
        if "MASTER_ADDR" not in os.environ:
            raise DistributedError(
                f"rank {rank} of {world_size}: MASTER_ADDR is not set; launch with torchrun, or "
                "export MASTER_ADDR/MASTER_PORT (run.sub does this under SLURM)"
            )
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes()),
            device_id=device if cuda else None,
        )
        logger.info("rank %d of %d on %s (%s)", rank, world_size, device, dist.get_backend())
    return DistState(rank, world_size, local_rank, device)


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (all devices) with `seed + rank` (the global rank)."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


def wrap_ddp(model: nn.Module, state: DistState, fp16_allreduce: bool = False) -> nn.Module:
    """DistributedDataParallel when distributed (fp16-compressed gradients if asked), else model."""
    if not state.is_distributed:
        return model
    device_ids = [state.device.index] if state.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, gradient_as_bucket_view=True
    )
    if fp16_allreduce:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        ddp.register_comm_hook(state=None, hook=default_hooks.fp16_compress_hook)
    return ddp


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (the tensor itself when not distributed)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def all_gather_object(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(where: str = "a barrier") -> None:
    """Wait for every rank; after the process-group timeout, one clear error instead of a hang."""
    if not dist.is_initialized():
        return
    try:
        dist.barrier()
    except RuntimeError as err:
        raise DistributedError(
            f"rank {dist.get_rank()}: the other ranks did not reach {where} within "
            f"{timeout_minutes():g} minutes ({TIMEOUT_ENV}); one of them probably failed, see "
            f"its log ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from err


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
