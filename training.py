"""The one precision stack and the one optimizer step, shared by every entry script.

Order of wrapping, applied by the entry scripts through these helpers (torchtitan style):
model on device -> activation checkpointing (a flag on the encoder) -> DDP -> autocast around
the forward only -> GradScaler around backward and step (fp16 only). A step: micro-batch losses
are divided by the accumulation steps before backward; all micro-steps but the last run under
`no_sync`; then `optimizer_step` unscales, clips once (optimizers without their own clipping),
steps, updates the scaler and zeroes the gradients with `set_to_none`. Nothing in a micro-step
waits for the device. Also trimming, compile and fp8 helpers; the optimizers are
`optimization.py`'s, and `runtime.choose_precision` turns the flags into a precision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Iterator

import torch
from torch import nn

import distributed
from errors import BertError, UsageError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "fp8")


PRECISION_CHOICES = ("auto", "fp32", "tf32", "bf16", "fp16", "fp8")


def resolve_precision(
    fp16: bool, bf16: bool, precision: str | None = None, device: torch.device | None = None
) -> tuple[str, bool]:
    """(autocast precision, TF32 allowed) from NVIDIA's `--fp16/--amp`, our `--bf16` and
    `--precision`; a ValueError naming the flags when they conflict.

    No flag at all is NVIDIA's behaviour: fp32 with TF32 matmuls allowed ("tf32"). "auto" is bf16
    on GPUs of compute capability 8.0 and newer (A100, H100), else that default; "fp32" is exact
    fp32 (TF32 off).
    """
    chosen = [name for name, flag in (("fp16", fp16), ("bf16", bf16)) if flag]
    if precision is not None and not (precision == "auto" and chosen):
        chosen.append(precision)
    if len(set(chosen)) > 1:
        raise ValueError(f"conflicting precision flags: {', '.join(chosen)}; pick one")
    name = chosen[0] if chosen else "tf32"
    if name == "auto":
        ampere = device is not None and device.type == "cuda"
        ampere = ampere and torch.cuda.get_device_capability(device)[0] >= 8
        name = "bf16" if ampere else "tf32"
    if name not in PRECISION_CHOICES[1:]:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {name!r}")
    return ("fp32" if name == "tf32" else name), name != "fp32"


class DivergenceError(BertError, RuntimeError):
    """Training produced non-finite losses, weights or gradients that loss scaling could not
    absorb; the run stops without writing them to a checkpoint."""


def micro_batch_size(train_batch_size: int, gradient_accumulation_steps: int) -> int:
    """NVIDIA's batch semantics: `--train_batch_size` per process per optimizer step, split into
    `--gradient_accumulation_steps` micro-batches; a UsageError naming both flags otherwise."""
    if gradient_accumulation_steps < 1:
        raise UsageError("--gradient_accumulation_steps must be at least 1")
    if train_batch_size < 1 or train_batch_size % gradient_accumulation_steps:
        raise UsageError(
            f"--train_batch_size {train_batch_size} is not divisible by "
            f"--gradient_accumulation_steps {gradient_accumulation_steps}"
        )
    return train_batch_size // gradient_accumulation_steps


def configure_tf32(enabled: bool = True) -> None:
    """TF32 matmuls and convolutions on Ampere and newer (NVIDIA's containers enable it)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


@dataclasses.dataclass
class PrecisionStack:
    """Autocast settings and the loss scaler of one run.

    "fp16": autocast fp16 and a GradScaler starting at `--init_loss_scale`; "bf16": autocast
    bf16, no scaler; "fp8": bf16 autocast with the encoder's linear layers in float8 through
    torchao's float8 training, on Hopper and newer GPUs only; "fp32": no autocast (TF32 matmuls
    allowed on Ampere and newer unless disabled)."""

    precision: str
    device: torch.device
    scaler: torch.amp.GradScaler | None

    @property
    def dtype(self) -> torch.dtype | None:
        # fp8: the encoder's linear layers compute in float8 (`maybe_float8`), the rest in bf16
        return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp8": torch.bfloat16}.get(
            self.precision
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    @property
    def loss_scale(self) -> float | None:
        """The current loss scale (a host sync: call at logging time only)."""
        return self.scaler.get_scale() if self.scaler else None


def make_precision(
    precision: str, device: torch.device, init_loss_scale: float = 2**20
) -> PrecisionStack:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 needs a GPU; on CPU use --bf16 or fp32")
    if precision == "fp8" and (reason := fp8_unavailable(device)):
        raise ValueError(f"fp8 {reason}")
    scaler = None
    if precision == "fp16":
        scaler = torch.amp.GradScaler(device.type, init_scale=init_loss_scale)
    return PrecisionStack(precision, device, scaler)


def fp8_unavailable(device: torch.device) -> str | None:
    """Why fp8 training cannot run on `device` (one phrase), or None when it can: it needs a
    CUDA GPU of compute capability 9.0 or newer (H100, H200) and the torchao package."""
    if device.type != "cuda":
        return "needs a CUDA GPU of compute capability 9.0 or newer (H100/H200); none is in use"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        name = torch.cuda.get_device_name(device)
        return f"needs compute capability 9.0 or newer (H100/H200); {name} is {major}.{minor}"
    try:
        import torchao.float8  # noqa: F401
    except ImportError:
        return "needs the torchao package (pip install torchao)"
    return None


def float8_layer(module: nn.Module, name: str) -> bool:
    """Which layers compute in float8: the encoder's linear layers whose sizes are multiples of
    16 (float8 matmuls need them); embeddings, the MLM decoder tied to them, the pooler and the
    task heads keep bf16, as float8 recipes keep the first and last layers in higher precision."""
    return (
        isinstance(module, nn.Linear)
        and ".encoder.layer." in f".{name}"
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )


def maybe_float8(model: nn.Module, precision: str) -> nn.Module:
    """For "fp8", swap the chosen linear layers (`float8_layer`) for torchao's float8 training
    layers in place (dynamic tensor-wise scaling; parameter names and checkpoints unchanged);
    the model unchanged otherwise. Applied before `maybe_compile`, which fuses the scaling."""
    if precision != "fp8":
        return model
    from torchao.float8 import Float8Linear, convert_to_float8_training

    if not any(isinstance(m, Float8Linear) for m in model.modules()):
        convert_to_float8_training(model, module_filter_fn=float8_layer)
    count = sum(isinstance(m, Float8Linear) for m in model.modules())
    logger.info("fp8: %d linear layers compute in float8 (torchao), the rest in bf16", count)
    return model


def no_sync_unless(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """DDP's `no_sync` for the micro-steps that only accumulate; a no-op without DDP."""
    if sync or not hasattr(model, "no_sync"):
        return contextlib.nullcontext()
    return model.no_sync()


@dataclasses.dataclass
class StepOutcome:
    """What `optimizer_step` did: the gradient norm (device tensor) and whether it stepped."""

    grad_norm: torch.Tensor | None
    skipped: bool


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    stack: PrecisionStack,
    parameters: list[torch.Tensor],
    max_grad_norm: float | None = None,
) -> StepOutcome:
    """Unscale, clip once (when `max_grad_norm`), step, update the scaler, zero the gradients.

    Optimizers that clip inside their step (LAMB) get `max_grad_norm=None` and report their own
    norm. With a GradScaler, a step whose gradients overflowed is skipped (torch syncs once per
    optimizer step to decide); `skipped` says so.
    """
    grad_norm = None
    if stack.scaler is not None:
        stack.scaler.unscale_(optimizer)
    if max_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm, foreach=True)
    steps_before = _steps_taken(optimizer)
    if stack.scaler is not None:
        stack.scaler.step(optimizer)
        stack.scaler.update()
        skipped = _steps_taken(optimizer) == steps_before
    else:
        optimizer.step()
        skipped = False
    if grad_norm is None:
        grad_norm = getattr(optimizer, "last_grad_norm", None)
    optimizer.zero_grad(set_to_none=True)
    return StepOutcome(grad_norm, skipped)


