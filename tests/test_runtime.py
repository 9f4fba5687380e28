"""runtime.py: the runtime flags the training scripts share, the precision choice and the
local rank from the environment."""

from __future__ import annotations

import pytest
import torch

import cli
import runtime
from errors import UsageError
from tests.support import assert_flag_refused


def parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="prog.py")
    runtime.add_runtime_arguments(parser, seed=42)
    return parser


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--seed", "-1", "between 0 and"),
        ("--seed", str(2**32), "between 0 and"),
        ("--loss_scale", "-1", "must be 0 or more"),
        ("--train_batch_size", "0", "must be a positive integer"),
        ("--gradient_accumulation_steps", "1.5", "must be an integer"),
        ("--learning_rate", "0", "must be a positive number"),
        ("--precision", "fp64", "invalid choice"),
    ],
)
def test_bad_runtime_values_are_one_line_naming_the_flag(flag, value, message, capsys):
    assert_flag_refused(parser(), [flag, value], message, capsys)


def test_nvidia_defaults():
    args = parser().parse_args([])
    assert args.precision is None and args.local_rank is None and args.seed == 42
    assert (args.train_batch_size, args.gradient_accumulation_steps) == (32, 1)
    assert args.learning_rate == 5e-5 and args.json_summary == "results/dllogger.json"


def test_precision_choice():
    cpu = torch.device("cpu")

    def choose(*argv):
        return runtime.choose_precision(parser().parse_args(list(argv)), cpu)

    assert choose() == ("fp32", True)  # NVIDIA's default: fp32, TF32 allowed where it exists
    assert choose("--no_tf32") == ("fp32", False)
    assert choose("--precision", "fp32") == ("fp32", False)
    assert choose("--bf16") == ("bf16", True)
    assert choose("--precision", "auto", "--bf16") == ("bf16", True)
    with pytest.raises(UsageError, match="--fp16 needs a CUDA GPU"):
        choose("--fp16")
    with pytest.raises(UsageError, match="conflicting precision flags"):
        choose("--bf16", "--precision", "fp32")
    with pytest.raises(UsageError) as refused:  # fp8 anywhere but a Hopper-class GPU: one line
        choose("--precision", "fp8")
    assert str(refused.value) == (
        "--precision fp8 needs a CUDA GPU of compute capability 9.0 or newer (H100/H200); "
        "none is in use; use --bf16 instead"
    )


def test_fp8_refused_on_older_gpus_and_without_torchao(monkeypatch):
    import builtins

    import training

    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100")
    assert training.fp8_unavailable(cuda) == (
        "needs compute capability 9.0 or newer (H100/H200); NVIDIA A100 is 8.0"
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    assert training.fp8_unavailable(cuda) == "needs the torchao package (pip install torchao)"
    with pytest.raises(ValueError, match="fp8 needs a CUDA GPU"):
        training.make_precision("fp8", torch.device("cpu"))


def test_float8_layers_are_the_encoder_linears():
    import training
    from modeling import BertForPreTraining, BertForQuestionAnswering
    from tests.support import tiny_config

    for model in (BertForPreTraining(tiny_config()), BertForQuestionAnswering(tiny_config())):
        chosen = [n for n, m in model.named_modules() if training.float8_layer(m, n)]
        assert len(chosen) == 2 * 6  # query, key, value, attention output, FFN in and out
        assert all(n.startswith("bert.encoder.layer.") for n in chosen)
    assert training.maybe_float8(model, "bf16") is model


def test_local_rank_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert runtime.env_local_rank() == 3
    monkeypatch.setenv("LOCAL_RANK", "x; rm -rf /")
    with pytest.raises(UsageError, match="LOCAL_RANK must be a rank number"):
        runtime.env_local_rank()
    monkeypatch.delenv("LOCAL_RANK")
    assert runtime.env_local_rank() == -1
