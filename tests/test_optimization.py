"""optimization.py and schedulers.py against float64 re-derivations of NVIDIA's formulas."""

from __future__ import annotations

import io
import math
import sys
import types

import pytest
import torch
from torch import nn

from errors import MissingDependency, UsageError
from optimization import (
    NO_DECAY,
    CompiledLamb,
    Lamb,
    lamb_impl,
    load_lamb_state,
    make_lamb,
    nvidia_lamb_state_dict,
    parameter_groups,
)
from schedulers import WarmupScheduler, lr_factor
from tests.support import tiny_config


def reference_lamb(
    params,
    grads_per_step,
    lr,
    weight_decays,
    betas=(0.9, 0.999),
    eps=1e-6,
    max_grad_norm=1.0,
    lrs=None,
    use_nvlamb=None,
    trust_ratios=None,
):
    """NVLAMB in float64, element by element as the apex kernels describe it; `use_nvlamb` (one
    flag per tensor) applies the trust ratio to tensors without weight decay too; the
    ||p|| / ||update|| ratios used are appended to the list `trust_ratios` when one is given."""
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
            trusted = weight_decays[i] != 0 or (use_nvlamb is not None and use_nvlamb[i])
            if trusted and p_norm > 0 and u_norm > 0:
                ratio = step_lr * p_norm / u_norm
                if trust_ratios is not None:
                    trust_ratios.append(p_norm / u_norm)
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
        [
            {"params": [params[0], params[2], params[3]], "weight_decay": weight_decay},
            {"params": [params[1]], "weight_decay": 0.0},
        ],
        lr=0.01,
    )
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


def far_trust_ratio_case():
    """Tensors whose LAMB trust ratio ||p|| / ||update|| is far from 1, and the edge cases of
    the rule: (initial values, gradients of 6 steps, weight decays, use_nvlamb flags, groups).

    0: large weights with decay (the update is about 0.01 p: ratio near 100); 1: tiny weights
    (ratio near 1e-4); 2: zero weights (no ratio: a plain step of lr); 3: NVLAMB without decay
    and gradients near 1e-9, far below eps (tiny update: ratio near 1e3); 4: NVLAMB without
    decay and zero gradients (a zero update: no ratio, no NaN); 5: no decay, no NVLAMB."""
    generator = torch.Generator().manual_seed(7)
    shapes = [(6, 4), (5, 3), (4,), (3, 3), (2,), (3,)]
    initial = [torch.randn(s, generator=generator) for s in shapes]
    initial[0] *= 1000.0
    initial[1] *= 1e-4
    initial[2].zero_()
    steps = []
    for k in range(6):
        scale = 50.0 if k % 2 else 0.01  # clipping active and inactive
        grads = [torch.randn(s, generator=generator) * scale for s in shapes]
        grads[3] = torch.randn(shapes[3], generator=generator) * 1e-9
        grads[4] = torch.zeros(shapes[4])
        steps.append(grads)
    decays = [0.01, 0.01, 0.01, 0.0, 0.0, 0.0]
    nvlamb = [False, False, False, True, True, False]

    def groups(params):
        return [
            {"params": params[0:3], "weight_decay": 0.01},
            {"params": params[3:5], "weight_decay": 0.0, "use_nvlamb": True},
            {"params": params[5:6], "weight_decay": 0.0},
        ]

    return initial, steps, decays, nvlamb, groups


@pytest.mark.parametrize(
    "impl",
    ["torch", pytest.param("compiled", marks=pytest.mark.slow)],  # compiling: 7-25 s
)
def test_lamb_far_from_a_trust_ratio_of_one(impl):
    """Every CPU implementation against the float64 derivation where the trust ratio is far
    from 1 (a clamp of the ratio, at 10 or anywhere within [1e-3, 1e2], changes the result),
    and where it is not applied (zero weights, a zero update)."""
    if impl == "compiled":
        torch._dynamo.reset()
    initial, steps, decays, nvlamb, groups = far_trust_ratio_case()
    params = [nn.Parameter(p.clone()) for p in initial]
    optimizer = make_lamb(groups(params), lr=0.01, impl=impl)
    for grads in steps:
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    ratios: list[float] = []
    expected = reference_lamb(initial, steps, 0.01, decays, use_nvlamb=nvlamb, trust_ratios=ratios)
    assert max(ratios) > 50 and min(ratios) < 1e-3, (min(ratios), max(ratios))
    for i, (p, e) in enumerate(zip(params, expected, strict=True)):
        atol = 1e-6 * float(e.abs().max())  # relative to the tensor's own scale
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=atol, msg=str(i))
    assert torch.equal(params[4].detach(), initial[4])  # a zero update moves nothing
    assert not torch.equal(params[2].detach(), initial[2])  # zero weights take a plain step


