"""Optimizers: LAMB exactly as NVIDIA's fused NVLAMB kernels apply it, AdamW, the no-decay rule.

Owns NVIDIA's parameter groups (`parameter_groups`, the no-decay rule), LAMB in three
implementations of one step, chosen once by `make_lamb(impl=...)`: `Lamb` (multi-tensor
PyTorch, no host synchronisation; its docstring gives the step), `CompiledLamb` (the whole step
as one `torch.compile`d graph) and apex `FusedLAMB`, all with one state layout (`exp_avg`,
`exp_avg_sq` per parameter, `step` per group), so checkpoints move freely between them; the
LAMB state in NVIDIA's checkpoint layout; and AdamW for fine-tuning (`make_adamw`, fused on
CUDA). The optimizer step around them (unscale, clip, scaler) is `training.py`'s; the README
lists how they differ from NVIDIA's.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from errors import MissingDependency, UsageError

logger = logging.getLogger(__name__)

#: NVIDIA's no-decay rule (pre-training and fine-tuning): any name containing one of these.
NO_DECAY = ("bias", "gamma", "beta", "LayerNorm")


def parameter_groups(
    model: nn.Module, weight_decay: float = 0.01, exclude: Iterable[str] = ()
) -> list[dict]:
    """Two groups, in `named_parameters` order: decayed weights, then biases and LayerNorm.

    `exclude` drops parameters whose name contains any of the given strings (SQuAD drops the
    pooler, which its loss never reaches). Tied weights are listed once.
    """
    exclude = tuple(exclude)
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad or any(part in name for part in exclude):
            continue
        (no_decay if any(part in name for part in NO_DECAY) else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class Lamb(torch.optim.Optimizer):
    """NVLAMB with global gradient clipping, in multi-tensor PyTorch.

    One step, as apex `FusedLAMB` does it at 21.11 and `FusedLAMBAMP` at HEAD:
    1. g_norm = the global L2 norm of every gradient; clip = g_norm / max_grad_norm if larger
       than 1;
    2. per element, g' = g / clip; m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g'^2;
       update = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd * p   (decoupled decay);
    3. per tensor, ratio = lr * ||p|| / ||update|| when (wd != 0 or use_nvlamb) and both norms
       are non-zero, else lr (so bias and LayerNorm tensors take a plain Adam step); no clamp;
    4. p -= ratio * update; the group's `step` counts the steps taken.
    The same rule holds for every parameter dtype; `last_grad_norm` keeps g_norm for the logs.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        bias_correction: bool = True,
        grad_averaging: bool = True,
        max_grad_norm: float = 1.0,
        use_nvlamb: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            grad_averaging=grad_averaging,
            max_grad_norm=max_grad_norm,
            use_nvlamb=use_nvlamb,
            step=0,
        )
        super().__init__(params, defaults)
        self.last_grad_norm: torch.Tensor | None = None

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [
            p.grad for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not grads:
            return loss
        if any(g.is_sparse for g in grads):
            raise RuntimeError("Lamb does not support sparse gradients")
        norms = torch._foreach_norm(grads)
        global_norm = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
        self.last_grad_norm = global_norm
        max_norm = self.defaults["max_grad_norm"]
        clip = (global_norm / max_norm).clamp(min=1.0) if max_norm > 0 else None
        for group in self.param_groups:
            self._update_group(group, clip)
        return loss

    def _update_group(self, group: dict, clip: torch.Tensor | None) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        group["step"] += 1
        exp_avgs, exp_avg_sqs = self._moments(params)
        grads = [p.grad for p in params]
        _lamb_group_math(
            params, grads, exp_avgs, exp_avg_sqs, clip, group_scalars(group), group_options(group)
        )

    def _moments(self, params: list[torch.Tensor]) -> tuple[list, list]:
        """(exp_avg, exp_avg_sq) of `params`, created as zeros at their first step."""
        for p in params:
            state = self.state[p]
            if not state:
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        states = [self.state[p] for p in params]
        return [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]


def group_options(group: dict) -> tuple[float, float, float, float, float, bool]:
    """A group's fixed LAMB settings: b1, b2, b3, eps, weight decay, trust ratio on."""
    beta1, beta2 = group["betas"]
    beta3 = 1 - beta1 if group["grad_averaging"] else 1.0
    weight_decay = float(group["weight_decay"])
    trust = weight_decay != 0 or bool(group["use_nvlamb"])
    return float(beta1), float(beta2), float(beta3), float(group["eps"]), weight_decay, trust


def group_scalars(group: dict) -> list[float]:
    """A group's per-step numbers after its step count went up: lr, sqrt(1 - b2^t), 1 - b1^t
    (1 and 1 without bias correction)."""
    beta1, beta2 = group["betas"]
    step = group["step"]
    correction1 = 1 - beta1**step if group["bias_correction"] else 1.0
    correction2 = 1 - beta2**step if group["bias_correction"] else 1.0
    return [float(group["lr"]), math.sqrt(correction2), correction1]


#: The group keys NVIDIA's pre-training LAMBs read in `step()` once `load_state_dict` has
#: replaced their groups (apex FusedLAMB at 21.11, FusedLAMBAMP at HEAD), with their defaults.
NVIDIA_LAMB_GROUP_DEFAULTS = {
    "bias_correction": True,
    "betas": (0.9, 0.999),
    "eps": 1e-6,
    "weight_decay": 0.01,
    "grad_averaging": True,
    "max_grad_norm": 1.0,
}


def nvidia_lamb_state_dict(
    optimizer: torch.optim.Optimizer, model: nn.Module, step: int, *, tensors: bool
) -> dict:
    """The LAMB state in the layout NVIDIA's `run_pretraining.py` resumes from.

    Parameters are numbered as NVIDIA's optimizer numbers them (`parameter_groups` of the model:
    decayed weights, then biases and LayerNorm, each in `named_parameters` order), whatever the
    grouping of `optimizer`; `state` holds `exp_avg`/`exp_avg_sq` (fp32) of every parameter
    that has them. Each group carries every key apex FusedLAMB and HEAD's FusedLAMBAMP read,
    `step` being the optimizer steps taken in this phase. `lr` and `step` are numbers (a float
    and an int, as apex FusedLAMB keeps them) or, with `tensors`, as FusedLAMBAMP keeps them (a
    0-d float32 and a [1] int32 tensor); which one a checkpoint needs is the caller's choice
    (`pretraining_checkpoints.head_step_tensors`). Our own loader (`load_lamb_state`) reads
    both. The moment tensors are the live ones, not copies: save the result at once.
    """
    group_of = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    groups, state, index = [], {}, 0
    for nvidia_group in parameter_groups(model, NVIDIA_LAMB_GROUP_DEFAULTS["weight_decay"]):
        params = nvidia_group["params"]
        ours = group_of[id(params[0])] if params else {}
        group = {key: ours.get(key, value) for key, value in NVIDIA_LAMB_GROUP_DEFAULTS.items()}
        group["betas"] = tuple(group["betas"])
        group["weight_decay"] = nvidia_group["weight_decay"]
        group["use_nvlamb"] = ours.get("use_nvlamb", False)
        group["lr"], group["step"] = float(ours.get("lr", 0.0)), int(step)
        if tensors:
            group["lr"] = torch.tensor(group["lr"], dtype=torch.float32)
            group["step"] = torch.tensor([step], dtype=torch.int32)
        group["params"] = list(range(index, index + len(params)))
        for number, parameter in enumerate(params, start=index):
            moments = optimizer.state.get(parameter, {})
            if "exp_avg" in moments:
                state[number] = {key: moments[key] for key in ("exp_avg", "exp_avg_sq")}
        index += len(params)
        groups.append(group)
    return {"state": state, "param_groups": groups}


def master_params(model: nn.Module) -> list[torch.Tensor]:
    """fp32 weights in NVIDIA's optimizer order: the `master params` 21.11 copies into apex's
    fp32 masters when it resumes with --fp16. Our parameters are fp32 already, so these share
    their storage with the `model` entry and cost nothing in the saved file."""
    groups = parameter_groups(model, NVIDIA_LAMB_GROUP_DEFAULTS["weight_decay"])
    return [p.detach().float() for group in groups for p in group["params"]]


def load_lamb_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict(state)` for states of ours, 21.11's (numbers) or HEAD's
    (`lr`/`step` tensors): group keys the state lacks come from the optimizer's defaults, and
    tensors `lr` and `step` become the numbers our optimizer works with."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for key, value in optimizer.defaults.items():
            group.setdefault(key, value)
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if isinstance(group.get("step"), torch.Tensor):
            group["step"] = int(group["step"].reshape(-1)[0])


def _lamb_group_math(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    exp_avgs: list[torch.Tensor],
    exp_avg_sqs: list[torch.Tensor],
    clip: torch.Tensor | None,
    scalars: Sequence[float | torch.Tensor],
    options: tuple[float, float, float, float, float, bool],
) -> None:
    """One group's LAMB update, in place (the step of `Lamb`), for `Lamb` and, compiled,
    for `CompiledLamb`. `scalars` are the learning rate, sqrt(1 - b2^t) and 1 - b1^t: Python
    numbers in eager mode, 0-d device tensors in the compiled graph, which must never see a
    changing Python number; `options` are b1, b2, b3 (1 - b1 with gradient averaging, else 1), eps,
    the weight decay and whether the trust ratio applies."""
    beta1, beta2, beta3, eps, weight_decay, trust = options
    lr, sqrt_correction2, correction1 = scalars
    if clip is not None:
        grads = torch._foreach_div(grads, clip)
    torch._foreach_mul_(exp_avgs, beta1)
    torch._foreach_add_(exp_avgs, grads, alpha=beta3)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denominators = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denominators, sqrt_correction2)
    torch._foreach_add_(denominators, eps)
    updates = torch._foreach_div(exp_avgs, denominators)
    torch._foreach_div_(updates, correction1)
    if weight_decay != 0:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    if trust:
        param_norms = torch.stack(torch._foreach_norm(params))
        update_norms = torch.stack(torch._foreach_norm(updates))
        trusted = (param_norms > 0) & (update_norms > 0)
        ratios = torch.where(trusted, lr * param_norms / update_norms, lr).neg()
        torch._foreach_mul_(updates, list(ratios.unbind()))
    else:
        torch._foreach_mul_(updates, -lr)
    torch._foreach_add_(params, updates)


def _lamb_step_math(
    groups: list[tuple[list[torch.Tensor], ...]],
    scalars: torch.Tensor,
    options: list[tuple[float, float, float, float, float, bool]],
    max_grad_norm: float,
) -> torch.Tensor:
    """The whole LAMB step over every group (what `CompiledLamb` compiles); returns the global
    gradient norm. `groups` holds (params, grads, exp_avgs, exp_avg_sqs) lists per group and
    `scalars` [G, 3] each group's lr, sqrt(1 - b2^t) and 1 - b1^t."""
    norms = torch._foreach_norm([g for group in groups for g in group[1]])
    global_norm = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))
    clip = (global_norm / max_grad_norm).clamp(min=1.0) if max_grad_norm > 0 else None
    for tensors, row, settings in zip(groups, scalars.unbind(), options, strict=True):
        _lamb_group_math(*tensors, clip, row.unbind(), settings)
    return global_norm


class CompiledLamb(Lamb):
    """`Lamb` with the whole step (global norm, clip, moments, bias correction, decay, trust
    ratios, update) compiled by `torch.compile` into one graph over every parameter, so inductor
    fuses the element-wise chain into a few passes over memory instead of one pass per
    operation: the same mathematics, state and state_dict, so either class loads the other's
    checkpoints. The first `step()` compiles (tens of seconds for BERT-large on a GPU); later
    steps reuse the graph while the set of parameters with gradients stays the same. The
    learning rate and bias corrections reach the graph as one small tensor copied without
    blocking, so no step waits for the device."""

    def __init__(self, params: Iterable, *args, backend: str | None = None, **kwargs) -> None:
        super().__init__(params, *args, **kwargs)
        self.backend = backend  # None: training.compile_backend() (inductor unless overridden)
        self._compiled = None

    def _step_function(self):
        if self._compiled is None:
            if self.backend is None:
                from training import compile_backend

                self.backend = compile_backend()
            self._compiled = torch.compile(
                _lamb_step_math, backend=self.backend, fullgraph=True, dynamic=False
            )
        return self._compiled

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups, options, values = [], [], []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("Lamb does not support sparse gradients")
            group["step"] += 1
            exp_avgs, exp_avg_sqs = self._moments(params)
            groups.append((params, [p.grad for p in params], exp_avgs, exp_avg_sqs))
            options.append(group_options(group))
            values.append(group_scalars(group))
        if not groups:
            return loss
        scalars = torch.tensor(values, dtype=torch.float32)
        device = groups[0][0][0].device
        if device.type == "cuda":  # pinned, so the copy does not wait for the device
            scalars = scalars.pin_memory()
        scalars = scalars.to(device, non_blocking=True)
        self.last_grad_norm = self._step_function()(
            groups, scalars, options, float(self.defaults["max_grad_norm"])
        )
        return loss


LAMB_IMPLS = ("auto", "torch", "compiled", "apex")


def lamb_impl(impl: str, cuda: bool, apex_available: bool) -> str:
    """The LAMB implementation `make_lamb` builds for `--optimizer_impl impl` ("torch",
    "compiled" or "apex"), for parameters on a CUDA device or not and with apex importable or not:
    "auto" is apex on CUDA when installed, else the multi-tensor "torch". One rule for building
    the optimizer and for reporting which one a run uses."""
    if impl not in LAMB_IMPLS:
        choices = ", ".join(LAMB_IMPLS)
        raise ValueError(f"LAMB implementation must be one of {choices}, got {impl!r}")
    if impl == "apex" and not apex_available:
        raise MissingDependency("--optimizer_impl apex needs NVIDIA apex installed")
    if impl == "apex" and not cuda:
        raise UsageError("--optimizer_impl apex: FusedLAMB needs a CUDA device")
    if impl == "auto":
        return "apex" if cuda and apex_available else "torch"
    return impl


def make_lamb(
    param_groups: list[dict], lr: float, impl: str = "auto", **kwargs
) -> torch.optim.Optimizer:
    """LAMB from `impl` (`lamb_impl`): "torch" (`Lamb`), "compiled" (`CompiledLamb`), "apex"
    (FusedLAMB, CUDA), or "auto": apex when installed and the parameters are on a GPU, else the
    multi-tensor `Lamb`. The compiled step is a fast path chosen explicitly
    (`--optimizer_impl compiled`) until its GPU speed is measured.

    Every choice keeps the same mathematics and state layout; the choice is logged once."""
    # the parameters' device, not torch.cuda.is_available(): a --no_cuda run on a GPU machine
    # with apex installed must not get a CUDA-only optimizer
    cuda = any(p.is_cuda for group in param_groups for p in group["params"])
    fused_lamb = None
    if impl in ("auto", "apex"):
        with contextlib.suppress(ImportError):  # optional: "auto" falls back to `Lamb`
            from apex.optimizers import FusedLAMB as fused_lamb
    chosen = lamb_impl(impl, cuda, fused_lamb is not None)
    if chosen == "apex":
        logger.info("optimizer: apex FusedLAMB")
        return fused_lamb(param_groups, lr=lr, **kwargs)
    if chosen == "compiled":
        logger.info("optimizer: LAMB (one torch.compile graph per step)")
        return CompiledLamb(param_groups, lr=lr, **kwargs)
    logger.info("optimizer: LAMB (torch multi-tensor)")
    return Lamb(param_groups, lr=lr, **kwargs)


def adamw_fused(device: torch.device) -> bool:
    """Whether fine-tuning's AdamW runs the fused kernel (CUDA) or the multi-tensor one."""
    return device.type == "cuda"


def make_adamw(param_groups: list[dict], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW for fine-tuning: fused kernel on CUDA, multi-tensor on CPU; eps 1e-6 as BertAdam."""
    fused = adamw_fused(device)
    return torch.optim.AdamW(
        param_groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=fused, foreach=not fused
    )
