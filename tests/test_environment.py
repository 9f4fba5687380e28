"""environment.py: the report's keys and values on this CPU, the GPU queries with fake answers
(and against the real device on a GPU), the SDPA kernel against the one a real attention call
runs, the commit read from hand-built `.git` folders (and from git itself), `--print_env` in
every entry script, and the record that `runtime.setup_run` logs."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess

import pytest
import torch
from torch.nn.attention import SDPBackend
from torch.profiler import profile

import environment
import runtime
from environment import KEYS, RunChoices
from logger import read_dllogger_file
from modeling import BertSelfAttention
from tests.support import NEEDS_CUDA, REPO_ROOT, TINY_CONFIG, tiny_config

CPU = torch.device("cpu")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def test_the_report_on_this_cpu_has_every_key_and_real_versions():
    report = environment.collect(RunChoices(CPU, "fp32", True, config=tiny_config()))
    assert tuple(report) == KEYS
    assert report["python_version"] == platform.python_version()
    assert report["torch_version"] == torch.__version__
    assert report["cuda_version"] == (torch.version.cuda or "none")
    assert report["device"] == "cpu" and report["device_capability"] == "none"
    assert report["world_size"] == 1 and report["dist_backend"] == "none"
    assert report["precision"] == "fp32" and report["tf32"] is True
    assert report["attention"] == "sdpa" and report["torch_threads"] == torch.get_num_threads()
    assert isinstance(report["device_names"], list) and report["device_names"][0]
    json.dumps(report)  # the dllogger record takes it as it is


def test_format_lines_with_gpu_like_values():
    report = {
        "torch_version": "2.5.0a0+e000cf0ad9.nv24.10",
        "device_names": ["NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"],
        "tf32": False,
        "nccl_version": "unavailable",
        "world_size": 8,
    }
    assert environment.format_lines(report) == [
        "torch_version: 2.5.0a0+e000cf0ad9.nv24.10",
        "device_names: NVIDIA H100 80GB HBM3, NVIDIA H100 80GB HBM3",
        "tf32: False",
        "nccl_version: unavailable",
        "world_size: 8",
    ]


def test_gpu_queries_with_fake_answers(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H100 #{i}")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    gpu = torch.device("cuda", 1)
    assert environment.device_names(gpu) == ["NVIDIA H100 #0", "NVIDIA H100 #1"]
    assert environment.device_capability(gpu) == "9.0"
    monkeypatch.setattr(torch.distributed, "is_nccl_available", lambda: True)
    monkeypatch.setattr(torch.cuda.nccl, "version", lambda: (2, 21, 5))
    assert environment.nccl_version() == "2.21.5"
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    assert environment.cudnn_version() == "90100"


def test_a_failing_query_is_unavailable_and_the_report_still_comes(monkeypatch):
    def broken(*args):
        raise RuntimeError("driver mismatch")

    monkeypatch.setattr(torch.backends.cudnn, "is_available", broken)
    monkeypatch.setattr(torch, "_fused_sdp_choice", broken)
    report = environment.collect(RunChoices(CPU, "fp32", True))
    assert report["cudnn_version"] == "unavailable"
    assert report["sdpa_kernel"] == "unavailable"
    assert report["attention"] == "unknown"  # no config given


def test_optimizer_is_the_one_the_scripts_build():
    pretraining = argparse.Namespace(optimizer_impl="auto")
    assert environment.optimizer_of(pretraining, CPU) == "LAMB (torch multi-tensor)"
    compiled = argparse.Namespace(optimizer_impl="compiled")
    assert environment.optimizer_of(compiled, CPU) == "LAMB (compiled step)"
    apex = environment.optimizer_of(argparse.Namespace(optimizer_impl="apex"), CPU)
    assert apex.startswith("unavailable (--optimizer_impl apex")
    finetuning = argparse.Namespace()
    assert environment.optimizer_of(finetuning, CPU) == "AdamW (foreach)"
    assert environment.optimizer_of(finetuning, torch.device("cuda", 0)) == "AdamW (fused)"


# ----------------------------------------------------------------------------- SDPA


def kernel_run_by(attention: BertSelfAttention, dtype: torch.dtype, device=CPU) -> str:
    """The SDPA kernel a real call of the model's attention runs, read from the profiler."""
    hidden = torch.randn(2, 16, attention.num_heads * attention.head_size, device=device)
    mask = torch.zeros(2, 1, 1, 16, device=device)
    mask[1, ..., 10:] = -10000.0  # a padded row, as every batch of the scripts has a mask
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    with profile() as trace, autocast, torch.no_grad():
        attention.to(device)(hidden, mask)
    names = {e.name for e in trace.events() if e.name.startswith("aten::_scaled_dot_product_")}
    assert len(names) == 1, names
    name = names.pop().removeprefix("aten::_scaled_dot_product_").removesuffix("_for_cpu")
    return "math" if name == "attention_math" else name


