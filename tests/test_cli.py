"""cli.py: the checked flag types, one-line argument errors, the path checks, and the main()
wrapper that turns every way a run can end into one line and an exit status."""

from __future__ import annotations

import argparse

import pytest

import cli
from errors import BertError, UsageError
from tests.support import NOT_AS_ROOT, assert_flag_refused


def parser() -> cli.ArgumentParser:
    parser = cli.ArgumentParser(prog="prog.py")
    add = parser.add_argument
    add("--batch", type=cli.positive_int, default=8)
    add("--warmup", type=cli.proportion, default=0.1)
    add("--lr", type=cli.positive_float, default=1e-3)
    add("--steps", type=cli.positive_steps, default=10)
    add("--limit", type=cli.positive_int_or_minus_one, default=-1)
    add("--resume", type=cli.step_or_minus_one, default=-1)
    add("--seed", type=cli.seed_value, default=42)
    add("--scale", type=cli.non_negative_float, default=0.0)
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
        ("--scale", "-1", "must be 0 or more"),
        ("--scale", "x", "must be a number"),
    ],
)
def test_bad_values_are_one_line_naming_the_flag(flag, value, message, capsys):
    assert_flag_refused(parser(), [flag, value], message, capsys)


def test_good_values_parse():
    argv = ["--batch", "4", "--warmup", "0", "--steps", "7038", "--limit", "5", "--seed", "0"]
    args = parser().parse_args(argv)
    assert (args.batch, args.warmup, args.steps, args.limit, args.seed) == (4, 0.0, 7038.0, 5, 0)


SIZE_TYPES = {  # each bounded type, its largest accepted value and what the limit stands for
    "positive_int": (cli.positive_int, 2**40, "2**40"),
    "non_negative_int": (cli.non_negative_int, 2**40, "2**40"),
    "positive_steps": (cli.positive_steps, 2**40, "2**40 steps"),
    "steps_or_minus_one": (cli.steps_or_minus_one, 2**40, "2**40 steps"),
    "positive_int_or_minus_one": (cli.positive_int_or_minus_one, 2**40, "2**40"),
    "step_or_minus_one": (cli.step_or_minus_one, 2**40, "2**40"),
    "batch_size": (cli.batch_size, 2**20, "2**20 samples per process per step"),
    "seq_length": (cli.seq_length, 2**16, "2**16 tokens per sequence"),
    "process_count": (cli.process_count, 2**12, "2**12 processes on one machine"),
    "worker_count": (cli.worker_count, 2**12, "2**12 workers on one machine"),
    "shard_count": (cli.shard_count, 2**20, "2**20 shard files"),
    "dupe_factor": (cli.dupe_factor, 1000, "1000 (copies of the text)"),
    "epoch_count": (cli.epoch_count, 2**20, "2**20 passes over the data"),
    "learning_rate": (cli.learning_rate, 1000, "1000"),
    "loss_scale": (cli.loss_scale, 2**32, "2**32"),
    "positive_loss_scale": (cli.positive_loss_scale, 2**32, "2**32"),
}


@pytest.mark.parametrize("name", sorted(SIZE_TYPES))
def test_sizes_have_a_stated_upper_limit(name):
    kind, largest, words = SIZE_TYPES[name]
    assert kind(str(largest)) == largest  # the limit itself is accepted
    for value in (str(largest + 1), "99999999999999999999", "1" + "0" * 5000):
        with pytest.raises(argparse.ArgumentTypeError) as err:
            kind(value)
        message = str(err.value)
        assert len(message) < 120, message  # a 5,001-digit value is not echoed whole
        if len(value) < 30:
            assert f"at most {largest}" in message and words.split(" (")[0] in message, message
        else:
            assert "far too large" in message and "characters" in message, message


def test_huge_floats_are_refused_by_every_float_type():
    for kind in (cli.finite_float, cli.positive_float, cli.non_negative_float, cli.proportion):
        for value, words in (("1e400", "far too large"), ("-1e999", "far too large")):
            with pytest.raises(argparse.ArgumentTypeError, match=words):
                kind(value)
        for value in ("nan", "inf", "-Infinity"):
            with pytest.raises(argparse.ArgumentTypeError, match="finite number"):
                kind(value)
    with pytest.raises(argparse.ArgumentTypeError, match="at most 1099511627776"):
        cli.positive_steps("1e300")  # a whole number as a float, but beyond any run


def run(body, argv=(), monkeypatch=None) -> int:
    def parse(arguments):
        p = argparse.ArgumentParser(prog="x")
        p.add_argument("--debug", action="store_true")
        return p.parse_args(arguments)

    return cli.run_main("prog.py", parse, body, list(argv))


def raising(error: BaseException):
    def body(args):
        raise error

    return body