def _steps_taken(optimizer: torch.optim.Optimizer) -> int:
    """Host-side count of the `step()` calls that ran (GradScaler skips the call on overflow)."""
    if not hasattr(optimizer, "steps_taken"):
        optimizer.steps_taken = 0

        def count(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
            opt.steps_taken += 1

        optimizer.register_step_post_hook(count)
    return optimizer.steps_taken


def padding_multiple(device: torch.device) -> int:
    """Trimmed widths are rounded up to this: few distinct shapes on GPU (exact widths made
    prediction 2.5x slower than padding on an H100), SIMD-friendly ones on CPU."""
    return 64 if device.type == "cuda" else 8


def trimmed_width(longest: int, full: int, multiple: int) -> int:
    """`longest` rounded up to `multiple`, at most `full`."""
    return min(-(-longest // multiple) * multiple, full)


def trim_padding(tensors: list[torch.Tensor], input_mask: torch.Tensor, multiple: int) -> list:
    """Cut every [B, S] tensor to the batch's longest real sequence (rounded up to `multiple`);
    other tensors pass unchanged. Attention masks padding, so outputs at real tokens are the
    same: the fast path beside the plain padded one."""
    full = input_mask.shape[1]
    width = trimmed_width(int(input_mask.sum(dim=1).max()), full, multiple)
    if width == full:
        return list(tensors)
    return [t[:, :width] if t.dim() == 2 and t.shape[1] == full else t for t in tensors]


class LossWindow:
    """The losses of a logging window (or an epoch), summed on the device and read with one
    host sync when logged, with the rows and seconds behind them for a throughput.

    `add(total, *parts, rows=)` takes one micro-batch's mean losses, the total first; `means()`
    gives each loss's mean over the window's micro-batches, averaged over the ranks, and this
    rank's last total; `local_mean()` the mean total of this rank alone. Nothing is read back
    from the device between two logs."""

    def __init__(self, device: torch.device, losses: int = 1) -> None:
        self.device, self.losses = device, losses
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(self.losses, device=self.device)
        self.last = torch.zeros((), device=self.device)
        self.micro_steps = 0
        self.rows = 0
        self.started = time.perf_counter()

    def add(self, *losses: torch.Tensor, rows: int = 0) -> None:
        values = torch.stack([loss.detach() for loss in losses]).float()
        self.sums += values
        self.last = values[0]
        self.micro_steps += 1
        self.rows += rows

    def means(self) -> tuple[list[float], float]:
        """(mean of each loss over the window, averaged over ranks; this rank's last total)."""
        means = distributed.all_reduce_mean(self.sums / max(self.micro_steps, 1))
        values = torch.cat([means, self.last.reshape(1)]).tolist()  # the one host sync
        return values[:-1], values[-1]

    def local_mean(self) -> float:
        """The mean total loss of this rank's micro-batches in the window."""
        return (self.sums[0] / max(self.micro_steps, 1)).item()

    def rate(self, world_size: int) -> float:
        """Rows per second on all ranks since the window started (each rank reads as many)."""
        return self.rows * world_size / max(time.perf_counter() - self.started, 1e-9)


def peak_memory_gib(device: torch.device) -> float | None:
    """The most GPU memory this process's tensors held so far (`max_memory_allocated`), GiB;
    None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def log_peak_memory(metrics, device: torch.device) -> None:
    """Add `peak_memory_gib` to the final summary (step `()`) on a GPU; nothing elsewhere."""
    peak = peak_memory_gib(device)
    if peak is not None:
        metrics.log((), {"peak_memory_gib": peak})


#: With `--compile`, trimmed widths are rounded up to this, so a run meets at most S / 64 widths
#: (2 at phase 1, 8 at phase 2), each compiled once as its own static graph.
COMPILE_WIDTH_MULTIPLE = 64

#: Compiled graphs dynamo keeps per code object while `--compile` is on: every width in training
#: and in evaluation (512 / 64 each), with room to spare (dynamo's default of 8 would run the
#: ninth width eagerly, without a word beyond one warning).
COMPILE_CACHE_SIZE = 32


#: Environment variable naming the torch.compile backend of `--compile` and the compiled LAMB
#: (default inductor); "aot_eager" or "eager" run the same graph capture without code
#: generation, for quick checks of the compiled paths on a CPU (scripts/gpu_check.sh DRY_RUN=1).
COMPILE_BACKEND_ENV = "BERT_COMPILE_BACKEND"


def compile_backend() -> str:
    """The torch.compile backend: $BERT_COMPILE_BACKEND, else inductor."""
    return os.environ.get(COMPILE_BACKEND_ENV, "").strip() or "inductor"


def trim_multiple(device: torch.device, compiled: bool) -> int:
    """The multiple trimmed widths are rounded up to: a fixed set of widths when compiled."""
    return COMPILE_WIDTH_MULTIPLE if compiled else padding_multiple(device)


#: Values for rows that carry no label in a pre-training batch (input_ids, segment_ids,
#: input_mask, masked_lm_labels, next_sentence_labels): -1 is the MLM "not masked" label, -100
#: the ignore index of the next-sentence cross-entropy.
PRETRAINING_ROW_FILLS = [0, 0, 0, -1, -100]


def pad_rows(tensors: list[torch.Tensor], rows: int, fills: list[int]) -> list[torch.Tensor]:
    """Extend each tensor's first dimension to `rows` with `fills[i]` (a value that carries no
    label: masks 0, ignored labels), so a short last batch has the same shape as the others and
    a compiled step does not recompile for it; losses that ignore those labels are unchanged."""
    missing = rows - len(tensors[0])
    if missing <= 0:
        return list(tensors)
    return [
        torch.cat([t, t.new_full((missing, *t.shape[1:]), fill)])
        for t, fill in zip(tensors, fills, strict=True)
    ]


def maybe_compile(model: nn.Module, enabled: bool, backend: str | None = None) -> nn.Module:
    """Compile every encoder layer in place with `torch.compile` (the `--compile` flag); the
    model is returned, unchanged when not enabled.

    Layers, not the whole model: the identical layers share one compiled graph per shape, so
    BERT-large compiles one layer instead of 24 (seconds instead of minutes), each layer's
    backward is its own autograd node (DDP all-reduces a bucket while earlier layers still run
    backward, and activation checkpointing keeps working), and parameter names keep no
    `_orig_mod.` prefix. Shapes are static (`dynamic=False`): callers keep them to a fixed set
    (`trim_multiple`, `pad_rows`). Embeddings, heads and losses stay eager. Applied after
    activation checkpointing and before DDP."""
    if not enabled:
        return model
    encoders = [m for m in model.modules() if hasattr(m, "checkpoint_activations")]
    if not encoders:
        raise ValueError("the model has no encoder layers to compile")
    import torch._dynamo

    backend = backend or compile_backend()
    limit = max(torch._dynamo.config.cache_size_limit, COMPILE_CACHE_SIZE)
    torch._dynamo.config.cache_size_limit = limit
    for encoder in encoders:
        for layer in encoder.layer:
            if getattr(layer, "_compiled_call_impl", None) is None:
                layer.compile(backend=backend, dynamic=False)
    logger.info(
        "torch.compile (%s) on each encoder layer; the first step of each shape is slow", backend
    )
    return model


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Turn on recomputation of the encoder layers in backward (see modeling.BertEncoder)."""
    encoders = [m for m in model.modules() if hasattr(m, "checkpoint_activations")]
    if not encoders:
        raise ValueError("the model has no encoder that supports activation checkpointing")
    for encoder in encoders:
        encoder.checkpoint_activations = enabled


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradients inside the block; the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
