"""A write that fails part-way (full disk, file-size limit, I/O error), for every output of the
entry scripts: one `error:` line naming the file and the OS error, exit 1, no temporary file
left, the earlier output byte for byte as it was. A full disk is simulated in-process
(`tests.support.fill_disk`); the file-size limit is real (`ulimit -f`) in a few subprocesses."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
import types

import h5py
import pytest

import create_pretraining_data
import run_glue
import run_squad
from checkpoint import save_nvidia_checkpoint
from fileio import WriteError
from finetuning import MODEL_FILES
from logger import MetricLogger, read_dllogger_file
from modeling import BertConfig, BertForQuestionAnswering
from tests.support import (
    REPO_ROOT,
    SAMPLE_MRPC,
    SAMPLE_SQUAD,
    TINY_CONFIG,
    UNCASED_VOCAB,
    fill_disk,
    one_error_line,
    pretrain_in_process,
    write_pretraining_log,
    write_random_shards,
)

SAMPLE_TEXT = REPO_ROOT / "data" / "sample" / "wikitext2_valid_sentences.txt"


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def error_line(capsys, status: int, code: int = 1) -> str:
    """The one `error:` line an in-process run printed, with its exit status checked."""
    err = capsys.readouterr().err
    assert status == code, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def limited_run(script: str, *args: str, kib: int) -> subprocess.CompletedProcess:
    """Run an entry script under a file-size limit of `kib` KiB (`ulimit -f`)."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kib * 1024, kib * 1024))

    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        preexec_fn=limit,
        timeout=300,
        check=False,
    )


# ------------------------------------------------------------------------------------ shards


