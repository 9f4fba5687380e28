"""Our logs and checkpoints read by NVIDIA's code, restated here from NVIDIA's sources.

NVIDIA's side is written in this file: a parser of dllogger logs (`DLLL {json}` lines, stdout
`DLL ...` lines), the resume code of `run_pretraining.py` at 21.11 and at HEAD, their LR
schedulers, and stand-ins for apex's FusedLAMB (21.11) and lamb_amp_opt's FusedLAMBAMP (HEAD)
that hold those optimizers' defaults and read their group keys in step() as the originals do.
Nothing here reads our files through our own logger or checkpoint loader.
"""

from __future__ import annotations

import collections
import copy
import itertools
import json
import math
import operator
import os
import random
import re
import shutil
import subprocess
import sys
import types

import pytest
import torch
from torch import nn

import pretraining_checkpoints
from tests.support import (
    REPO_ROOT,
    SAMPLE_MRPC,
    TINY_CONFIG,
    UNCASED_VOCAB,
    mrpc_dev_scores,
    pretrain_in_process,
    write_random_shards,
)

CONFIG = json.loads(TINY_CONFIG.read_text())
NO_DECAY = ("bias", "gamma", "beta", "LayerNorm")
LEARNING_RATE, MAX_STEPS, WARMUP, PHASE1_END = 2e-2, 100, 0.5, 3
ENDED_STEPS = 1  # the `ended` run's whole schedule


# ------------------------------------------------------------------------ NVIDIA's model side