def reference_adamw(initial, grads_per_step, lr, weight_decays, betas, eps):
    """torch's AdamW in float64: decoupled decay p *= 1 - lr wd, then the Adam step with both
    bias corrections and eps added to the bias-corrected sqrt(v)."""
    params = [p.double().clone() for p in initial]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    beta1, beta2 = betas
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            g = g.double()
            params[i] = params[i] * (1 - lr * weight_decays[i])
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            denominator = (v[i] / (1 - beta2**t)).sqrt() + eps
            params[i] = params[i] - lr * (m[i] / (1 - beta1**t)) / denominator
    return params


class _TinyHead(nn.Module):
    """Parameters named as BERT's: a dense layer, a LayerNorm and a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(6, 5)
        self.LayerNorm = nn.LayerNorm(5)
        self.classifier = nn.Linear(5, 3)


def adamw_gradients(kind: str, shapes, steps: int = 5) -> list[list[torch.Tensor]]:
    """Gradients of a given scale: "tiny" (1e-8, below eps), "huge" (1e4), or "mixed" (each
    element's magnitude anywhere from 1e-8 to 1e4, signs flipping between steps)."""
    generator = torch.Generator().manual_seed(11)
    result = []
    for _ in range(steps):
        grads = []
        for shape in shapes:
            g = torch.randn(shape, generator=generator)
            if kind == "tiny":
                g = g * 1e-8
            elif kind == "huge":
                g = g * 1e4
            else:
                g = g.sign() * 10 ** (torch.rand(shape, generator=generator) * 12 - 8)
            grads.append(g)
        result.append(grads)
    return result


@pytest.mark.parametrize("kind", ["tiny", "huge", "mixed"])
def test_make_adamw_matches_float64_adamw(kind):
    """Fine-tuning's optimizer as `finetuning.train` builds it (the no-decay rule with decay
    0.01, then `make_adamw`) against a float64 AdamW: decoupled decay (Adam with L2 in the
    gradient fails), both bias corrections, eps 1e-6 (the tiny gradients are below it)."""
    from optimization import make_adamw

    torch.manual_seed(3)
    model = _TinyHead()
    names = [name for name, _ in model.named_parameters()]
    initial = [p.detach().clone() for p in model.parameters()]
    # the no-decay rule restated: matrices decay; biases and LayerNorm's vectors do not
    decays = [0.01 if p.dim() >= 2 else 0.0 for p in initial]
    steps = adamw_gradients(kind, [p.shape for p in initial])
    optimizer = make_adamw(parameter_groups(model, 0.01), lr=1e-2, device=torch.device("cpu"))
    for grads in steps:
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
    expected = reference_adamw(initial, steps, 1e-2, decays, (0.9, 0.999), 1e-6)
    for name, p, e in zip(names, model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-6, atol=1e-7, msg=name)


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
    decays = [
        0.01 if not any(n in name for n in NO_DECAY) else 0.0
        for name, _ in model.named_parameters()
    ]
    # parameter_groups reorders (decayed first): compare by name
    expected = reference_lamb(initial, grads_per_step, None, decays, lrs=lrs)
    for p, e in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach().double(), e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tensors", [False, True])
def test_nvidia_layout_in_either_form_loads_back_into_lamb(tensors):
    """`lr` and `step` as 21.11's numbers or HEAD's tensors: through a file, our loader gives
    back the numbers and moments the optimizer had."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.LayerNorm(4), nn.Linear(4, 3))
    optimizer = Lamb(parameter_groups(model), lr=0.1)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    for group in optimizer.param_groups:
        group["lr"] = 0.0375  # as a schedule leaves it
    state = nvidia_lamb_state_dict(optimizer, model, 1, tensors=tensors)
    for group in state["param_groups"]:
        if tensors:
            assert group["lr"].dtype == torch.float32 and group["lr"].shape == ()
            assert group["step"].dtype == torch.int32 and group["step"].tolist() == [1]
        else:
            assert type(group["lr"]) is float and type(group["step"]) is int
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = Lamb(parameter_groups(model), lr=0.1)
    load_lamb_state(fresh, torch.load(buffer, weights_only=True))
    lr = float(torch.tensor(0.0375)) if tensors else 0.0375  # HEAD's is float32
    for group in fresh.param_groups:
        assert type(group["step"]) is int and group["step"] == 1
        assert type(group["lr"]) is float and group["lr"] == lr
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(fresh.state[p][key], optimizer.state[p][key])


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
    assert make_lamb(parameter_groups(model), lr=1e-3, impl="compiled").__class__ is CompiledLamb
    if not torch.cuda.is_available():  # auto: the multi-tensor step on CPU
        assert make_lamb(parameter_groups(model), lr=1e-3).__class__ is Lamb
    with pytest.raises(ValueError, match="auto, torch, compiled, apex"):
        make_lamb(parameter_groups(model), lr=1e-3, impl="fused")


def test_lamb_impl_resolves_auto_and_refuses_what_cannot_run():
    assert lamb_impl("auto", cuda=True, apex_available=True) == "apex"
    assert lamb_impl("auto", cuda=False, apex_available=True) == "torch"
    assert lamb_impl("auto", cuda=True, apex_available=False) == "torch"
    assert lamb_impl("compiled", cuda=True, apex_available=True) == "compiled"
    assert lamb_impl("torch", cuda=True, apex_available=True) == "torch"
    assert lamb_impl("apex", cuda=True, apex_available=True) == "apex"
    with pytest.raises(MissingDependency, match="needs NVIDIA apex installed"):
        lamb_impl("apex", cuda=True, apex_available=False)
    with pytest.raises(UsageError, match="FusedLAMB needs a CUDA device"):
        lamb_impl("apex", cuda=False, apex_available=True)


def test_auto_lamb_on_cpu_parameters_is_not_apex_even_on_a_gpu_machine(monkeypatch):
    """apex installed and a GPU present, but the model on the CPU (--no_cuda): FusedLAMB, which
    runs only on CUDA tensors, must not be chosen."""
    fake_apex = types.ModuleType("apex")
    fake_apex.optimizers = types.ModuleType("apex.optimizers")

    class FusedLAMB(Lamb):
        pass

    fake_apex.optimizers.FusedLAMB = FusedLAMB
    monkeypatch.setitem(sys.modules, "apex", fake_apex)
    monkeypatch.setitem(sys.modules, "apex.optimizers", fake_apex.optimizers)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    params = [nn.Parameter(torch.ones(3))]
    assert type(make_lamb([{"params": params}], lr=1e-3)) is Lamb
    with pytest.raises(UsageError, match="needs a CUDA device"):
        make_lamb([{"params": params}], lr=1e-3, impl="apex")


def lamb_pair(dtype: torch.dtype, initial: list[torch.Tensor]):
    """The same parameters under `Lamb` and `CompiledLamb` (inductor, the default backend): a
    decayed group with a zero tensor, and an undecayed group (the plain Adam-style step)."""
    pairs = []
    for cls in (Lamb, CompiledLamb):
        params = [nn.Parameter(p.clone().to(dtype)) for p in initial]
        groups = [
            {"params": [params[0], params[2], params[3]], "weight_decay": 0.01},
            {"params": [params[1]], "weight_decay": 0.0},
        ]
        pairs.append((params, cls(groups, lr=0.01)))
    return pairs


def assert_same_lamb_state(a, b, atol: float, rtol: float = 0.0) -> None:
    (params_a, opt_a), (params_b, opt_b) = a, b
    for x, y in zip(params_a, params_b, strict=True):
        torch.testing.assert_close(y.detach(), x.detach(), rtol=rtol, atol=atol)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(
                opt_b.state[y][key], opt_a.state[x][key], rtol=rtol, atol=atol, msg=key
            )
    assert [g["step"] for g in opt_a.param_groups] == [g["step"] for g in opt_b.param_groups]
    torch.testing.assert_close(opt_b.last_grad_norm, opt_a.last_grad_norm, rtol=1e-6, atol=0)


def lamb_steps(count: int, shapes, seed: int = 0) -> list[list[torch.Tensor]]:
    """Gradients for `count` steps, alternating between clipped (norm far above 1) and unclipped."""
    generator = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(s, generator=generator) * (50.0 if k % 2 else 0.01) for s in shapes]
        for k in range(count)
    ]


LAMB_SHAPES = [(7, 5), (5,), (3, 4, 2), (1,)]


def lamb_initial() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    initial = [torch.randn(s, generator=generator) for s in LAMB_SHAPES]
    initial[3].zero_()  # a zero tensor: no trust ratio (plain step)
    return initial


def test_compiled_lamb_equals_lamb_with_checkpoints_interchanged():
    """Decay on and off (two groups), clipping active and inactive (alternating steps), a zero
    tensor, a save mid-way restored into the other implementation, then more steps."""
    torch._dynamo.reset()
    compiled_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    pair = lamb_pair(torch.float32, lamb_initial())
    steps = lamb_steps(6, LAMB_SHAPES)
    for k, grads in enumerate(steps):
        for params, optimizer in pair:
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            optimizer.step()
        assert_same_lamb_state(*pair, atol=1e-6)
        if k == 2:  # each implementation resumes from the other's state_dict
            (pa, oa), (pb, ob) = pair
            saved_a, saved_b = oa.state_dict(), ob.state_dict()
            assert saved_a["state"].keys() == saved_b["state"].keys()
            assert all(set(v) == {"exp_avg", "exp_avg_sq"} for v in saved_b["state"].values())
            oa, ob = CompiledLamb(oa.param_groups, lr=0.01), Lamb(ob.param_groups, lr=0.01)
            oa.load_state_dict(saved_b)
            ob.load_state_dict(saved_a)
            pair = [(pa, oa), (pb, ob)]
    assert pair[0][1].param_groups[0]["step"] == 6
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled_before + 1


def test_compiled_lamb_skips_with_the_grad_scaler_like_lamb():
    pair = lamb_pair(torch.float32, lamb_initial())
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**8) for _ in pair]
    steps = lamb_steps(3, LAMB_SHAPES, seed=3)
    steps[1][2][0, 0, 0] = float("inf")  # an overflowed step: skipped, the scale halves
    for grads in steps:
        for (params, optimizer), scaler in zip(pair, scalers, strict=True):
            scale = scaler.scale(torch.ones(()))  # what scaling a loss would use
            for p, g in zip(params, grads, strict=True):
                p.grad = g * scale
            scaler.step(optimizer)
            scaler.update()
        assert_same_lamb_state(*pair, atol=1e-6)
    assert [s.get_scale() for s in scalers] == [2.0**7] * 2
    assert pair[1][1].param_groups[0]["step"] == 2


def test_compiled_lamb_on_bf16_parameters_within_bf16_rounding():
    """bf16 parameters and moments: `Lamb` rounds to bf16 after every operation, the compiled
    step only when it stores, so 1e-6 is below bf16's resolution (and the moment update
    cancels near zero, where relative errors mean nothing). After four steps each tensor agrees
    to 2^-6 of its largest value (two bf16 rounding steps), and the compiled step is at least as
    close to a float64 derivation."""
    initial = lamb_initial()
    pair = lamb_pair(torch.bfloat16, initial)
    steps = lamb_steps(4, LAMB_SHAPES, seed=5)
    for grads in steps:
        for params, optimizer in pair:
            for p, g in zip(params, grads, strict=True):
                p.grad = g.to(torch.bfloat16)
            optimizer.step()
    (params_a, opt_a), (params_b, opt_b) = pair
    for x, y in zip(params_a, params_b, strict=True):
        tensors = [(x, y)] + [
            (opt_a.state[x][k], opt_b.state[y][k]) for k in ("exp_avg", "exp_avg_sq")
        ]
        for a, b in tensors:
            scale = float(a.detach().double().abs().max())
            assert float((a.detach().double() - b.detach().double()).abs().max()) <= scale * 2**-6
    rounded = [[g.to(torch.bfloat16) for g in grads] for grads in steps]
    expected = reference_lamb(
        [p.to(torch.bfloat16) for p in initial], rounded, 0.01, [0.01, 0.0, 0.01, 0.01]
    )
    errors = [
        max(float((p.double() - e).abs().max()) for p, e in zip(params, expected, strict=True))
        for params, _ in pair
    ]
    assert errors[1] <= errors[0] * 1.01, errors  # measured: 0.0113 compiled, 0.0123 eager


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