def shard_args(text, *output: str) -> list[str]:
    return [
        "--input_file", str(text), *output, "--vocab_file", str(UNCASED_VOCAB),
        "--max_seq_length", "64", "--max_predictions_per_seq", "10", "--dupe_factor", "1",
        "--disable_progress_bar",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def small_text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text("".join(SAMPLE_TEXT.read_text().splitlines(keepends=True)[:400]))
    return path


@pytest.mark.parametrize("free", [0, 3000, 40_000])
def test_a_shard_on_a_full_disk(tmp_path, monkeypatch, capsys, small_text, free):
    out = tmp_path / "out"
    out.mkdir()
    (out / "s.hdf5").write_bytes(b"the previous shard")
    fill_disk(monkeypatch, out, free)
    status = create_pretraining_data.main(
        shard_args(small_text, "--output_file", str(out / "s.hdf5"))
    )
    line = error_line(capsys, status)
    # with no byte free, the lock file beside the output is what fails first
    assert str(out / "s.hdf5") in line and "No space left on device" in line, line
    assert listing(out) == ["s.hdf5"] and (out / "s.hdf5").read_bytes() == b"the previous shard"


def test_a_full_disk_keeps_the_shards_written_before(tmp_path, monkeypatch, capsys, small_text):
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("a.txt", "b.txt"):
        (texts / name).write_text(small_text.read_text())
    out = tmp_path / "out"
    assert (
        create_pretraining_data.main(
            shard_args(texts / "a.txt", "--output_file", str(out / "a.hdf5"))
        )
        == 0
    )
    size = (out / "a.hdf5").stat().st_size
    fill_disk(monkeypatch, out, size + size // 2)  # room for one shard, not two
    status = create_pretraining_data.main(shard_args(texts, "--output_dir", str(out)))
    line = error_line(capsys, status)
    assert f"cannot write {out / 'b.hdf5'}" in line and "ENOSPC" in line, line
    assert listing(out) == ["a.hdf5"]  # the lock released, the first shard complete
    with h5py.File(out / "a.hdf5") as shard:
        assert len(shard["input_ids"]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_shard_past_the_file_size_limit(tmp_path, small_text, processes):
    """`ulimit -f 16`: HDF5 used to crash the process (SIGSEGV) after the failed write."""
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("a.txt", "b.txt"):
        (texts / name).write_text(small_text.read_text() * 3)
    out = tmp_path / "out"
    output = ["--output_dir", str(out), "--processes", processes]
    result = limited_run("create_pretraining_data.py", *shard_args(texts, *output), kib=16)
    line = one_error_line(result)
    assert f"cannot write {out}/" in line and "File too large (EFBIG)" in line, line
    assert listing(out) == []


# --------------------------------------------------------------------------------------- logs


def test_a_log_on_a_full_disk_keeps_its_complete_lines(tmp_path, monkeypatch):
    log = tmp_path / "logs" / "log.json"
    MetricLogger(log).close()  # the units, from an earlier run
    before = log.read_bytes()
    disk = fill_disk(monkeypatch, tmp_path / "logs", free=len(before) + 500)
    metrics = MetricLogger(log)
    with pytest.raises(WriteError, match=rf"cannot write log {log}: No space left on device"):
        for step in range(100):
            metrics.log((0, step), {"loss": 1.0})
    assert disk["free"] == 0
    text = log.read_bytes()
    assert text.startswith(before) and text.endswith(b"\n")  # the cut-short line taken out
    assert all(line.startswith(b"DLLL {") for line in text.splitlines())
    assert len(read_dllogger_file(log)) == len(text.splitlines())
    metrics.close()  # after the failure, closing raises nothing more
    assert listing(tmp_path / "logs") == ["log.json"]


def test_tensorboard_events_on_a_full_disk(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    board = tmp_path / "tb"
    fill_disk(monkeypatch, tmp_path, free=300)
    with pytest.raises(WriteError, match=rf"--tensorboard {board}: cannot write its events: No s"):
        metrics = MetricLogger(None, tensorboard_dir=board)
        for step in range(2000):
            metrics.log((0, step), {"loss": float(step)}, verbose=False)
        metrics.close()


# ------------------------------------------------------------------------ fine-tuned outputs


def glue_args(pretrained, out, log, *flags: str) -> list[str]:
    return [
        "--task_name=mrpc", f"--data_dir={SAMPLE_MRPC}", f"--vocab_file={UNCASED_VOCAB}",
        f"--config_file={TINY_CONFIG}", "--do_lower_case", f"--init_checkpoint={pretrained}",
        "--train_batch_size=16", "--max_steps=1", f"--output_dir={out}", f"--json-summary={log}",
        *flags,
    ]  # fmt: skip


def test_fine_tuning_without_room_for_its_weights_is_refused_before_work(
    tmp_path, monkeypatch, capsys, pretrained
):
    disk = tmp_path / "disk"
    disk.mkdir()
    fill_disk(monkeypatch, disk, free=10_000_000)  # the tiny model's weights take 18.6 MB
    args = glue_args(pretrained, disk / "out", tmp_path / "log.json", "--do_train")
    line = error_line(capsys, run_glue.main(args))
    assert f"--output_dir {disk / 'out'}: 10.0 MB free, 18.6 MB needed for the fine-tuned " in line
    assert listing(disk) == [] and not (tmp_path / "log.json").exists()


@pytest.mark.slow  # an in-process run of the entry script
def test_a_failed_save_after_fine_tuning_says_the_weights_are_lost(
    tmp_path, monkeypatch, capsys, pretrained
):
    disk = tmp_path / "disk"
    disk.mkdir()
    fill_disk(monkeypatch, disk, free=1_000_000, reported=10**12)  # filled after the check
    args = glue_args(pretrained, disk, tmp_path / "log.json", "--do_train")
    line = error_line(capsys, run_glue.main(args))
    names = ", ".join(str(disk / name) for name in MODEL_FILES)
    assert f"cannot write {names}: No space left on device (ENOSPC)" in line, line
    assert line.endswith("the fine-tuned weights were NOT saved"), line
    assert listing(disk) == []


def test_glue_predictions_are_written_together_or_not_at_all(
    tmp_path, monkeypatch, capsys, pretrained
):
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "MRPC.tsv").write_text("the previous submission")
    fill_disk(monkeypatch, disk, free=600)  # the lock file fits, the submission does not
    args = glue_args(pretrained, disk, tmp_path / "log.json", "--do_predict")
    line = error_line(capsys, run_glue.main(args))
    names = f"{disk / 'MRPC.tsv'}, {disk / 'predictions.json'}"
    assert f"cannot write {names}: No space left on device (ENOSPC)" in line, line
    assert line.endswith("none of them was changed and no partial file was left"), line
    assert listing(disk) == ["MRPC.tsv"]
    assert (disk / "MRPC.tsv").read_text() == "the previous submission"


@pytest.mark.slow  # an in-process run of the entry script
def test_squad_predictions_are_written_together_or_not_at_all(
    tmp_path, monkeypatch, capsys, pretrained
):
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "predictions.json").write_text("{}")
    fill_disk(monkeypatch, disk, free=20_000)  # room for the predictions, not the n-best lists
    args = [
        f"--vocab_file={UNCASED_VOCAB}", f"--config_file={TINY_CONFIG}", "--do_lower_case",
        f"--init_checkpoint={pretrained}", "--do_predict", "--predict_batch_size=64",
        f"--predict_file={SAMPLE_SQUAD / 'v1.1' / 'dev-v1.1.json'}", "--skip_cache",
        f"--output_dir={disk}", f"--json-summary={tmp_path / 'log.json'}",
    ]  # fmt: skip
    line = error_line(capsys, run_squad.main(args))
    names = f"{disk / 'predictions.json'}, {disk / 'nbest_predictions.json'}"
    assert f"cannot write {names}: No space left on device (ENOSPC)" in line, line
    assert listing(disk) == ["predictions.json"]
    assert (disk / "predictions.json").read_text() == "{}"


# ------------------------------------------------------------------ plots, scores, benchmarks


def test_a_plot_on_a_full_disk_keeps_the_earlier_one(tmp_path, monkeypatch, capsys):
    from scripts import plot_loss

    write_pretraining_log(tmp_path / "log.json")
    disk = tmp_path / "plots"
    disk.mkdir()
    (disk / "loss.png").write_bytes(b"the previous plot")
    fill_disk(monkeypatch, disk, free=2000)
    status = plot_loss.main([str(tmp_path / "log.json"), "--output", str(disk / "loss.png")])
    line = error_line(capsys, status)
    assert f"cannot write {disk / 'loss.png'}: No space left on device (ENOSPC)" in line, line
    assert (
        listing(disk) == ["loss.png"] and (disk / "loss.png").read_bytes() == b"the previous plot"
    )


def test_squad_scores_on_a_full_disk(tmp_path, monkeypatch, capsys):
    import evaluate_squad

    dev = SAMPLE_SQUAD / "v1.1" / "dev-v1.1.json"
    first = json.loads(dev.read_text())["data"][0]["paragraphs"][0]["qas"][0]["id"]
    (tmp_path / "predictions.json").write_text(json.dumps({first: "an answer"}))
    disk = tmp_path / "disk"
    disk.mkdir()
    fill_disk(monkeypatch, disk, free=10)
    args = [str(dev), str(tmp_path / "predictions.json"), "--out-file", str(disk / "eval.json")]
    line = error_line(capsys, evaluate_squad.main(args))
    assert f"cannot write {disk / 'eval.json'}: No space left on device" in line, line
    assert listing(disk) == []


@pytest.mark.slow
def test_a_benchmark_log_that_cannot_be_written_stops_the_launcher(tmp_path, monkeypatch):
    from benchmarks import stability

    fill_disk(monkeypatch, tmp_path, free=1000)
    # A launcher that Ctrl-C stops at once, also when this session runs with SIGINT ignored (a
    # background job), which its children would inherit: stopping would then wait 30 s to kill.
    endless = (
        "import itertools, signal\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "for i in itertools.count(): print('line', i, flush=True)"
    )
    log = tmp_path / "launcher.log"
    with pytest.raises(WriteError, match=rf"cannot write {log}: No space .* launcher was stopped"):
        stability.stream([sys.executable, "-c", endless], log, tmp_path)
    assert log.read_bytes().startswith(b"line 0\n")  # the lines before, as a record of the run


@pytest.mark.slow  # exports a tiny model to ONNX
def test_an_onnx_model_without_room_is_refused_before_the_comparison(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    import export_onnx

    model = BertForQuestionAnswering(BertConfig.from_json_file(TINY_CONFIG))
    save_nvidia_checkpoint(tmp_path / "qa.pt", model.state_dict(), model.config)
    disk = tmp_path / "disk"
    disk.mkdir()
    fill_disk(monkeypatch, disk, free=1_000_000)
    monkeypatch.setattr(export_onnx, "compare", None)  # never reached
    args = [
        "--init_checkpoint", str(tmp_path / "qa.pt"), "--config_file", str(TINY_CONFIG),
        "--task", "qa", "--output", str(disk / "bert.onnx"),
    ]  # fmt: skip
    line = error_line(capsys, export_onnx.main(args))
    assert f"--output {disk / 'bert.onnx'}: 1.0 MB free, " in line, line
    assert line.endswith("nothing was written") and listing(disk) == []


# ------------------------------------------------------------------------------ pre-training


def test_a_pretraining_log_on_a_full_disk_ends_the_run_in_one_line(tmp_path, monkeypatch, capsys):
    shards = tmp_path / "shards"
    write_random_shards(shards)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**json.loads(TINY_CONFIG.read_text()), "vocab_size": 3072}))
    logs = tmp_path / "logs"
    logs.mkdir()
    fill_disk(monkeypatch, logs, free=6000)  # the parameters fit, the training steps do not
    status = pretrain_in_process(
        shards, tmp_path / "out", config, logs / "log.json",
        "--train_batch_size=8", "--max_steps=50", "--log_freq=1", "--skip_checkpoint",
    )  # fmt: skip
    line = error_line(capsys, status)
    assert f"cannot write log {logs / 'log.json'}: No space left on device" in line, line
    text = (logs / "log.json").read_bytes()
    assert text.endswith(b"\n") and len(read_dllogger_file(logs / "log.json")) > 3