def nvidia_parameter_shapes(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """NVIDIA BertForPreTraining's parameters in registration order (named_parameters order).

    The vocabulary is padded to a multiple of 8; the MLM decoder weight is the word embedding
    (tied), so named_parameters lists it once; `cls.predictions.bias` belongs to the head module
    itself and comes before the head's transform."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    vocab = -(-config["vocab_size"] // 8) * 8

    def linear(name: str, out: int, inp: int) -> list:
        return [(f"{name}.weight", (out, inp)), (f"{name}.bias", (out,))]

    def norm(name: str) -> list:
        return [(f"{name}.LayerNorm.weight", (hidden,)), (f"{name}.LayerNorm.bias", (hidden,))]

    shapes = [
        ("bert.embeddings.word_embeddings.weight", (vocab, hidden)),
        ("bert.embeddings.position_embeddings.weight", (config["max_position_embeddings"], hidden)),
        ("bert.embeddings.token_type_embeddings.weight", (config["type_vocab_size"], hidden)),
        *norm("bert.embeddings"),
    ]
    for i in range(config["num_hidden_layers"]):
        layer = f"bert.encoder.layer.{i}"
        for part in ("query", "key", "value"):
            shapes += linear(f"{layer}.attention.self.{part}", hidden, hidden)
        shapes += linear(f"{layer}.attention.output.dense", hidden, hidden)
        shapes += norm(f"{layer}.attention.output")
        shapes += linear(f"{layer}.intermediate.dense_act", inner, hidden)
        shapes += linear(f"{layer}.output.dense", hidden, inner)
        shapes += norm(f"{layer}.output")
    shapes += linear("bert.pooler.dense_act", hidden, hidden)
    shapes += [("cls.predictions.bias", (vocab,))]
    shapes += linear("cls.predictions.transform.dense_act", hidden, hidden)
    shapes += norm("cls.predictions.transform")
    shapes += linear("cls.seq_relationship", 2, hidden)
    return shapes


class NvidiaModel(nn.Module):
    """Parameters under NVIDIA's names, shapes and order, in nested modules as NVIDIA's are."""

    def __init__(self, config: dict) -> None:
        super().__init__()
        for name, shape in nvidia_parameter_shapes(config):
            *path, leaf = name.split(".")
            module = self
            for part in path:
                if part not in module._modules:
                    module.add_module(part, nn.Module())
                module = module._modules[part]
            module.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))


def nvidia_groups(model: nn.Module) -> list[dict]:
    """run_pretraining.py's optimizer_grouped_parameters (both versions)."""
    named = list(model.named_parameters())
    return [
        {
            "params": [p for n, p in named if not any(nd in n for nd in NO_DECAY)],
            "weight_decay": 0.01,
        },
        {"params": [p for n, p in named if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]


# ------------------------------------------------------------------------ NVIDIA's optimizers


def lamb_kernel(
    params,
    grads,
    moments,
    lr,
    beta1,
    beta2,
    eps,
    step,
    bias_correction,
    weight_decay,
    grad_averaging,
    global_norm,
    max_norm,
    use_nvlamb,
):
    """The fused LAMB kernels' arithmetic (adam_w mode), per tensor, in float64."""
    clip = global_norm / max_norm if global_norm > max_norm else 1.0
    beta3 = 1 - beta1 if grad_averaging else 1.0
    c1 = 1 - beta1**step if bias_correction else 1.0
    c2 = 1 - beta2**step if bias_correction else 1.0
    for p, g, (m, v) in zip(params, grads, moments, strict=True):
        g = g / clip
        m.mul_(beta1).add_(g, alpha=beta3)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        update = (m / c1) / ((v / c2).sqrt() + eps) + weight_decay * p
        ratio = lr
        if (use_nvlamb or weight_decay != 0) and p.norm() > 0 and update.norm() > 0:
            ratio = lr * float(p.norm() / update.norm())
        p.sub_(ratio * update)


def global_grad_norm(groups: list[dict]) -> float:
    grads = [p.grad for group in groups for p in group["params"] if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


class FusedLAMB(torch.optim.Optimizer):
    """apex.optimizers.FusedLAMB (21.11): its defaults, and the group keys step() reads. The
    kernel takes `const float lr` and `const int step`, converted as pybind11 converts them."""

    def __init__(
        self,
        params,
        lr=1e-3,
        bias_correction=True,
        betas=(0.9, 0.999),
        eps=1e-6,
        weight_decay=0.01,
        amsgrad=False,
        adam_w_mode=True,
        grad_averaging=True,
        set_grad_none=True,
        max_grad_norm=1.0,
        use_nvlamb=False,
    ):
        defaults = dict(
            lr=lr,
            bias_correction=bias_correction,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            grad_averaging=grad_averaging,
            max_grad_norm=max_grad_norm,
        )
        super().__init__(params, defaults)
        self.adam_w_mode = 1 if adam_w_mode else 0
        self.use_nvlamb = use_nvlamb

    @torch.no_grad()
    def step(self, closure=None):
        global_norm = global_grad_norm(self.param_groups)
        max_grad_norm = self.defaults["max_grad_norm"]
        for group in self.param_groups:
            bias_correction = 1 if group["bias_correction"] else 0
            beta1, beta2 = group["betas"]
            grad_averaging = 1 if group["grad_averaging"] else 0
            if "step" in group:
                group["step"] += 1
            else:
                group["step"] = 1
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if len(self.state[p]) == 0:
                    self.state[p]["exp_avg"] = torch.zeros_like(p)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
            moments = [(self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"]) for p in params]
            lamb_kernel(
                params,
                [p.grad for p in params],
                moments,
                float(group["lr"]),
                beta1,
                beta2,
                float(group["eps"]),
                operator.index(group["step"]),
                bias_correction,
                float(group["weight_decay"]),
                grad_averaging,
                global_norm,
                max_grad_norm,
                self.use_nvlamb,
            )


class FusedLAMBAMP(torch.optim.Optimizer):
    """lamb_amp_opt's FusedLAMBAMP (HEAD): `lr` and `step` are device tensors in the defaults;
    load_state_dict replaces the groups and casts nothing; the kernel reads `lr` and `step`
    through data_ptr<float>() and data_ptr<int>(), so they must be float32 and int32 tensors."""

    def __init__(
        self,
        params,
        lr=1e-3,
        step=0,
        bias_correction=True,
        betas=(0.9, 0.999),
        eps=1e-6,
        weight_decay=0.01,
        amsgrad=False,
        adam_w_mode=True,
        grad_averaging=True,
        set_grad_none=True,
        max_grad_norm=1.0,
        use_nvlamb=False,
    ):
        defaults = dict(
            lr=torch.tensor(lr, dtype=torch.float32),
            step=torch.tensor([step], dtype=torch.int),
            bias_correction=bias_correction,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            grad_averaging=grad_averaging,
            max_grad_norm=max_grad_norm,
        )
        super().__init__(params, defaults)
        self._dummy_overflow_buf = torch.tensor([0], dtype=torch.int)
        self.param_groups_fp32 = []
        self.adam_w_mode = 1 if adam_w_mode else 0
        self.use_nvlamb = use_nvlamb

    def add_param_group(self, param_group):
        for name, default in self.defaults.items():  # a copy of the tensor defaults per group
            if isinstance(default, torch.Tensor):
                param_group.setdefault(name, copy.deepcopy(default))
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict):
        state_dict = copy.deepcopy(state_dict)
        groups, saved_groups = self.param_groups, state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(
            len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups, strict=True)
        ):
            raise ValueError("loaded state dict contains a parameter group that doesn't match")
        saved_ids = itertools.chain.from_iterable(g["params"] for g in saved_groups)
        params = itertools.chain.from_iterable(g["params"] for g in groups)
        id_map = dict(zip(saved_ids, params, strict=True))
        state = collections.defaultdict(dict)
        for key, value in state_dict["state"].items():
            state[id_map.get(key, key)] = value
        param_groups = [
            {**saved, "params": g["params"]} for g, saved in zip(groups, saved_groups, strict=True)
        ]
        self.__setstate__({"state": state, "param_groups": param_groups})

    def setup_fp32_params(self):
        for group in self.param_groups:
            self.param_groups_fp32.append(
                {
                    "params": [
                        p.clone().detach().float() if p.dtype == torch.half else None
                        for p in group["params"]
                    ]
                }
            )

    @torch.no_grad()
    def step(self, closure=None, grad_scaler=None):
        found_inf = torch.zeros((1,))
        self._dummy_overflow_buf.copy_(found_inf)
        global_norm = global_grad_norm(self.param_groups)
        for group in self.param_groups:
            bias_correction = 1 if group["bias_correction"] else 0
            beta1, beta2 = group["betas"]
            grad_averaging = 1 if group["grad_averaging"] else 0
            if "step" in group:
                group["step"] += (self._dummy_overflow_buf != 1).int()
            else:
                group["step"] = (self._dummy_overflow_buf != 1).int()
            lr, step = group["lr"], group["step"]
            assert lr.dtype == torch.float32 and step.dtype == torch.int32  # data_ptr<float/int>
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if len(self.state[p]) == 0:
                    self.state[p]["exp_avg"] = torch.zeros_like(p, dtype=torch.float)
                    self.state[p]["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float)
            moments = [(self.state[p]["exp_avg"], self.state[p]["exp_avg_sq"]) for p in params]
            lamb_kernel(
                params,
                [p.grad for p in params],
                moments,
                float(lr.reshape(-1)[0]),
                beta1,
                beta2,
                group["eps"],
                int(step.reshape(-1)[0]),
                bias_correction,
                group["weight_decay"],
                grad_averaging,
                global_norm,
                self.defaults["max_grad_norm"],
                self.use_nvlamb,
            )


class PolyWarmUp2111:
    """21.11 schedulers.PolyWarmUpScheduler: the LR of step k from the optimizer's own step."""

    def __init__(self, optimizer, warmup, total_steps, degree=0.5):
        self.optimizer, self.warmup, self.total_steps, self.degree = (
            optimizer,
            warmup,
            total_steps,
            degree,
        )
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

    def step(self):
        group = self.optimizer.param_groups[0]
        last_epoch = group["step"] + 1 if "step" in group else 1
        progress = last_epoch / self.total_steps
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            if progress < self.warmup:
                group["lr"] = base_lr * progress / self.warmup
            else:
                group["lr"] = base_lr * ((1.0 - progress) ** self.degree)


class PolyWarmUpHead:
    """HEAD schedulers.PolyWarmUpScheduler: the same schedule on tensors, with torch.where."""

    def __init__(self, optimizer, warmup, total_steps, degree=0.5, base_lr=1.0):
        self.optimizer = optimizer
        self.warmup, self.total_steps = torch.tensor(warmup), torch.tensor(total_steps)
        self.degree, self.base_lr = torch.tensor(degree), torch.tensor(base_lr)

    def step(self):
        group = self.optimizer.param_groups[0]
        last_epoch = group["step"] + 1 if "step" in group else torch.tensor(1.0)
        progress = last_epoch / self.total_steps
        lr = torch.where(
            progress < self.warmup,
            self.base_lr * progress / self.warmup,
            self.base_lr * ((1.0 - progress) ** self.degree),
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr


def nvidia_lr(step: int) -> float:
    progress = step / MAX_STEPS
    if progress < WARMUP:
        return LEARNING_RATE * progress / WARMUP
    return LEARNING_RATE * (1 - progress) ** 0.5


# ------------------------------------------------------------------------ NVIDIA's resume code


def nvidia_args(**changes) -> types.SimpleNamespace:
    values = dict(
        resume_from_checkpoint=True,
        resume_step=-1,
        init_checkpoint=None,
        phase2=False,
        resume_phase2=False,
        phase1_end_step=PHASE1_END,
        fp16=False,
        allreduce_post_accumulation_fp16=False,
        learning_rate=LEARNING_RATE,
        max_steps=MAX_STEPS,
        warmup_proportion=WARMUP,
        init_loss_scale=2**20,
        seed=42,
    )
    return types.SimpleNamespace(**(values | changes))


def nvidia_checkpoint(output_dir, args) -> tuple[dict, int]:
    """Steps 1-4 of both versions: which file, global_step, the model loaded non-strictly."""
    if args.resume_step == -1 and not args.init_checkpoint:
        names = [f for f in os.listdir(output_dir) if f.endswith(".pt")]
        args.resume_step = max(int(x.split(".pt")[0].split("_")[1].strip()) for x in names)
    global_step = args.resume_step if not args.init_checkpoint else 0
    path = args.init_checkpoint or os.path.join(output_dir, f"ckpt_{global_step}.pt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects
    if args.phase2 and not args.init_checkpoint:
        global_step -= args.phase1_end_step
    return checkpoint, global_step


def resume_2111(output_dir, args, input_dir, world_size=1, rank=0) -> types.SimpleNamespace:
    """21.11 prepare_model_and_optimizer() and the first epoch of main() when resuming."""
    checkpoint, global_step = nvidia_checkpoint(output_dir, args)
    model = NvidiaModel(CONFIG)
    loaded = model.load_state_dict(checkpoint["model"], strict=False)
    optimizer = FusedLAMB(nvidia_groups(model), lr=args.learning_rate)
    scheduler = PolyWarmUp2111(optimizer, args.warmup_proportion, args.max_steps)
    if args.phase2 or args.init_checkpoint:
        for key in list(checkpoint["optimizer"]["state"].keys()):
            checkpoint["optimizer"]["state"][key]["step"] = global_step
        for group in checkpoint["optimizer"]["param_groups"]:
            group["step"] = global_step
            group["t_total"] = args.max_steps
            group["warmup"] = args.warmup_proportion
            group["lr"] = args.learning_rate
    optimizer.load_state_dict(checkpoint["optimizer"])
    masters = None
    if args.fp16:  # amp O2: fp32 masters in the groups' order take the saved values
        masters = [p.detach().clone().float() for g in optimizer.param_groups for p in g["params"]]
        for param, saved in zip(masters, checkpoint["master params"], strict=True):
            param.data.copy_(saved.data)
    epoch = 0
    if (args.phase2 and global_step < 1) or args.init_checkpoint:
        paths = (os.path.join(input_dir, f) for f in os.listdir(input_dir) if "training" in f)
        files = sorted(path for path in paths if os.path.isfile(path))
        random.Random(args.seed + epoch).shuffle(files)
        f_start_id, restored = 0, None
    else:
        f_start_id = checkpoint["files"][0]
        files = checkpoint["files"][1:]
        epoch = checkpoint.get("epoch", 0)
        restored = checkpoint.get("data_loader", None)
    data_file = files[(f_start_id * world_size + rank) % len(files)]
    return types.SimpleNamespace(
        checkpoint=checkpoint,
        global_step=global_step,
        model=model,
        loaded=loaded,
        optimizer=optimizer,
        scheduler=scheduler,
        masters=masters,
        files=files,
        f_start_id=f_start_id,
        data_file=data_file,
        epoch=epoch,
        restored=restored,
    )


def resume_head(output_dir, args) -> types.SimpleNamespace:
    """HEAD prepare_model_and_optimizer() when resuming."""
    checkpoint, global_step = nvidia_checkpoint(output_dir, args)
    if args.init_checkpoint:
        args.resume_step = 0
    model = NvidiaModel(CONFIG)
    loaded = model.load_state_dict(checkpoint["model"], strict=False)
    if args.fp16 and args.allreduce_post_accumulation_fp16:
        model.half()
    optimizer = FusedLAMBAMP(nvidia_groups(model), lr=args.learning_rate)
    scheduler = PolyWarmUpHead(
        optimizer, args.warmup_proportion, args.max_steps, base_lr=args.learning_rate
    )
    grad_scaler = torch.amp.GradScaler("cpu", init_scale=args.init_loss_scale, enabled=args.fp16)
    if (args.phase2 and not args.resume_phase2) or args.init_checkpoint:
        for group in checkpoint["optimizer"]["param_groups"]:
            group["step"].zero_()
            group["lr"].fill_(args.learning_rate)
    elif "grad_scaler" in checkpoint and (not args.phase2 or args.resume_phase2):
        grad_scaler.load_state_dict(checkpoint["grad_scaler"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    optimizer.setup_fp32_params()
    start_epoch = 0
    if (not args.phase2) or args.resume_phase2 or args.init_checkpoint:
        start_epoch = checkpoint.get("epoch", 0)
    return types.SimpleNamespace(
        checkpoint=checkpoint,
        global_resume_step=global_step,
        model=model,
        loaded=loaded,
        optimizer=optimizer,
        scheduler=scheduler,
        grad_scaler=grad_scaler,
        start_epoch=start_epoch,
    )


def one_step(resumed, seed=0) -> dict:
    """lr_scheduler.step() then optimizer.step() on small random gradients; returns, for the
    first decayed weight, its moments before the step and the clipped gradient applied."""
    generator = torch.Generator().manual_seed(seed)
    for p in resumed.model.parameters():
        p.grad = torch.randn(p.shape, generator=generator).to(p.dtype) * 1e-3
    first = resumed.optimizer.param_groups[0]["params"][0]
    before = {k: v.clone() for k, v in resumed.optimizer.state[first].items() if k != "step"}
    global_norm = global_grad_norm(resumed.optimizer.param_groups)
    resumed.scheduler.step()
    resumed.optimizer.step()
    return {"before": before, "grad": first.grad / max(global_norm / 1.0, 1.0), "param": first}


# ------------------------------------------------------------------------ our runs


def pretrain(shards, output, *extra: str) -> int:
    """run_pretraining.main in this process (it restores its signal handlers itself)."""
    flags = [
        "--train_batch_size=8",
        "--gradient_accumulation_steps=2",
        f"--learning_rate={LEARNING_RATE}",
        f"--max_steps={MAX_STEPS}",
        f"--warmup_proportion={WARMUP}",
        "--num_steps_per_checkpoint=1",
    ]
    return pretrain_in_process(shards, output, TINY_CONFIG, f"{output}/log.json", *flags, *extra)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Our phase 1 (3 steps: ckpt_1..3, inside its 100-step schedule) in `phase1`; a copy of it
    in `phase2`, where phase 2 then ran 2 steps (ckpt_4, ckpt_5, with --phase1_end_step 3); and
    in `ended` a phase 1 that ran its whole schedule of one step (ckpt_1)."""
    root = tmp_path_factory.mktemp("ours")
    write_random_shards(root / "shards")
    assert pretrain(root / "shards", root / "phase1", f"--steps_this_run={PHASE1_END}") == 0
    assert pretrain(root / "shards", root / "ended", f"--max_steps={ENDED_STEPS}") == 0
    shutil.copytree(root / "phase1", root / "phase2")
    status = pretrain(
        root / "shards",
        root / "phase2",
        "--phase2",
        "--resume_from_checkpoint",
        f"--phase1_end_step={PHASE1_END}",
        "--steps_this_run=2",
    )
    assert status == 0
    return root


# ------------------------------------------------------------------------ checkpoint tests


def test_checkpoint_has_nvidia_entries_and_nothing_pickled(runs):
    path = runs / "phase1" / f"ckpt_{PHASE1_END}.pt"
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    shapes = dict(nvidia_parameter_shapes(CONFIG))
    model = checkpoint["model"]
    assert set(model) == set(shapes) | {"cls.predictions.decoder.weight"}  # NVIDIA's names
    assert all(tuple(model[k].shape) == shape for k, shape in shapes.items())
    assert all(t.dtype == torch.float32 for t in model.values())
    groups = checkpoint["optimizer"]["param_groups"]
    keys = {
        "lr",
        "bias_correction",
        "betas",
        "eps",
        "weight_decay",
        "grad_averaging",
        "max_grad_norm",
        "step",
        "params",
    }
    assert all(keys <= set(group) for group in groups)
    assert [group["weight_decay"] for group in groups] == [0.01, 0.0]
    names = [name for name, _ in shapes.items()]
    decay = [n for n in names if not any(nd in n for nd in NO_DECAY)]
    assert [len(g["params"]) for g in groups] == [len(decay), len(names) - len(decay)]
    state = checkpoint["optimizer"]["state"]
    assert sorted(state) == list(range(len(names)))
    assert all(set(s) == {"exp_avg", "exp_avg_sq"} for s in state.values())
    assert len(checkpoint["master params"]) == len(names)
    assert isinstance(checkpoint["epoch"], int)


def test_lr_and_step_are_numbers_inside_the_schedule_and_tensors_at_its_end(runs):
    """21.11's layout (a float and an int) where a run continues, HEAD's (float32 and int32
    tensors) where the next phase starts."""
    checkpoints = {
        runs / "phase1" / f"ckpt_{PHASE1_END}.pt": PHASE1_END,
        runs / "phase2" / "ckpt_5.pt": 2,
    }
    for path, step in checkpoints.items():
        for group in torch.load(path, weights_only=True)["optimizer"]["param_groups"]:
            assert type(group["step"]) is int and group["step"] == step, path
            assert type(group["lr"]) is float, path
    ended = torch.load(runs / "ended" / f"ckpt_{ENDED_STEPS}.pt", weights_only=True)
    for group in ended["optimizer"]["param_groups"]:
        assert group["step"].dtype == torch.int32 and group["step"].tolist() == [ENDED_STEPS]
        assert group["lr"].dtype == torch.float32 and group["lr"].dim() == 0


def test_saved_moments_are_nvidias_parameter_order(runs):
    """NVIDIA numbers the moments by its own parameter order. Read that way, ckpt_3's moments
    and ckpt_2's weights must give ckpt_3's weights through the LAMB update of step 3."""
    previous = torch.load(runs / "phase1" / "ckpt_2.pt", weights_only=True)["model"]
    checkpoint = torch.load(runs / "phase1" / "ckpt_3.pt", weights_only=True)
    model = NvidiaModel(CONFIG)
    optimizer = FusedLAMB(nvidia_groups(model), lr=LEARNING_RATE)
    optimizer.load_state_dict(checkpoint["optimizer"])
    names = {id(p): n for n, p in model.named_parameters()}
    beta1, beta2, eps, step, lr = 0.9, 0.999, 1e-6, PHASE1_END, nvidia_lr(PHASE1_END)
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            m = optimizer.state[param]["exp_avg"].double()
            v = optimizer.state[param]["exp_avg_sq"].double()
            before = previous[name].double()
            update = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + eps)
            update = update + group["weight_decay"] * before
            ratio = lr
            if group["weight_decay"] != 0:
                ratio = lr * before.norm() / update.norm()
            expected = before - ratio * update
            torch.testing.assert_close(
                checkpoint["model"][name].double(), expected, rtol=1e-4, atol=1e-7, msg=name
            )


@pytest.mark.parametrize("init_checkpoint", [False, True])
@pytest.mark.parametrize("source", ["inside the schedule", "at its end"])
def test_2111_starts_phase2_or_an_init_checkpoint_from_ours(runs, init_checkpoint, source):
    output, number = (
        (runs / "phase1", PHASE1_END)
        if source == "inside the schedule"
        else (runs / "ended", ENDED_STEPS)
    )
    args = nvidia_args(phase2=not init_checkpoint, fp16=True, phase1_end_step=number)
    if init_checkpoint:
        args.init_checkpoint = str(output / f"ckpt_{number}.pt")
    resumed = resume_2111(output, args, runs / "shards")
    assert args.resume_step == (-1 if init_checkpoint else number)
    assert resumed.global_step == 0  # phase 2: 3 - phase1_end_step; init: 0
    assert resumed.loaded.missing_keys == []
    assert resumed.loaded.unexpected_keys == ["cls.predictions.decoder.weight"]  # tied there
    for group in resumed.optimizer.param_groups:  # ints and floats assigned over ours
        assert group["step"] == 0 and group["lr"] == LEARNING_RATE
        assert group["t_total"] == MAX_STEPS and group["warmup"] == WARMUP
    weights = dict(resumed.model.named_parameters())
    order = [
        n
        for g in nvidia_groups(resumed.model)
        for n, p in weights.items()
        if any(p is q for q in g["params"])
    ]
    for name, master in zip(order, resumed.masters, strict=True):  # amp's masters, copied
        assert torch.equal(master, resumed.checkpoint["model"][name])
    assert resumed.epoch == 0 and resumed.f_start_id == 0  # files listed afresh
    moved = one_step(resumed)
    for group in resumed.optimizer.param_groups:
        assert group["step"] == 1
        assert group["lr"] == pytest.approx(LEARNING_RATE / MAX_STEPS / WARMUP)
    json.dumps({"learning_rate": resumed.optimizer.param_groups[0]["lr"]})  # dllogger writes it
    m = resumed.optimizer.state[moved["param"]]["exp_avg"]  # the moments continued
    torch.testing.assert_close(m, 0.9 * moved["before"]["exp_avg"] + 0.1 * moved["grad"])


def test_2111_resumes_an_interrupted_phase2_of_ours(runs):
    output = runs / "phase2"
    resumed = resume_2111(output, nvidia_args(phase2=True), runs / "shards")
    assert resumed.global_step == 2  # ckpt_5 - phase1_end_step: the phase offset
    assert all(group["step"] == 2 for group in resumed.optimizer.param_groups)
    assert resumed.restored is None  # no pickled data_loader: 21.11 builds one from the file
    assert sorted(resumed.files) == sorted(str(p) for p in (runs / "shards").iterdir())
    assert os.path.isfile(resumed.data_file)
    ours = resumed.checkpoint["data_position"][0]  # our exact position names the same slot
    assert resumed.f_start_id == ours["piece"] and resumed.epoch == ours["epoch"]
    one_step(resumed)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(nvidia_lr(3))


@pytest.mark.parametrize("fp16", [False, True])
def test_2111_continues_phase1_of_ours_and_logs_its_lr(runs, fp16):
    """21.11's plain resume (no phase 2, no init_checkpoint) keeps our `step` and computes the
    LR from it; dllogger's JSON line holds that LR (a tensor `step` would make it a tensor)."""
    resumed = resume_2111(runs / "phase1", nvidia_args(fp16=fp16), runs / "shards")
    assert resumed.global_step == PHASE1_END
    assert os.path.isfile(resumed.data_file)
    moved = one_step(resumed)
    for group in resumed.optimizer.param_groups:
        assert group["step"] == PHASE1_END + 1
    lr = resumed.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(nvidia_lr(PHASE1_END + 1))
    line = json.dumps({"average_loss": 1.0, "step_loss": 1.0, "learning_rate": lr})
    assert json.loads(line)["learning_rate"] == lr  # what dllogger's JSON backend writes
    m = resumed.optimizer.state[moved["param"]]["exp_avg"]  # the moments continued
    torch.testing.assert_close(m, 0.9 * moved["before"]["exp_avg"] + 0.1 * moved["grad"])


@pytest.mark.parametrize("fp16", [False, True])
def test_head_resumes_phase1_of_ours(runs, fp16):
    resumed = resume_head(runs / "phase1", nvidia_args(fp16=fp16))
    assert resumed.global_resume_step == PHASE1_END
    assert resumed.start_epoch == resumed.checkpoint["epoch"]
    assert resumed.grad_scaler.get_scale() == (2**20 if fp16 else 1.0)  # ours loaded when on
    assert resumed.loaded.missing_keys == []
    for group in resumed.optimizer.param_groups:
        assert group["step"] == PHASE1_END  # ours, as saved: a number
    moved = one_step(resumed)  # the scheduler and the step made tensors of them
    for group in resumed.optimizer.param_groups:
        assert group["step"].dtype == torch.int32 and group["step"].tolist() == [PHASE1_END + 1]
        assert group["lr"].dtype == torch.float32
        assert float(group["lr"]) == pytest.approx(nvidia_lr(PHASE1_END + 1))
    m = resumed.optimizer.state[moved["param"]]["exp_avg"]
    torch.testing.assert_close(m, 0.9 * moved["before"]["exp_avg"] + 0.1 * moved["grad"])


@pytest.mark.parametrize("how", ["phase2", "init_checkpoint", "resume_phase2"])
def test_head_starts_phase2_or_an_init_checkpoint_from_ours(runs, how):
    """Phase 2 and --init_checkpoint start from the checkpoint that ended phase 1's schedule
    (HEAD's tensors); --resume_phase2 continues an interrupted phase 2 (numbers)."""
    if how == "resume_phase2":
        output, args = runs / "phase2", nvidia_args(phase2=True, resume_phase2=True, fp16=True)
    else:
        output = runs / "ended"
        args = nvidia_args(phase2=how == "phase2", fp16=True, phase1_end_step=ENDED_STEPS)
    if how == "init_checkpoint":
        args.init_checkpoint = str(output / f"ckpt_{ENDED_STEPS}.pt")
    resumed = resume_head(output, args)
    step = 2 if how == "resume_phase2" else 0  # zero_() and fill_() worked on ours
    assert resumed.global_resume_step == step
    assert resumed.start_epoch == (0 if how == "phase2" else resumed.checkpoint["epoch"])
    for group in resumed.optimizer.param_groups:
        assert int(group["step"]) == step
        if how != "resume_phase2":
            assert float(group["lr"]) == pytest.approx(LEARNING_RATE)
    one_step(resumed)
    for group in resumed.optimizer.param_groups:
        assert group["step"].dtype == torch.int32 and group["step"].tolist() == [step + 1]


def test_head_cannot_start_phase2_from_a_checkpoint_inside_our_schedule(runs):
    """The price of 21.11's numbers where a run continues: HEAD's phase-2 start zeroes `step`
    in place, which a number cannot do (README, differences: resuming across versions)."""
    with pytest.raises(AttributeError, match="zero_"):
        resume_head(runs / "phase1", nvidia_args(phase2=True, fp16=True))


def test_files_entry_gives_every_rank_its_shard_by_21_11s_formula():
    """21.11 rank r opens files[(slot * W + r) % len(files)]: with the list and slot we save,
    that is the piece each of our ranks is reading (three ranks, seven shards, slot 1)."""
    world, pieces = 3, [f"/data/shard_{i}_training.hdf5" for i in range(7)]
    gathered = [({"sharding": "files", "piece": 1}, pieces[rank::world]) for rank in range(world)]
    files = pretraining_checkpoints.nvidia_files(gathered)
    slot, files = files[0], files[1:]
    assert sorted(files) == sorted(pieces)
    for rank in range(world):
        assert files[(slot * world + rank) % len(files)] == pieces[rank::world][slot]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_grad_scaler_entry_loads_into_a_grad_scaler(precision):
    scaler = None
    if precision == "fp16":
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
        scaler.scale(torch.ones(1))  # the scale now lives in a tensor, as during training
    training = types.SimpleNamespace(
        precision=types.SimpleNamespace(scaler=scaler, precision=precision),
        options=types.SimpleNamespace(initial_loss_scale=2.0**20),
    )
    state = pretraining_checkpoints.grad_scaler_state(training)
    head = torch.amp.GradScaler("cpu", init_scale=1.0, enabled=True)
    head.load_state_dict(state)  # what HEAD does with an fp16 run (None or {} would raise)
    assert head.get_scale() == (2.0**16 if precision == "fp16" else 2.0**20)
    torch.amp.GradScaler("cpu", enabled=False).load_state_dict(state)


# ------------------------------------------------------------------------ --init_checkpoint


def test_init_checkpoint_needs_resume_and_init_weights_loads_weights(runs, tmp_path, caplog):
    source = runs / "phase1" / f"ckpt_{PHASE1_END}.pt"
    weights = torch.load(source, weights_only=True)["model"]
    key = "bert.encoder.layer.0.output.dense.weight"

    def first_weights(output) -> torch.Tensor:
        return torch.load(output / "ckpt_1.pt", weights_only=True)["model"][key]

    extra = ["--steps_this_run=1", "--learning_rate=1e-30"]  # far below float32 resolution:
    # the weights stay as loaded
    assert (
        pretrain(runs / "shards", tmp_path / "ignored", f"--init_checkpoint={source}", *extra) == 0
    )
    warnings = [r.getMessage() for r in caplog.records if "--init_checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and "ignored" in warnings[0] and "--init_weights" in warnings[0]
    assert not torch.equal(first_weights(tmp_path / "ignored"), weights[key])  # not loaded
    assert pretrain(runs / "shards", tmp_path / "weights", f"--init_weights={source}", *extra) == 0
    assert torch.equal(first_weights(tmp_path / "weights"), weights[key])
    fresh = torch.load(tmp_path / "weights" / "ckpt_1.pt", weights_only=True)["optimizer"]
    assert fresh["param_groups"][0]["step"] == 1  # a fresh optimizer
    assert (
        pretrain(
            runs / "shards",
            tmp_path / "resumed",
            "--resume_from_checkpoint",
            f"--init_checkpoint={source}",
            *extra,
        )
        == 0
    )
    resumed = torch.load(tmp_path / "resumed" / "ckpt_1.pt", weights_only=True)
    assert resumed["global_step"] == 1  # NVIDIA's meaning: step count restarted ...
    assert torch.equal(resumed["model"][key], weights[key])  # ... from that file's weights


def test_init_weights_with_resume_from_an_init_checkpoint_is_one_error(runs, tmp_path, capsys):
    source = runs / "phase1" / f"ckpt_{PHASE1_END}.pt"
    status = pretrain(
        runs / "shards",
        tmp_path / "both",
        "--resume_from_checkpoint",
        f"--init_checkpoint={source}",
        f"--init_weights={source}",
    )
    assert status == 2  # a usage error
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--init_weights" in errors[0] and "pass one" in errors[0]


# ------------------------------------------------------------------------ logs


def parse_dllogger(path) -> tuple[dict, list, dict]:
    """A parser of NVIDIA's dllogger files: `DLLL {json}` lines; PARAMETER records, per-step
    records (step [epoch, iteration]) in order, and the summary (step [])."""
    parameters, steps, summary = {}, [], {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("DLLL "):
            continue
        record = json.loads(line[len("DLLL ") :])
        if record["type"] != "LOG":
            continue
        if record["step"] == "PARAMETER":
            parameters.update(record["data"])
        elif record["step"] == []:
            summary.update(record["data"])
        else:
            steps.append((tuple(record["step"]), record["data"]))
    return parameters, steps, summary


STDOUT_LINE = re.compile(r"^DLL (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{6})?) - (.*)$")
TRAINING_STEP = re.compile(r"^Training Epoch: (\d+) Training Iteration: (\d+) (.*)$")


def parse_stdout(text: str) -> list[tuple[tuple[int, int], dict[str, str]]]:
    """The per-step `DLL <time> - Training Epoch: e Training Iteration: i  key : value ...`
    lines of dllogger's StdOutBackend with NVIDIA's format_step."""
    found = []
    for line in text.splitlines():
        match = STDOUT_LINE.match(line)
        step = TRAINING_STEP.match(match.group(2)) if match else None
        if step:
            values = dict(re.findall(r"(\w+) : (\S+)", step.group(3)))
            found.append(((int(step.group(1)), int(step.group(2))), values))
    return found


def run_script(*command: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *command], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_nvidia_log_parser_reads_our_pretraining_logs_and_glue_results(tmp_path, sample_shards):
    out = tmp_path / "pretraining"
    common = [
        "run_pretraining.py",
        "--do_train",
        "--disable_progress_bar",
        "--no_cuda",
        f"--output_dir={out}",
        f"--config_file={TINY_CONFIG}",
        "--train_batch_size=8",
        "--gradient_accumulation_steps=2",
        "--learning_rate=2e-2",
        "--max_steps=4",
        "--warmup_proportion=0.5",
        "--num_steps_per_checkpoint=4",
    ]
    phase1 = run_script(
        *common,
        f"--input_dir={sample_shards / 'phase1'}",
        f"--json-summary={tmp_path / 'phase1.json'}",
    )
    parameters, steps, summary = parse_dllogger(tmp_path / "phase1.json")
    assert [step for step, _ in steps] == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 4)]
    for (_, iteration), data in steps[:-1]:
        assert {"average_loss", "step_loss", "learning_rate", "skipped_steps"} <= set(data)
        # both undivided: the last micro-batch's loss is near the mean of the step's two, where
        # a division by the accumulation steps (2) would halve one of them
        assert 0.8 < data["step_loss"] / data["average_loss"] < 1.25, data
        expected = 2e-2 * (
            iteration / 4 / 0.5 if iteration / 4 < 0.5 else (1 - iteration / 4) ** 0.5
        )
        assert data["learning_rate"] == pytest.approx(expected)
        assert data["skipped_steps"] == 0
    assert steps[-1][1] == {"final_loss": steps[-2][1]["average_loss"]}
    assert summary["final_loss"] == steps[-1][1]["final_loss"]
    assert {"e2e_train_time", "training_sequences_per_second", "raw_train_time"} <= set(summary)
    assert parameters["batch_size_per_gpu"] == 4 and parameters["checkpoint_step"] == 4
    assert {"Config", "SEED", "train_start", "learning_rate"} <= set(parameters)
    printed = parse_stdout(phase1.stdout)  # the same records on stdout
    assert [step for step, _ in printed] == [step for step, _ in steps]
    assert float(printed[0][1]["average_loss"]) == steps[0][1]["average_loss"]
    assert float(printed[-1][1]["final_loss"]) == steps[-1][1]["final_loss"]

    phase2 = run_script(
        *common,
        "--max_steps=2",
        "--phase2",
        "--resume_from_checkpoint",
        "--phase1_end_step=4",
        f"--input_dir={sample_shards / 'phase2'}",
        f"--json-summary={tmp_path / 'phase2.json'}",
    )
    parameters, steps, summary = parse_dllogger(tmp_path / "phase2.json")
    assert [step[1] for step, _ in steps] == [1, 2, 2]  # counted within phase 2
    assert parameters["checkpoint_step"] == 2 and (out / "ckpt_6.pt").is_file()  # name: offset
    assert len(parse_stdout(phase2.stdout)) == 3

    glue = tmp_path / "glue"
    run_script(
        "run_glue.py",
        "--task_name=mrpc",
        f"--data_dir={REPO_ROOT}/data/sample/glue/MRPC",
        f"--vocab_file={UNCASED_VOCAB}",
        f"--config_file={TINY_CONFIG}",
        "--do_lower_case",
        "--do_train",
        "--do_eval",
        "--max_steps=2",
        "--train_batch_size=8",
        "--eval_batch_size=16",
        "--no_cuda",
        f"--output_dir={glue}",
        f"--json-summary={glue / 'dllogger.json'}",
    )
    results = json.loads((glue / "results.txt").read_text())
    assert results["global_step"] == 2 and results["train:num_samples_per_gpu"] == 16
    assert results["train:num_steps"] == 2  # micro-batches of the last epoch
    assert results["train:throughput"] == pytest.approx(16 / results["train:latency"], rel=1e-6)
    assert isinstance(results["train:loss"], float)
    assert results["eval:num_samples_per_gpu"] == 100 and results["eval:num_steps"] == 7
    latency = [results[f"infer:latency(ms):{q}"] for q in ("50%", "90%", "95%", "99%", "100%")]
    assert latency == sorted(latency) and latency[0] > 0
    assert results["infer:latency(ms):sum"] == pytest.approx(7 * results["infer:latency(ms):avg"])
    assert results["infer:latency(ms):std"] >= 0
    assert results["infer:throughput(samples/s):avg"] == pytest.approx(
        16 / (results["infer:latency(ms):avg"] / 1000)
    )
    assert {"eval:loss", "acc", "f1", "acc_and_f1"} <= set(results)
    expected = mrpc_dev_scores(glue / "pytorch_model.bin", TINY_CONFIG, UNCASED_VOCAB, SAMPLE_MRPC)
    assert results["acc"] == pytest.approx(expected["acc"], abs=1e-9)
    assert results["eval:loss"] == pytest.approx(expected["eval:loss"], rel=1e-5)
    _, _, summary = parse_dllogger(glue / "dllogger.json")
    assert summary["exact_match"] == results["acc"] and summary["F1"] == results["f1"]
    assert summary["e2e_inference_time"] == pytest.approx(results["infer:latency(ms):sum"] / 1000)
    assert summary["inference_sequences_per_second"] == results["infer:throughput(samples/s):avg"]
    assert not math.isnan(summary["e2e_train_time"])
