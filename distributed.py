"""Process groups, ranks, devices, seeding (and saving and restoring every RNG), and the DDP
wrapper shared by every entry script.

Ranks come from `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK), from an `srun` job step with one
process per task (SLURM_STEP_NUM_TASKS, SLURM_PROCID, SLURM_LOCALID), or from a legacy
`--local_rank`; without any of them the run is a single process (also inside an sbatch script or
an salloc shell). NCCL on GPUs, gloo on CPU; collectives give up after
$BERT_DIST_TIMEOUT_MINUTES (default 30) with one clear error. Seeds are offset by the global
rank. Which precision and flags a run uses is `runtime.py`'s; the README lists how seeding and
DDP differ from NVIDIA's.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
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
            _env_int("WORLD_SIZE"),
            _env_int("RANK") or 0,
            _env_int("LOCAL_RANK"),
        )
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


def restarted_attempt_store(world_size: int, timeout: datetime.timedelta) -> dist.Store | None:
    """The rendezvous store for workers that `torchrun --max-restarts` restarted, else None.

    torchrun lends its agent's TCPStore to the workers (TORCHELASTIC_USE_AGENT_STORE) and keeps
    it across restarts, so a restarted worker could read the failed attempt's keys and connect
    to dead peers or wait forever. Each attempt therefore works under its own key prefix."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "").strip()
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or attempt in ("", "0"):
        return None
    agent = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world_size,
        is_master=False,
        timeout=timeout,
    )
    return dist.PrefixStore(f"bert/restart_{attempt}/", agent)


def import_before_init_process_group() -> None:
    """Import torch.distributed.nn.functional now, while there is no process group.

    Its functions take the default group as a default argument, bound when the module is
    first imported (DDP's constructor imports it, through torch.distributed._shard). Imported
    after init_process_group, it holds the group until the interpreter exits, so `cleanup`
    could never free it nor stop gloo's worker threads; imported before, the defaults are
    None (meaning the default group, looked up at each call)."""
    import torch.distributed.nn.functional  # noqa: F401


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
        timeout = datetime.timedelta(minutes=timeout_minutes())
        store = restarted_attempt_store(world_size, timeout)
        import_before_init_process_group()
        dist.init_process_group(
            backend=backend_for(device),
            timeout=timeout,
            device_id=device if cuda else None,
            **({"store": store, "rank": rank, "world_size": world_size} if store else {}),
        )
        logger.info("rank %d of %d on %s (%s)", rank, world_size, device, dist.get_backend())
    return DistState(rank, world_size, local_rank, device)


def backend_for(device: torch.device) -> str:
    """The process-group backend for ranks on `device`: NCCL on GPUs, gloo on CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def backend_name() -> str:
    """The backend of this process's group ("nccl", "gloo"); "none" without one."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (all devices) with `seed + rank` (the global rank)."""
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)


#: Gradient all-reduce formats: full precision (None), or compressed to 16 bits.
ALLREDUCE_COMPRESSIONS = (None, "fp16", "bf16")


def allreduce_compression(precision: str, compress: bool) -> str | None:
    """The all-reduce format when `--allreduce_post_accumulation_fp16` asks for 16 bits.

    fp16 (NVIDIA's choice) for fp16 and fp32 runs; bf16 for bf16 and fp8 runs, which have no
    loss scale: gradients below fp16's smallest normal (6e-5, after the division by the world
    size) would lose precision or flush to zero, while bf16 keeps fp32's exponent range at the
    cost of 8 bits of mantissa. Without the flag, gradients are all-reduced in full precision."""
    if not compress:
        return None
    return "bf16" if precision in ("bf16", "fp8") else "fp16"


def compressed_allreduce_hook(dtype: torch.dtype):
    """A DDP communication hook that averages a bucket in `dtype`: divide by the world size,
    cast, all-reduce, cast back into the bucket (what PyTorch's fp16/bf16 compression hooks do;
    theirs refuses bf16 unless NCCL runs it, this one also runs on gloo)."""

    def hook(process_group, bucket):  # unannotated: DDP checks annotations as real types
        group = process_group if process_group is not None else dist.group.WORLD
        buffer = bucket.buffer()
        compressed = buffer.to(dtype).div_(dist.get_world_size(group))
        future = dist.all_reduce(compressed, group=group, async_op=True).get_future()

        def decompress(done: torch.futures.Future) -> torch.Tensor:
            buffer.copy_(done.value()[0])
            return buffer

        return future.then(decompress)

    hook.__name__ = f"{dtype}_allreduce_hook".replace("torch.", "")
    return hook


def rng_state() -> dict[str, Any]:
    """Every RNG this process draws from, as plain Python values (bytes, ints, lists), so it
    can be gathered across ranks and loaded with weights_only."""
    name, keys, *rest = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), *rest],
        "torch": bytes(torch.get_rng_state().numpy()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [bytes(s.numpy()) for s in torch.cuda.get_rng_state_all()]
    return state


def _byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_byte_tensor(s) for s in state["cuda"]])


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def wrap_ddp(
    model: nn.Module,
    state: DistState,
    fp16_allreduce: bool = False,
    *,
    compression: str | None = None,
) -> nn.Module:
    """DistributedDataParallel when distributed, else the model unchanged.

    Gradients are the buckets' views (no copy between the parameters' `.grad` and the buckets),
    and buckets keep DDP's default size so each is all-reduced while backward still runs on
    earlier layers (with `no_sync` accumulation this overlaps the last micro-step's backward).
    `static_graph` is left off: it saves nothing without `find_unused_parameters` (off here),
    and PyTorch (2.13) fails an internal assertion when the first backward of a static-graph
    DDP runs under `no_sync`, as every accumulation step's first micro-step does.
    `compression` "fp16"/"bf16" all-reduces 16-bit copies of the buckets
    (`compressed_allreduce_hook`); `fp16_allreduce=True` is the same as "fp16"."""
    if fp16_allreduce and compression is None:
        compression = "fp16"
    if compression not in ALLREDUCE_COMPRESSIONS:
        raise ValueError(f"all-reduce compression must be fp16, bf16 or None, got {compression!r}")
    if not state.is_distributed:
        return model
    device_ids = [state.device.index] if state.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, gradient_as_bucket_view=True
    )
    if compression is not None:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[compression]
        ddp.register_comm_hook(state=None, hook=compressed_allreduce_hook(dtype))
    logger.info("DDP: gradients all-reduced in %s", compression or "full precision")
    return ddp


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (the tensor itself when not distributed)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (the tensor itself when not distributed)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
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
    """Destroy the process group and, with it, gloo's worker threads.

    A gloo worker thread frees each collective it finished, and a collective launched during
    backward (every DDP all-reduce) holds a Python object, so freeing it takes the GIL. If the
    interpreter has begun to exit by then, the thread is stopped inside a C++ destructor and
    the process aborts ("terminate called without an active exception", SIGABRT) after a run
    that succeeded. The group's destructor waits for its queue and joins these threads with
    the GIL released; it runs when the last reference goes, so the DDP models that hold the
    group must be gone: callers drop theirs first, and the collection below frees any that
    only a reference cycle still holds."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