@pytest.mark.slow  # an in-process run of the entry script
def test_a_squad_feature_cache_on_a_full_disk_is_skipped_with_a_warning(
    tmp_path, monkeypatch, caplog, pretrained
):
    cache = tmp_path / "cache"
    cache.mkdir()
    fill_disk(monkeypatch, cache, free=1000)
    args = [
        f"--vocab_file={UNCASED_VOCAB}", f"--config_file={TINY_CONFIG}", "--do_lower_case",
        f"--init_checkpoint={pretrained}", "--do_predict", "--predict_batch_size=64",
        f"--predict_file={SAMPLE_SQUAD / 'v1.1' / 'dev-v1.1.json'}", f"--cache_dir={cache}",
        f"--output_dir={tmp_path / 'out'}", f"--json-summary={tmp_path / 'log.json'}",
    ]  # fmt: skip
    assert run_squad.main(args) == 0  # the cache only saves later runs time
    assert "feature cache not saved: cannot write" in caplog.text
    assert listing(cache) == [] and (tmp_path / "out" / "predictions.json").is_file()


@pytest.mark.slow  # a subprocess, as the limit is per process
def test_a_checkpoint_past_the_file_size_limit(tmp_path, pretrained):
    out = tmp_path / "out"
    args = ["--input", str(pretrained), "--output", str(out / "model.pt")]
    result = limited_run("convert_checkpoint.py", *args, kib=64)  # the tiny model: 18 MB
    line = one_error_line(result)
    assert f"cannot write {out / 'model.pt'}: File too large (EFBIG)" in line, line
    assert not out.exists()  # nor the folder made for it


def test_dlloggers_own_writer_failing_is_one_line(tmp_path, monkeypatch):
    """Where the real dllogger is installed it writes the JSON file itself (a stand-in here)."""

    class Backend:
        def __init__(self, *args, **kwargs):
            pass

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    stand_in = types.SimpleNamespace(
        StdOutBackend=Backend,
        JSONStreamBackend=Backend,
        Verbosity=types.SimpleNamespace(VERBOSE=1),
        init=lambda backends: None,
        metadata=lambda *args: None,
        log=full,
        flush=lambda: None,
    )
    monkeypatch.setitem(sys.modules, "dllogger", stand_in)
    metrics = MetricLogger(tmp_path / "log.json", use_dllogger=True)
    match = rf"cannot write log {tmp_path / 'log.json'} or stdout: No space left on device"
    with pytest.raises(WriteError, match=match):
        metrics.log((0, 1), {"loss": 1.0})