@pytest.mark.parametrize(
    "training, precision", [(False, "fp32"), (True, "fp32"), (False, "bf16"), (True, "bf16")]
)
def test_the_sdpa_kernel_is_the_one_the_attention_runs(training, precision):
    config = tiny_config()
    attention = BertSelfAttention(config).train(training)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    choices = RunChoices(CPU, precision, True, config=config, training=training)
    assert environment.sdpa_kernel(choices) == kernel_run_by(attention, dtype)


def test_sdpa_report_follows_torch_switches_and_the_config():
    choices = RunChoices(CPU, "fp32", True, config=tiny_config(), training=False)
    with torch.nn.attention.sdpa_kernel([SDPBackend.MATH]):
        assert environment.sdpa_backends(CPU) == ["math"]
        assert environment.sdpa_kernel(choices) == "math"
    eager_config = tiny_config(attention_impl="eager")
    eager = environment.collect(RunChoices(CPU, "fp32", True, config=eager_config))
    assert (eager["attention"], eager["sdpa_backends"], eager["sdpa_kernel"]) == (
        "eager",
        "unused",
        "unused",
    )


# ----------------------------------------------------------------------------- git


def make_repo(root, head: str, refs: dict[str, str] | None = None, packed: str | None = None):
    git = root / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text(head + "\n")
    for name, commit in (refs or {}).items():
        (git / name).parent.mkdir(parents=True, exist_ok=True)
        (git / name).write_text(commit + "\n")
    if packed is not None:
        (git / "packed-refs").write_text(packed)
    return git


def test_git_commit_from_loose_packed_and_detached_heads(tmp_path):
    loose = tmp_path / "loose"
    make_repo(loose, "ref: refs/heads/main", {"refs/heads/main": COMMIT})
    assert environment.git_commit(loose) == COMMIT
    packed = tmp_path / "packed"
    lines = f"# pack-refs with: peeled fully-peeled sorted\n{OTHER} refs/heads/x\n"
    make_repo(packed, "ref: refs/heads/main", packed=lines + f"{COMMIT} refs/heads/main\n")
    assert environment.git_commit(packed) == COMMIT
    detached = tmp_path / "detached"
    make_repo(detached, COMMIT)
    assert environment.git_commit(detached) == COMMIT


def test_git_commit_of_a_worktree(tmp_path):
    main = make_repo(tmp_path / "main", "ref: refs/heads/main", {"refs/heads/wt": OTHER})
    own = main / "worktrees" / "wt"
    own.mkdir(parents=True)
    (own / "HEAD").write_text("ref: refs/heads/wt\n")
    (own / "commondir").write_text("../..\n")
    (tmp_path / "wt").mkdir()
    (tmp_path / "wt" / ".git").write_text(f"gitdir: {own}\n")
    assert environment.git_commit(tmp_path / "wt") == OTHER


def test_git_commit_is_unknown_rather_than_wrong(tmp_path):
    assert environment.git_commit(tmp_path) == "unknown"  # not a checkout
    (tmp_path / "secret").write_text(COMMIT)
    outside = tmp_path / "outside"
    make_repo(outside, "ref: refs/../../secret")  # a ref leaving refs/ is not followed
    assert environment.git_commit(outside) == "unknown"
    garbage = tmp_path / "garbage"
    make_repo(garbage, "ref: refs/heads/main", {"refs/heads/main": "password=hunter2"})
    assert environment.git_commit(garbage) == "unknown"  # only a commit id is ever returned
    missing = tmp_path / "missing"
    make_repo(missing, "ref: refs/heads/gone")
    assert environment.git_commit(missing) == "unknown"
    (tmp_path / "file" / ".git").parent.mkdir()
    (tmp_path / "file" / ".git").write_text("not a gitdir line")
    assert environment.git_commit(tmp_path / "file") == "unknown"


