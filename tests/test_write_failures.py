"""A write that fails part-way (full disk, file-size limit, I/O error), for every output of the
entry scripts: one `error:` line naming the file and the OS error, exit 1, no temporary file
left, the earlier output byte for byte as it was. A full disk is simulated in-process
(`tests.support.fill_disk`); the file-size limit is real (`ulimit -f`) in a few subprocesses."""

from __future__ import annotations

import resource
import subprocess
import sys

import h5py
import pytest

import create_pretraining_data
from tests.support import REPO_ROOT, UNCASED_VOCAB, fill_disk, one_error_line

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
    assert f"cannot write {out / 's.hdf5'}: No space left on device (ENOSPC)" in line, line
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
