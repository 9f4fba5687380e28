"""optimization.py and schedulers.py against float64 re-derivations of NVIDIA's formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from optimization import NO_DECAY, Lamb, make_lamb, parameter_groups
from schedulers import WarmupScheduler, lr_factor
from tests.conftest import tiny_config


def reference_lamb(params, grads_per_step, lr, weight_decays, betas=(0.9, 0.999), eps=1e-6,
                   max_grad_norm=1.0, lrs=None):  # fmt: skip
    """NVLAMB in float64, element by element as the apex kernels describe it."""
    params = [p.double().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    beta1, beta2 = betas
    for t, grads in enumerate(grads_per_step, start=1):
        step_lr = lrs[t - 1] if lrs else lr
        grads = [g.double() for g in grads]
        global_norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        clip = global_norm / max_grad_norm if global_norm > max_grad_norm else 1.0
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            g = g / clip
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / (1 - beta1**t)
            v_hat = v[i] / (1 - beta2**t)
            update = m_hat / (v_hat.sqrt() + eps) + weight_decays[i] * p
            p_norm, u_norm = float(p.norm()), float(update.norm())
            if weight_decays[i] != 0 and p_norm > 0 and u_norm > 0:
                ratio = step_lr * p_norm / u_norm
            else:
                ratio = step_lr
            params[i] = p - ratio * update
    return params


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("grad_scale", [0.01, 50.0])  # clipping inactive / active
def test_lamb_matches_float64_derivation(weight_decay, grad_scale):
    generator = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    initial = [torch.randn(s, generator=generator) for s in shapes]
    initial[3].zero_()  # a zero tensor: no trust ratio (plain step)
    steps = [[torch.randn(s, generator=generator) * grad_scale for s in shapes] for _ in range(6)]
    params = [nn.Parameter(p.clone()) for p in initial]
    decays = [weight_decay, 0.0, weight_decay, weight_decay]
    optimizer = Lamb(
        [{"params": [params[0], params[2], params[3]], "weight_decay": weight_decay},
         {"params": [params[1]], "weight_decay": 0.0}],
        lr=0.01,
    )  # fmt: skip
    for grads in steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    expected = reference_lamb(initial, steps, 0.01, decays)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-6)
    norm = math.sqrt(sum(float((g * g).sum()) for g in steps[-1]))
    assert optimizer.last_grad_norm.item() == pytest.approx(norm, rel=1e-5)
    assert all(group["step"] == 6 for group in optimizer.param_groups)


def test_lamb_with_a_schedule_and_state_round_trip():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4), nn.Linear(4, 3))
    initial = [p.detach().clone() for p in model.parameters()]
    optimizer = Lamb(parameter_groups(model), lr=0.1)
    scheduler = WarmupScheduler(optimizer, 0.1, total_steps=10, warmup=0.3, schedule="poly")
    lrs, grads_per_step = [], []
    for step in range(4):
        grads = [torch.randn_like(p) for p in model.parameters()]
        grads_per_step.append(grads)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        if step == 1:  # save and restore mid-way: must not change anything
            state = (optimizer.state_dict(), scheduler.state_dict())
            optimizer = Lamb(parameter_groups(model), lr=0.1)
            optimizer.load_state_dict(state[0])
            scheduler = WarmupScheduler(optimizer, 0.1, 10, 0.3)
            scheduler.load_state_dict(state[1])
    assert lrs == pytest.approx(
        [0.1 * k / 10 / 0.3 for k in (1, 2)] + [0.1 * 0.7**0.5, 0.1 * 0.6**0.5]
    )
    decays = [0.01 if not any(n in name for n in NO_DECAY) else 0.0
              for name, _ in model.named_parameters()]  # fmt: skip
    # parameter_groups reorders (decayed first): compare by name
    expected = reference_lamb(initial, grads_per_step, None, decays, lrs=lrs)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-6)


def test_no_decay_rule_and_groups():
    from modeling import BertForPreTraining

    model = BertForPreTraining(tiny_config())
    decay, no_decay = parameter_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" in names[id(p)] or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert "cls.predictions.bias" in {names[id(p)] for p in no_decay["params"]}
    assert all(p.dim() == 2 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    qa = parameter_groups(model, exclude=("pooler",))
    assert sum(len(g["params"]) for g in qa) == len(list(model.parameters())) - 2
    assert make_lamb(parameter_groups(model), lr=1e-3, impl="torch").__class__ is Lamb
    with pytest.raises(ValueError, match="auto, torch or apex"):
        make_lamb(parameter_groups(model), lr=1e-3, impl="fused")


def reference_factor(schedule, k, total, w):
    p = k / total
    if p < w:
        return p / w
    return {
        "poly": max(1 - p, 0) ** 0.5,
        "linear": max((p - 1) / (w - 1), 0) if w < 1 else 0.0,
        "constant": 1.0,
    }[schedule]


@pytest.mark.parametrize("schedule", ["poly", "linear", "constant"])
@pytest.mark.parametrize("warmup", [0.0, 0.2843, 0.1, 1.0])
def test_schedules_exact_and_safe_past_the_end(schedule, warmup):
    total = 7038
    for k in (1, 2, 500, 2000, 2001, 7037, 7038, 7039, 9000):
        value = lr_factor(schedule, k, total, warmup)
        assert isinstance(value, float) and math.isfinite(value)
        assert value == pytest.approx(reference_factor(schedule, k, total, warmup), abs=1e-12)
    assert lr_factor(schedule, 9000, total, warmup) == (1.0 if schedule == "constant" else 0.0)


def test_phase1_worked_example():
    # NVIDIA's phase 1: warm-up 0.2843 of 7038 steps is about 2000 steps, then square-root decay.
    assert lr_factor("poly", 2000, 7038, 0.2843) == pytest.approx(2000 / 7038 / 0.2843)
    assert lr_factor("poly", 2001, 7038, 0.2843) == pytest.approx((1 - 2001 / 7038) ** 0.5)
    with pytest.raises(ValueError, match="warmup"):
        WarmupScheduler(Lamb([nn.Parameter(torch.ones(1))]), 1.0, 10, warmup=1.5)


def test_precision_resolution():
    from training import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision(False, False, None, cpu) == ("fp32", True)  # NVIDIA: TF32 allowed
    assert resolve_precision(False, False, "auto", cpu) == ("fp32", True)  # TF32 where it exists
    assert resolve_precision(False, False, "fp32", cpu) == ("fp32", False)
    assert resolve_precision(False, False, "tf32", cpu) == ("fp32", True)
    assert resolve_precision(True, False, "auto", cpu) == ("fp16", True)
    assert resolve_precision(False, True, "bf16", cpu) == ("bf16", True)
    with pytest.raises(ValueError, match="conflicting precision flags: fp16, bf16"):
        resolve_precision(True, True)
    with pytest.raises(ValueError, match="conflicting"):
        resolve_precision(False, True, "fp32")
