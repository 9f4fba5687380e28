"""runtime.py: flag types, one-line argument errors, the precision choice and the main() wrapper
that turns every way a run can end into one line and an exit status."""

from __future__ import annotations

import argparse

import pytest
import torch

import runtime
from errors import BertError, UsageError


def parser() -> runtime.ArgumentParser:
    parser = runtime.ArgumentParser(prog="prog.py")
    runtime.add_runtime_arguments(parser, seed=42)
    add = parser.add_argument
    add("--batch", type=runtime.positive_int, default=8)
    add("--warmup", type=runtime.proportion, default=0.1)
    add("--lr", type=runtime.positive_float, default=1e-3)
    add("--steps", type=runtime.positive_steps, default=10)
    add("--limit", type=runtime.positive_int_or_minus_one, default=-1)
    add("--resume", type=runtime.step_or_minus_one, default=-1)
    return parser


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--batch", "0", "must be a positive integer, got '0'"),
        ("--batch", "-3", "must be a positive integer"),
        ("--batch", "2.5", "must be an integer"),
        ("--batch", "$(touch x)", "must be an integer"),
        ("--warmup", "1.5", "must be between 0 and 1"),
        ("--warmup", "nan", "must be a finite number"),
        ("--lr", "0", "must be a positive number"),
        ("--lr", "inf", "must be a finite number"),
        ("--steps", "0", "whole number of steps >= 1"),
        ("--steps", "2.5", "whole number of steps >= 1"),
        ("--limit", "0", "positive integer or -1"),
        ("--resume", "-2", "step number or -1"),
        ("--seed", "-1", "between 0 and"),
        ("--seed", str(2**32), "between 0 and"),
        ("--loss_scale", "-1", "must be 0 or more"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args([flag, value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prog.py: error: argument ")
    assert flag in err[0] and message in err[0]


def test_good_values_parse():
    args = parser().parse_args(["--batch", "4", "--warmup", "0", "--steps", "7038", "--limit", "5"])
    assert (args.batch, args.warmup, args.steps, args.limit) == (4, 0.0, 7038.0, 5)
    assert args.precision is None and args.local_rank is None and args.seed == 42


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
    from tests.conftest import tiny_config

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


def run(body, argv=(), monkeypatch=None) -> int:
    def parse(arguments):
        p = argparse.ArgumentParser(prog="x")
        p.add_argument("--debug", action="store_true")
        return p.parse_args(arguments)

    return runtime.run_main("prog.py", parse, body, list(argv))


def raising(error: BaseException):
    def body(args):
        raise error

    return body


def test_main_wrapper_exit_statuses(capsys, monkeypatch):
    monkeypatch.delenv(runtime.DEBUG_ENV, raising=False)
    assert run(lambda args: None) == 0
    assert run(lambda args: 3) == 3
    assert run(raising(BertError("data.json: not valid JSON"))) == 1
    assert capsys.readouterr().err == "prog.py: error: data.json: not valid JSON\n"
    assert run(raising(UsageError("--batch 3 is odd"))) == 2
    assert capsys.readouterr().err == "prog.py: error: --batch 3 is odd\n"
    assert run(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "prog.py: interrupted\n"


def test_unexpected_errors_are_one_line_with_a_pointer_to_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv(runtime.DEBUG_ENV, raising=False)
    assert run(raising(ZeroDivisionError("division by zero\nsecond line"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "prog.py: error: ZeroDivisionError: division by zero" in err and "--debug" in err
    assert run(raising(FileNotFoundError(2, "No such file or directory", "/x/y.pt"))) == 1
    assert "prog.py: error: /x/y.pt: No such file or directory" in capsys.readouterr().err
    assert run(raising(ZeroDivisionError("boom")), ["--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(runtime.DEBUG_ENV, "1")
    assert run(raising(ZeroDivisionError("boom"))) == 1
    assert "Traceback" in capsys.readouterr().err


def test_argparse_errors_and_help_come_back_as_statuses(capsys):
    def parse(arguments):
        p = runtime.ArgumentParser(prog="prog.py")
        p.add_argument("--n", type=runtime.positive_int, required=True)
        return p.parse_args(arguments)

    assert runtime.run_main("prog.py", parse, lambda args: None, []) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["prog.py: error: the following arguments are required: --n (see --help)"]
    assert runtime.run_main("prog.py", parse, lambda args: None, ["--help"]) == 0
