"""fileio.py: atomic files and folders are complete or absent, never half-written, and leave no
temporary entry behind, also when the writer raises or is interrupted (KeyboardInterrupt)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import fileio
from tests.support import fill_disk


def entries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_text_and_json(tmp_path):
    fileio.atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    assert (tmp_path / "sub" / "a.txt").read_bytes() == "héllo\n".encode()
    fileio.atomic_write_json(tmp_path / "b.json", {"x": [1, 2]})
    assert json.loads((tmp_path / "b.json").read_text()) == {"x": [1, 2]}
    assert entries(tmp_path) == ["b.json", "sub"] and entries(tmp_path / "sub") == ["a.txt"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failing_file_writer_leaves_the_target_untouched(tmp_path, error):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def write(handle):
        handle.write(b"half of the new")
        raise error

    # atomic_write's function only writes, so its OS errors are the write's
    expected = fileio.WriteError if isinstance(error, OSError) else type(error)
    with pytest.raises(expected):
        fileio.atomic_write(target, write)
    assert target.read_bytes() == b"old" and entries(tmp_path) == ["out.bin"]
    with pytest.raises(type(error)), fileio.atomic_path(tmp_path / "new.h5") as tmp:
        tmp.write_bytes(b"half")
        raise error
    assert entries(tmp_path) == ["out.bin"]


def test_a_failed_write_removes_the_folders_it_made(tmp_path):
    (tmp_path / "kept").mkdir()

    def write(handle):
        raise OSError("disk full")

    with pytest.raises(fileio.WriteError):
        fileio.atomic_write(tmp_path / "kept" / "new" / "deeper" / "out.bin", write)
    with pytest.raises(KeyboardInterrupt), fileio.atomic_folder(tmp_path / "a" / "b" / "c"):
        raise KeyboardInterrupt
    assert entries(tmp_path) == ["kept"] and entries(tmp_path / "kept") == []
    fileio.probe_writable(tmp_path / "kept")  # a write test that leaves nothing either
    assert entries(tmp_path / "kept") == []


def test_atomic_path_renames_and_syncs(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    with fileio.atomic_path(tmp_path / "shard.hdf5") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".shard.hdf5.")
        tmp.write_bytes(b"data")
        assert not (tmp_path / "shard.hdf5").exists()
        assert not synced
    assert (tmp_path / "shard.hdf5").read_bytes() == b"data"
    assert len(synced) == 2  # the file before the rename, the folder after it
    assert entries(tmp_path) == ["shard.hdf5"]


def test_files_get_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    fileio.atomic_write_text(tmp_path / "atomic", "")
    assert (tmp_path / "atomic").stat().st_mode == plain.stat().st_mode


def test_atomic_folder(tmp_path):
    target = tmp_path / "model"
    with fileio.atomic_folder(target) as tmp:
        assert tmp.parent == tmp_path and entries(tmp) == []
        (tmp / "config.json").write_text("{}")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
        assert not target.exists()
    assert entries(target) == ["config.json", "sub"] and entries(tmp_path) == ["model"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failing_folder_writer_leaves_the_target_untouched(tmp_path, error):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(type(error)), fileio.atomic_folder(target, replace=True) as tmp:
        (tmp / "new.txt").write_text("half")
        raise error
    assert entries(target) == ["old.txt"] and entries(tmp_path) == ["out"]


def test_atomic_folder_replaces_only_when_asked(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with fileio.atomic_folder(target) as tmp:  # an empty folder is simply replaced
        (tmp / "a.txt").write_text("a")
    assert entries(target) == ["a.txt"]
    with pytest.raises(FileExistsError), fileio.atomic_folder(target):
        pytest.fail("the block must not run")
    with fileio.atomic_folder(target, replace=True) as tmp:
        (tmp / "b.txt").write_text("b")
    assert entries(target) == ["b.txt"] and entries(tmp_path) == ["out"]


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / ".out.0123abcd.tmp").mkdir()
    (tmp_path / ".out.0123abcd.tmp" / "half.txt").write_text("half")
    (tmp_path / ".out.89abcdef.tmp").write_text("half")
    keep = [".out.hdf5.0123abcd.tmp", ".out.partial", "out", ".other.0123abcd.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    removed = fileio.remove_stale_temporaries(tmp_path / "out")
    assert sorted(p.name for p in removed) == [".out.0123abcd.tmp", ".out.89abcdef.tmp"]
    assert entries(tmp_path) == sorted(keep)


def test_remove_stale_temporaries_in_clears_every_target_of_a_folder(tmp_path):
    (tmp_path / ".ckpt_5.pt.0123abcd.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".pytorch_model.bin.89abcdef.tmp").mkdir()
    keep = ["ckpt_4.pt", ".ckpt_5.pt.0123abcd.tmp.bak", ".x.0123ABCD.tmp", ".hidden", "a.tmp"]
    for name in keep:
        (tmp_path / name).write_text("keep")
    removed = fileio.remove_stale_temporaries_in(tmp_path)
    names = [".ckpt_5.pt.0123abcd.tmp", ".pytorch_model.bin.89abcdef.tmp"]
    assert [p.name for p in removed] == names
    assert entries(tmp_path) == sorted(keep)
    assert fileio.remove_stale_temporaries_in(tmp_path / "missing") == []
    (tmp_path / ".a.0123abcd.tmp").write_text("in use")
    (tmp_path / ".b.0123abcd.tmp").write_text("stale")
    removed = fileio.remove_stale_temporaries_in(tmp_path, keep=lambda entry, name: name == "a")
    assert [p.name for p in removed] == [".b.0123abcd.tmp"]
    assert entries(tmp_path) == sorted([*keep, ".a.0123abcd.tmp"])


def test_create_new_file_never_replaces_and_leaves_no_temporary(tmp_path):
    lock = tmp_path / "run.lock"
    assert fileio.create_new_file(lock, b"first")
    assert not fileio.create_new_file(lock, b"second")
    assert lock.read_bytes() == b"first" and entries(tmp_path) == ["run.lock"]


def test_create_new_file_without_hard_links(tmp_path, monkeypatch):
    """File systems without hard links (some FUSE and SMB mounts) get O_CREAT | O_EXCL."""

    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert fileio.create_new_file(tmp_path / "run.lock", b"first")
    assert not fileio.create_new_file(tmp_path / "run.lock", b"second")
    assert (tmp_path / "run.lock").read_bytes() == b"first" and entries(tmp_path) == ["run.lock"]


def test_os_error_in_finds_the_cause_a_library_wrapped():
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    try:
        try:
            raise disk_full
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos")  # noqa: B904
    except RuntimeError as err:
        wrapped = err  # as torch.save reports a failed write of its file handle
    assert fileio.os_error_in(wrapped) is disk_full
    assert fileio.os_error_in(RuntimeError("no cause")) is None
    assert fileio.os_error_in(disk_full) is disk_full


def test_only_regular_files_and_folders_are_read(tmp_path):
    """A named pipe, a device or a socket is refused before it is opened (a pipe would block
    its reader, a device never end); files, folders and missing paths are the reader's to name."""
    import socket

    from fileio import NotRegularFile, check_regular_file

    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "sock"))
        for path, kind in (
            (tmp_path / "pipe", "a named pipe"),
            (Path("/dev/zero"), "a device"),
            (tmp_path / "sock", "a socket"),
        ):
            with pytest.raises(NotRegularFile, match=f"{path}: is {kind}, not a regular file"):
                check_regular_file(path)
            with pytest.raises(NotRegularFile):
                fileio.sha256_file(path)
    (tmp_path / "file").write_text("x")
    for fine in (tmp_path / "file", tmp_path, tmp_path / "missing"):
        check_regular_file(fine)


