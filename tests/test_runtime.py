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


# ----------------------------------------------------------------------------- paths


def test_input_paths(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert runtime.check_input_file(tmp_path / "f.txt", "--vocab_file") == tmp_path / "f.txt"
    assert runtime.check_input_dir(tmp_path, "--data_dir") == tmp_path
    cases = [
        (runtime.check_input_file, tmp_path / "no.txt", "--vocab_file", "no.txt: no such file"),
        (runtime.check_input_file, tmp_path, "--vocab_file", "is a folder, expected a file"),
        (runtime.check_input_file, tmp_path / "f.txt" / "x", "--vocab_file", "no such file"),
        (runtime.check_input_file, f"{tmp_path}/a\0b", "--vocab_file", "holds a NUL byte"),
        (runtime.check_input_file, "/dev/null", "--config_file", "not a regular file"),
        (runtime.check_input_dir, tmp_path / "no", "--data_dir", "no: no such folder"),
        (runtime.check_input_dir, tmp_path / "f.txt", "--data_dir", "is a file, expected a fold"),
        (runtime.check_input_file, "x" * 5000, "--vocab_file", "File name too long"),
        (runtime.check_input_file, "", "--vocab_file", "empty path (an unset variable?)"),
        (runtime.check_input_dir, " ", "--data_dir", "empty path"),
        (runtime.check_output_dir, "", "--output_dir", "empty path"),
        (runtime.check_output_file, "", "--output_file", "empty path"),
        (runtime.check_input_path, tmp_path / "gone", "--input_file", "no such file or folder"),
    ]
    for check, path, flag, message in cases:
        with pytest.raises(UsageError, match="^" + flag) as info:
            check(path, flag)
        assert message in str(info.value)


def test_output_paths_are_checked_without_creating_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    assert runtime.check_output_dir(tmp_path / "new" / "deeper", "--output_dir")
    assert runtime.check_output_dir(tmp_path, "--output_dir")
    assert runtime.check_output_file(tmp_path / "new" / "log.json", "--json-summary")
    assert runtime.check_output_file(tmp_path / "file", "--output_file")  # replaced: fine
    assert runtime.check_output_file("/dev/null", "--json-summary", append=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the write probe is gone
    cases = [
        (runtime.check_output_dir, tmp_path / "file", "exists and is not a folder"),
        (runtime.check_output_dir, tmp_path / "file" / "sub", f"{tmp_path / 'file'} is a file"),
        (runtime.check_output_file, tmp_path, "is a folder, expected a file name"),
        (runtime.check_output_file, f"{tmp_path}/out/", "names a folder, expected a file name"),
        (runtime.check_output_file, tmp_path / "file" / "x.json", "is a file, not a folder"),
        (runtime.check_output_file, "/dev/null", "exists and is not a regular file"),
    ]
    for check, path, message in cases:
        with pytest.raises(UsageError, match=r"^--out ") as info:
            check(path, "--out")
        assert message in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_an_unwritable_folder_is_found_by_a_real_write(tmp_path, monkeypatch):
    def refuse(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runtime, "probe_writable", refuse)
    with pytest.raises(UsageError, match=r"--output_dir .*: cannot write in .*Permission denied"):
        runtime.check_output_dir(tmp_path / "o", "--output_dir")
    with pytest.raises(UsageError, match=r"--json-summary .*: cannot write in .*Permission"):
        runtime.check_output_file(tmp_path / "log.json", "--json-summary", append=True)


def test_a_read_only_folder_cannot_be_written(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; the probe is tested with a stand-in")
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot write in"):
        runtime.check_output_dir(folder, "--output_dir")


def test_an_output_that_is_an_input_is_refused(tmp_path):
    import os

    (tmp_path / "a").mkdir()
    data = tmp_path / "a" / "train.json"
    data.write_text("{}")
    (tmp_path / "link.json").symlink_to(data)
    os.link(data, tmp_path / "hard.json")
    spellings = [
        data,
        tmp_path / "link.json",
        tmp_path / "hard.json",
        f"{tmp_path}/a/../a/./train.json",
    ]
    for spelling in spellings:
        with pytest.raises(UsageError) as info:
            runtime.check_not_overwriting({"--train_file": data}, {"--json-summary": spelling})
        assert str(info.value).startswith(f"--json-summary {spelling} is --train_file {data}")
        assert "would overwrite an input" in str(info.value)
    runtime.check_not_overwriting(
        {"--train_file": data, "--init_checkpoint": None, "--cache": "s3://b/k"},
        {"--json-summary": tmp_path / "log.json", "--output": None},
    )
    missing = tmp_path / "b" / "x.pt"  # neither exists: the resolved paths decide
    with pytest.raises(UsageError, match="would overwrite an input"):
        runtime.check_not_overwriting({"--input": missing}, {"--output": tmp_path / "b/../b/x.pt"})
    with pytest.raises(UsageError, match=r"lies in --working_dir .*, which the run replaces"):
        runtime.check_not_overwriting({"--dump": data}, {}, folders={"--working_dir": tmp_path})


def test_model_files_against_each_other(tmp_path):
    from modeling import ConfigError
    from tests.support import TINY_CONFIG, UNCASED_VOCAB

    config = runtime.check_model_files(TINY_CONFIG, UNCASED_VOCAB, 512)
    assert config.padded_vocab_size == 30528
    small = tmp_path / "small.json"
    small.write_text(TINY_CONFIG.read_text().replace('"vocab_size": 30522', '"vocab_size": 100'))
    with pytest.raises(UsageError) as info:
        runtime.check_model_files(small, UNCASED_VOCAB)
    assert str(info.value) == (
        f"--vocab_file {UNCASED_VOCAB} has 30522 tokens, more than the 104 embedding rows of "
        f"--config_file {small} (vocab_size 100); use the vocabulary the model was made for"
    )
    with pytest.raises(UsageError, match="--max_seq_length 513 is longer than the model's 512"):
        runtime.check_model_files(TINY_CONFIG, None, 513)
    with pytest.raises(UsageError, match=r"--config_file .*: is a folder"):
        runtime.check_model_files(tmp_path)
    with pytest.raises(UsageError, match=r"--vocab_file .*nope: no such file"):
        runtime.check_model_files(TINY_CONFIG, tmp_path / "nope")
    (tmp_path / "bad.json").write_text('{"vocab_size": 10, "hidden_size": NaN}')
    with pytest.raises(ConfigError, match=r"bad\.json"):
        runtime.check_model_files(tmp_path / "bad.json")


def test_the_cli_part_loads_without_torch():
    """The data-preparation CLIs parse and report errors through runtime without loading torch."""
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    code = "import runtime, sys; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_an_error_under_a_progress_bar_starts_a_line_of_its_own(capsys, monkeypatch):
    from tqdm import tqdm

    monkeypatch.delenv(runtime.DEBUG_ENV, raising=False)

    def body(args):
        for _ in tqdm(range(3), desc="work"):  # left open by the error, as a real loop's bar
            raise BertError("x.json: broken")

    assert run(body) == 1
    err = capsys.readouterr().err
    assert "work" in err and err.endswith("\nprog.py: error: x.json: broken\n")