def test_git_commit_agrees_with_git():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    result = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        pytest.skip("the repository is not a git checkout")
    assert environment.git_commit(REPO_ROOT) == result.stdout.strip()


# ----------------------------------------------------------------------------- --print_env


def printed(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


@pytest.mark.parametrize("script", ["run_pretraining", "run_squad", "run_glue", "inference"])
def test_print_env_needs_no_required_flag(script, capsys, monkeypatch, tmp_path):
    module = __import__(script)
    monkeypatch.chdir(tmp_path)  # nothing may be written, not even the default results/ log
    assert module.main(["--print_env"]) == 0
    report = printed(capsys.readouterr().out)
    assert tuple(report) == KEYS
    assert report["torch_version"] == torch.__version__
    assert report["git_commit"] == environment.git_commit()
    assert list(tmp_path.iterdir()) == []


def test_print_env_shows_the_run_the_other_flags_describe(capsys):
    import run_pretraining

    flags = ["--print-env", "--bf16", f"--config_file={TINY_CONFIG}", "--optimizer_impl=compiled"]
    assert run_pretraining.main([*flags, "--compile", "--no_cuda"]) == 0
    report = printed(capsys.readouterr().out)
    assert report["precision"] == "bf16" and report["device"] == "cpu"
    assert report["optimizer"] == "LAMB (compiled step)" and report["compile"] == "inductor"
    assert report["attention"] == "sdpa"


def test_print_env_refuses_what_the_run_would_refuse(capsys):
    import inference
    import run_glue

    assert run_glue.main(["--print_env", "--fp16", "--bf16"]) == 2
    assert capsys.readouterr().err.startswith("run_glue.py: error: conflicting precision flags")
    assert run_glue.main(["--print_env", "--seed=x"]) == 2  # bad values are still bad
    if not torch.cuda.is_available():
        assert inference.main(["--print_env", "--fp16"]) == 2
        assert "--fp16 needs a CUDA GPU" in capsys.readouterr().err


# ----------------------------------------------------------------------------- setup_run


def test_setup_run_logs_the_report_once_in_the_json_log(tmp_path, caplog, capsys):
    import run_glue

    log = tmp_path / "log.json"
    flags = ["--no_cuda", f"--config_file={TINY_CONFIG}", f"--json-summary={log}"]
    names = ["--output_dir=o", "--vocab_file=v", "--data_dir=d", "--task_name=mrpc"]
    args = run_glue.parse_arguments([*flags, *names])  # nothing is read: setup_run only
    with caplog.at_level(logging.INFO, logger="bert"):
        run = runtime.setup_run(args, init_loss_scale=2**16)
    run.metrics.close()
    records = [e for e in read_dllogger_file(log) if e.get("type") == "LOG"]
    assert len(records) == 1 and records[0]["step"] == "PARAMETER"
    data = records[0]["data"]
    assert tuple(data) == KEYS and data["torch_version"] == torch.__version__
    assert data["device"] == "cpu" and data["optimizer"] == "AdamW (foreach)"
    assert data["precision"] == "fp32" and data["attention"] == "sdpa"
    assert f"environment: torch_version: {torch.__version__}" in caplog.messages
    assert "torch_version" not in capsys.readouterr().out  # the log lines say it already


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA)
@pytest.mark.parametrize("training", [True, False])
def test_the_report_on_this_gpu(training):
    gpu = torch.device("cuda", torch.cuda.current_device())
    config = tiny_config()
    choices = RunChoices(gpu, "bf16", True, config=config, training=training)
    report = environment.collect(choices)
    assert report["cuda_version"] == torch.version.cuda
    assert report["cudnn_version"] == str(torch.backends.cudnn.version())
    assert report["nccl_version"] not in ("none", "unavailable")
    count = torch.cuda.device_count()
    assert report["device_names"] == [torch.cuda.get_device_name(i) for i in range(count)]
    assert report["device_capability"] == "{}.{}".format(*torch.cuda.get_device_capability(gpu))
    assert "math" in report["sdpa_backends"]
    attention = BertSelfAttention(config).train(training)
    assert report["sdpa_kernel"] == kernel_run_by(attention, torch.bfloat16, gpu)