def test_related_files_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    a, b = tmp_path / "predictions.json", tmp_path / "nbest.json"
    a.write_bytes(b"old a")
    fill_disk(monkeypatch, tmp_path, free=len(b"new a") + 2)  # room for the first file only
    with pytest.raises(fileio.WriteError) as refused:
        fileio.atomic_write_files({a: b"new a", b: b"new b"})
    assert str(refused.value) == (
        f"cannot write {a}, {b}: No space left on device (ENOSPC); none of them was changed and "
        "no partial file was left"
    )
    assert entries(tmp_path) == ["predictions.json"] and a.read_bytes() == b"old a"
    monkeypatch.undo()
    fileio.atomic_write_files({a: b"new a", b: b"new b"})
    assert a.read_bytes() == b"new a" and b.read_bytes() == b"new b"


def test_a_write_error_is_one_line_whatever_the_os_error_says():
    hdf5 = OSError(errno.EFBIG, "file write failed: time = Sun\n, errno = 27")
    assert fileio.describe_os_error(hdf5) == "file write failed: time = Sun , errno = 27 (EFBIG)"
    assert fileio.describe_os_error(OSError("disk full")) == "disk full"


def test_a_folder_that_cannot_be_completed_is_a_write_error(tmp_path, monkeypatch):
    fill_disk(monkeypatch, tmp_path, free=10)
    refused = pytest.raises(fileio.WriteError, match=f"cannot write {tmp_path / 'hf'}: No space")
    with refused, fileio.atomic_folder(tmp_path / "hf") as folder:
        (folder / "config.json").write_text("more than ten bytes")
    assert entries(tmp_path) == []
    with pytest.raises(ValueError, match="not a write"), fileio.atomic_folder(tmp_path / "hf"):
        raise ValueError("not a write")  # other errors pass unchanged