def test_main_wrapper_exit_statuses(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert run(lambda args: None) == 0
    assert run(lambda args: 3) == 3
    assert run(raising(BertError("data.json: not valid JSON"))) == 1
    assert capsys.readouterr().err == "prog.py: error: data.json: not valid JSON\n"
    assert run(raising(UsageError("--batch 3 is odd"))) == 2
    assert capsys.readouterr().err == "prog.py: error: --batch 3 is odd\n"
    assert run(raising(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "prog.py: interrupted\n"


def test_unexpected_errors_are_one_line_with_a_pointer_to_the_traceback(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert run(raising(ZeroDivisionError("division by zero\nsecond line"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "prog.py: error: ZeroDivisionError: division by zero" in err and "--debug" in err
    assert run(raising(FileNotFoundError(2, "No such file or directory", "/x/y.pt"))) == 1
    assert "prog.py: error: /x/y.pt: No such file or directory" in capsys.readouterr().err
    assert run(raising(ZeroDivisionError("boom")), ["--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert run(raising(ZeroDivisionError("boom"))) == 1
    assert "Traceback" in capsys.readouterr().err


def test_argparse_errors_and_help_come_back_as_statuses(capsys):
    def parse(arguments):
        p = cli.ArgumentParser(prog="prog.py")
        p.add_argument("--n", type=cli.positive_int, required=True)
        return p.parse_args(arguments)

    assert cli.run_main("prog.py", parse, lambda args: None, []) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["prog.py: error: the following arguments are required: --n (see --help)"]
    assert cli.run_main("prog.py", parse, lambda args: None, ["--help"]) == 0


def test_a_refused_flag_is_one_line_saying_what_to_use(capsys):
    def parse(arguments):
        p = cli.ArgumentParser(prog="prog.py")
        p.add_argument("--old", action=cli.RefusedFlag, instead="use --new", help="refused")
        p.add_argument("--new", action="store_true")
        return p.parse_args(arguments)

    assert not hasattr(parse(["--new"]), "old")  # absent unless given
    assert cli.run_main("prog.py", parse, lambda args: None, ["--new", "--old"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["prog.py: error: --old: use --new (see --help)"]
    assert cli.run_main("prog.py", parse, lambda args: None, ["--help"]) == 0
    assert "--old       refused" in capsys.readouterr().out


def test_input_paths(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    assert cli.check_input_file(tmp_path / "f.txt", "--vocab_file") == tmp_path / "f.txt"
    assert cli.check_input_dir(tmp_path, "--data_dir") == tmp_path
    cases = [
        (cli.check_input_file, tmp_path / "no.txt", "--vocab_file", "no.txt: no such file"),
        (cli.check_input_file, tmp_path, "--vocab_file", "is a folder, expected a file"),
        (cli.check_input_file, tmp_path / "f.txt" / "x", "--vocab_file", "no such file"),
        (cli.check_input_file, f"{tmp_path}/a\0b", "--vocab_file", "holds a NUL byte"),
        (cli.check_input_file, "/dev/null", "--config_file", "not a regular file"),
        (cli.check_input_dir, tmp_path / "no", "--data_dir", "no: no such folder"),
        (cli.check_input_dir, tmp_path / "f.txt", "--data_dir", "is a file, expected a fold"),
        (cli.check_input_file, "x" * 5000, "--vocab_file", "File name too long"),
        (cli.check_input_file, "", "--vocab_file", "empty path (an unset variable?)"),
        (cli.check_input_dir, " ", "--data_dir", "empty path"),
        (cli.check_output_dir, "", "--output_dir", "empty path"),
        (cli.check_output_file, "", "--output_file", "empty path"),
        (cli.check_input_path, tmp_path / "gone", "--input_file", "no such file or folder"),
    ]
    for check, path, flag, message in cases:
        with pytest.raises(UsageError, match="^" + flag) as info:
            check(path, flag)
        assert message in str(info.value)


def test_output_paths_are_checked_without_creating_anything(tmp_path):
    (tmp_path / "file").write_text("x")
    assert cli.check_output_dir(tmp_path / "new" / "deeper", "--output_dir")
    assert cli.check_output_dir(tmp_path, "--output_dir")
    assert cli.check_output_file(tmp_path / "new" / "log.json", "--json-summary")
    assert cli.check_output_file(tmp_path / "file", "--output_file")  # replaced: fine
    assert cli.check_output_file("/dev/null", "--json-summary", append=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the write probe is gone
    cases = [
        (cli.check_output_dir, tmp_path / "file", "exists and is not a folder"),
        (cli.check_output_dir, tmp_path / "file" / "sub", f"{tmp_path / 'file'} is a file"),
        (cli.check_output_file, tmp_path, "is a folder, expected a file name"),
        (cli.check_output_file, f"{tmp_path}/out/", "names a folder, expected a file name"),
        (cli.check_output_file, tmp_path / "file" / "x.json", "is a file, not a folder"),
        (cli.check_output_file, "/dev/null", "exists and is not a regular file"),
    ]
    for check, path, message in cases:
        with pytest.raises(UsageError, match=r"^--out ") as info:
            check(path, "--out")
        assert message in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_an_unwritable_folder_is_found_by_a_real_write(tmp_path, monkeypatch):
    def refuse(folder):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli, "probe_writable", refuse)
    with pytest.raises(UsageError, match=r"--output_dir .*: cannot write in .*Permission denied"):
        cli.check_output_dir(tmp_path / "o", "--output_dir")
    with pytest.raises(UsageError, match=r"--json-summary .*: cannot write in .*Permission"):
        cli.check_output_file(tmp_path / "log.json", "--json-summary", append=True)


def test_a_read_only_folder_cannot_be_written(tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip(NOT_AS_ROOT)  # the probe is tested with a stand-in
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot write in"):
        cli.check_output_dir(folder, "--output_dir")


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
            cli.check_not_overwriting({"--train_file": data}, {"--json-summary": spelling})
        assert str(info.value).startswith(f"--json-summary {spelling} is --train_file {data}")
        assert "would overwrite an input" in str(info.value)
    cli.check_not_overwriting(
        {"--train_file": data, "--init_checkpoint": None, "--cache": "s3://b/k"},
        {"--json-summary": tmp_path / "log.json", "--output": None},
    )
    missing = tmp_path / "b" / "x.pt"  # neither exists: the resolved paths decide
    with pytest.raises(UsageError, match="would overwrite an input"):
        cli.check_not_overwriting({"--input": missing}, {"--output": tmp_path / "b/../b/x.pt"})
    with pytest.raises(UsageError, match=r"lies in --working_dir .*, which the run replaces"):
        cli.check_not_overwriting({"--dump": data}, {}, folders={"--working_dir": tmp_path})


def test_model_files_against_each_other(tmp_path):
    from modeling import ConfigError
    from tests.support import TINY_CONFIG, UNCASED_VOCAB

    config = cli.check_model_files(TINY_CONFIG, UNCASED_VOCAB, 512)
    assert config.padded_vocab_size == 30528
    small = tmp_path / "small.json"
    small.write_text(TINY_CONFIG.read_text().replace('"vocab_size": 30522', '"vocab_size": 100'))
    with pytest.raises(UsageError) as info:
        cli.check_model_files(small, UNCASED_VOCAB)
    assert str(info.value) == (
        f"--vocab_file {UNCASED_VOCAB} has 30522 tokens, more than the 104 embedding rows of "
        f"--config_file {small} (vocab_size 100); use the vocabulary the model was made for"
    )
    with pytest.raises(UsageError, match="--max_seq_length 513 is longer than the model's 512"):
        cli.check_model_files(TINY_CONFIG, None, 513)
    with pytest.raises(UsageError, match=r"--config_file .*: is a folder"):
        cli.check_model_files(tmp_path)
    with pytest.raises(UsageError, match=r"--vocab_file .*nope: no such file"):
        cli.check_model_files(TINY_CONFIG, tmp_path / "nope")
    (tmp_path / "bad.json").write_text('{"vocab_size": 10, "hidden_size": NaN}')
    with pytest.raises(ConfigError, match=r"bad\.json"):
        cli.check_model_files(tmp_path / "bad.json")


def test_the_cli_layer_loads_without_torch():
    """The data-preparation CLIs parse and report errors through cli.py without loading torch."""
    import subprocess
    import sys

    from tests.support import REPO_ROOT

    code = "import cli, sys; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "False", result.stderr


def test_an_error_under_a_progress_bar_starts_a_line_of_its_own(capsys, monkeypatch):
    from tqdm import tqdm

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

    def body(args):
        for _ in tqdm(range(3), desc="work"):  # left open by the error, as a real loop's bar
            raise BertError("x.json: broken")

    assert run(body) == 1
    err = capsys.readouterr().err
    assert "work" in err and err.endswith("\nprog.py: error: x.json: broken\n")


def test_two_outputs_of_one_run_on_one_path_are_refused(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "log.json").write_text("")
    files = {"--output_dir's predictions.json": out / "predictions.json"}
    same = [
        (out / "predictions.json", None),  # the same name
        (f"{out}/./x/../predictions.json", None),  # another spelling of a missing file
        (tmp_path / "link" / "log.json", tmp_path / "real" / "log.json"),  # through a link
    ]
    for log, other in same:
        outputs = {**files, "--json-summary": log} if other is None else {"--a": other, "--b": log}
        with pytest.raises(UsageError, match=r"another output of this run") as refused:
            cli.check_distinct_outputs(outputs)
        assert "\n" not in str(refused.value) and str(log) in str(refused.value)
    with pytest.raises(UsageError, match=r"^--tensorboard .* is --json-summary "):
        cli.check_distinct_outputs({"--json-summary": out / "tb"}, {"--tensorboard": out / "tb"})
    cli.check_distinct_outputs(
        {**files, "--json-summary": out / "log.json", "--none": None, "--s3": "s3://b/k"},
        {"--tensorboard": out, "--s3_dir": "s3://b/k"},
    )  # different paths, nothing missing, remote ones skipped: no error
