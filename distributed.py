"""Process groups, ranks, devices, seeding and the DDP wrapper shared by every entry script.

Ranks come from `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK), from SLURM (SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID, when a job step starts one process per task), or from a legacy
`--local_rank`; without any of them the run is a single process. NCCL on GPUs, gloo on CPU.

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


def _env_int(*names: str) -> int | None:
    for name in names:
        if os.environ.get(name, "").strip().lstrip("-").isdigit():
            return int(os.environ[name])
    return None


def init_distributed(
    local_rank_arg: int = -1, use_cuda: bool = True, timeout_minutes: float = 30.0
) -> DistState:
    """Join the process group when launched as several processes; pick this process's device."""
    world_size = _env_int("WORLD_SIZE", "SLURM_NTASKS") or 1
    rank = _env_int("RANK", "SLURM_PROCID") or 0
    local_rank = _env_int("LOCAL_RANK", "SLURM_LOCALID")
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
            raise RuntimeError(
                f"rank {rank} of {world_size}: MASTER_ADDR is not set; launch with torchrun, or "
                "export MASTER_ADDR/MASTER_PORT (run.sub does this under SLURM)"
            )
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=datetime.timedelta(minutes=timeout_minutes),
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


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