def test_check_room_compares_the_free_bytes_of_the_nearest_folder(tmp_path, monkeypatch):
    fill_disk(monkeypatch, tmp_path, free=5_000_000)
    target = tmp_path / "not" / "yet" / "model.bin"
    fileio.check_room(target, 5_000_000, "--output x", "the model", "advice")
    with pytest.raises(fileio.WriteError) as refused:
        fileio.check_room(target, 5_000_001, "--output x", "the model", "free some space")
    assert str(refused.value) == (
        "--output x: 5.0 MB free, 5.0 MB needed for the model; free some space"
    )
    assert fileio.free_bytes(tmp_path / "not") == 5_000_000


# JSON whose syntax is fine but which Python's json cannot read: a number beyond the
# integer-string limit (a bare ValueError) and nesting beyond the recursion limit (a
# RecursionError, no ValueError at all); plus the syntax and encoding errors they join.
HOSTILE_JSON = {
    "huge_int": b'{"vocab_size": ' + b"9" * 5000 + b"}",
    "huge_negative": b"[-" + b"1" * 4400 + b"]",
    "deep_array": b"[" * 100_000 + b"]" * 100_000,
    "deep_object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "syntax": b'{"a": 1,',
    "latin1": '{"a": "caf\xe9"}'.encode("latin-1"),
}


@pytest.mark.parametrize("name", list(HOSTILE_JSON))
def test_read_json_turns_every_failure_into_one_line_naming_the_file(tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_bytes(HOSTILE_JSON[name])
    with pytest.raises(fileio.JsonError) as raised:
        fileio.read_json(path, "test file")
    message = str(raised.value)
    assert message.startswith(f"test file {path}: ") and "\n" not in message
    assert len(message) < 300  # the digits are not repeated back
    with pytest.raises(fileio.JsonError, match=r"^where: "):
        fileio.parse_json(HOSTILE_JSON[name], "where")
    assert isinstance(raised.value, ValueError)  # callers that caught ValueError still do


def test_read_json_reads_what_json_reads(tmp_path):
    value = {"a": [1, 2.5, None, True, "x"], "b": {"c": 10**4000 // 10**3999}}
    (tmp_path / "ok.json").write_text(json.dumps(value))
    assert fileio.read_json(tmp_path / "ok.json") == value
    assert fileio.parse_json(b'{"n": NaN}', "log")["n"] != 0  # dllogger's bare NaN


@pytest.mark.parametrize("name", ["huge_int", "deep_array"])
def test_every_json_reader_gives_one_line_naming_the_file(tmp_path, name, capsys):
    import checkpoint
    import evaluate_squad
    import logger
    import output_lock
    import squad
    from modeling import BertConfig, ConfigError

    bad = tmp_path / "bad.json"
    bad.write_bytes(HOSTILE_JSON[name])
    with pytest.raises(ConfigError, match=f"^{bad}: cannot be read as JSON"):
        BertConfig.from_json_file(bad)
    with pytest.raises(squad.SquadError, match=f"^SQuAD file {bad}: cannot be read as JSON"):
        squad.load_squad_json(bad)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_bytes(HOSTILE_JSON[name])
    (hf / "model.safetensors").write_bytes(b"")
    with pytest.raises(checkpoint.CheckpointError, match=r"config\.json: cannot be read as JSON"):
        checkpoint.read_weights(hf)
    good = tmp_path / "squad.json"
    question = {"id": "q", "question": "?", "answers": [{"text": "a", "answer_start": 0}]}
    data = [{"title": "t", "paragraphs": [{"context": "a b", "qas": [question]}]}]
    good.write_text(json.dumps({"version": "1.1", "data": data}))
    assert evaluate_squad.main([str(good), str(bad)]) == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert f"predictions file {bad}: cannot be read as JSON" in line
    # Readers that skip what they cannot use skip these too, without a traceback.
    log = tmp_path / "log.json"
    log.write_bytes(b'DLLL {"a": 1}\nDLLL ' + HOSTILE_JSON[name] + b"\n")
    assert logger.read_dllogger_file(log) == [{"a": 1}]
    assert output_lock.Holder.parse(HOSTILE_JSON[name]) is None
