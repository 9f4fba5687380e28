"""storage.py and the s3:// paths of checkpoint.py and run_pretraining.py, against a real
S3-compatible server (moto's, on localhost): cached round trips, weights from an object and from
a Hugging Face prefix, clear errors, and pre-training that saves to, and resumes from, a bucket."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import types
import uuid
from pathlib import Path

import boto3
import moto.server as moto_server
import pytest
import torch

import output_lock
import pretraining_checkpoints
import storage
from checkpoint import (
    VOCAB_KEYS,
    CheckpointError,
    hf_state_dict,
    load_model_weights,
    read_weights,
    save_hf_folder,
    save_nvidia_checkpoint,
    torch_load,
)
from logger import read_dllogger_file
from modeling import BertForPreTraining
from tests.support import TINY_CONFIG, pretrain_in_process, tiny_config, write_random_shards


@pytest.fixture(scope="module")
def endpoint():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, tmp_path, monkeypatch):
    """A client and a fresh bucket on the module's server; the cache in tmp_path."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_ENDPOINT_URL": endpoint,
        "BERT_S3_CACHE": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return types.SimpleNamespace(client=client, bucket=bucket, url=f"s3://{bucket}")


def keys(s3, prefix: str = "") -> list[str]:
    listing = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def put_file(local, url: str) -> None:
    """Upload a local file with boto3 itself, as another tool would have put it there."""
    bucket, key = storage.split_url(url)
    client = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"])
    client.upload_file(str(local), bucket, key)


def upload_folder(folder, url: str) -> None:
    for path in sorted(folder.iterdir()):
        put_file(path, f"{url}/{path.name}")


# ------------------------------------------------------------------------------- storage.py


def test_round_trip_is_cached_until_the_object_changes(s3, tmp_path):
    local = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.arange(1000.0)}}, local)
    url = f"{s3.url}/run/ckpt.pt"
    put_file(local, url)
    copy = storage.fetch(url)
    assert copy.read_bytes() == local.read_bytes()
    before = copy.stat()
    again = storage.fetch(url)  # same size and ETag: the cached copy, not a new download
    assert again == copy and (again.stat().st_ino, again.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    )
    s3.client.put_object(Bucket=s3.bucket, Key="run/ckpt.pt", Body=b"x" * before.st_size)
    assert storage.fetch(url).read_bytes() == b"x" * before.st_size  # same size, new ETag
    copy.write_bytes(b"y" * before.st_size)  # a cache tampered with (or half-copied) by hand
    assert storage.fetch(url).read_bytes() == b"x" * before.st_size
    copy.write_bytes(b"short")
    assert storage.fetch(url).read_bytes() == b"x" * before.st_size
    assert sorted(p.name for p in (tmp_path / "cache" / "partial").iterdir()) == []


def test_uploads_leave_no_scratch_files_and_delete_forgets_the_copy(s3, tmp_path):
    url = f"{s3.url}/a/b.bin"
    storage.upload(url, lambda handle: handle.write(b"payload"))
    assert keys(s3) == ["a/b.bin"]
    assert storage.fetch(url).read_bytes() == b"payload"
    assert storage.list_keys(f"{s3.url}/a/") == ["a/b.bin"]
    storage.delete(url)
    assert keys(s3) == [] and not (tmp_path / "cache" / "objects" / s3.bucket / "a/b.bin").exists()

    def crash(handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.upload(url, crash)
    assert keys(s3) == []  # nothing half-written under the name
    assert list((tmp_path / "cache" / "partial").iterdir()) == []
    with pytest.raises(FileNotFoundError, match=f"{url}"):
        storage.fetch(url)


def test_an_upload_in_progress_has_no_name_a_kill_could_leave(s3, tmp_path):
    """The scratch copy of an upload is nameless while written (POSIX), so SIGKILL can leave no
    checkpoint-sized file in the cache."""
    seen = []

    def write(handle):
        seen.extend((tmp_path / "cache" / "partial").iterdir())
        handle.write(b"x")

    storage.upload(f"{s3.url}/a/b.bin", write)
    assert seen == [] and keys(s3) == ["a/b.bin"]


def test_small_objects_conditional_put_and_get(s3):
    url = f"{s3.url}/run/.lock"
    assert storage.get_bytes(url) is None
    assert storage.put_bytes(url, b"first", only_if_absent=True)
    assert not storage.put_bytes(url, b"second", only_if_absent=True)  # S3 decides atomically
    data, modified = storage.get_bytes(url)
    assert data == b"first" and abs(modified - time.time()) < 300
    storage.put_bytes(url, b"third")
    assert storage.get_bytes(url)[0] == b"third"


def test_unfinished_multipart_uploads_of_the_folder_are_aborted(s3):
    for key in ("run/ckpt_5.pt", "run/deeper/ckpt_1.pt", "other/ckpt_1.pt"):
        s3.client.create_multipart_upload(Bucket=s3.bucket, Key=key)
    assert storage.abort_incomplete_uploads(f"{s3.url}/run") == ["run/ckpt_5.pt"]
    left = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert sorted(u["Key"] for u in left) == ["other/ckpt_1.pt", "run/deeper/ckpt_1.pt"]


def test_the_lock_of_an_s3_output_is_a_conditional_object(s3, monkeypatch, caplog):
    run = f"{s3.url}/run"
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key="run/ckpt_9.pt")  # a killed upload
    with caplog.at_level(logging.WARNING), output_lock.claim_output(run, "run_pretraining.py"):
        assert keys(s3) == [f"run/{output_lock.LOCK_NAME}"]
        with pytest.raises(
            output_lock.OutputError, match=f"--output_dir {run} is in use by run_pretraining.py"
        ):
            output_lock.OutputLock(run, "run_glue.py").acquire()
    assert keys(s3) == []  # released
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads") is None
    assert any(
        "aborted unfinished uploads" in r.getMessage() and "ckpt_9.pt" in r.getMessage()
        for r in caplog.records
    )
    stale = dataclasses.replace(output_lock.Holder.this_process("killed.py"), pid=2**22 + 1)
    put_object(s3, f"run/{output_lock.LOCK_NAME}", stale.to_bytes())
    with output_lock.OutputLock(run, "run_pretraining.py") as lock:  # a dead holder: taken over
        assert storage.get_bytes(lock.store.where)[0] == lock.data


def test_a_store_without_conditional_writes_still_locks_with_a_warning(s3, monkeypatch, caplog):
    real_client = storage._client

    def client(url):
        inner = real_client(url)
        put = inner.put_object

        def put_object(**kwargs):
            if "IfNoneMatch" in kwargs:
                from botocore.exceptions import ClientError

                error = {"Error": {"Code": "NotImplemented", "Message": "If-None-Match"}}
                raise ClientError(error, "PutObject")
            return put(**kwargs)

        inner.put_object = put_object
        return inner

    monkeypatch.setattr(storage, "_client", client)
    run = f"{s3.url}/run"
    with (
        caplog.at_level(logging.WARNING),
        output_lock.OutputLock(run, "run_pretraining.py"),
        pytest.raises(output_lock.OutputError, match="is in use by"),
    ):
        output_lock.OutputLock(run, "run_glue.py").acquire()
    assert any("does not support conditional writes" in r.getMessage() for r in caplog.records)
    assert keys(s3) == []


def put_object(s3, key: str, body: bytes = b"data") -> None:
    s3.client.put_object(Bucket=s3.bucket, Key=key, Body=body)


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


#: Object keys under the prefix `p/` that must never become a cache path, and why not.
HOSTILE_KEYS = {
    "p/../x": "'..' path component",
    "p/a/../../x": "'..' path component",
    "p/" + "../" * 8 + "escaped": "'..' path component",
    "p//etc/x": "absolute path",
    "p/a//b": "empty path component",
    "p/..\\x": "backslash",
    "p/a\\..\\..\\x": "backslash",
    "p/C:x": "drive",
    "p/a\x00b": "control character",
    "p/\u2025/x": "path component",  # TWO DOT LEADER, '..' once NFKC-normalised
    "p/\uff0e\uff0e/x": "path component",  # FULLWIDTH FULL STOPs
    "p/a\uff0fb": "separator",  # FULLWIDTH SOLIDUS
    "p/.": "'.' path component",
    "p/..": "'..' path component",
    "p/": "ends in '/' but holds data",  # the prefix itself, as an object with content
    "p/" + "n" * 300: "longer than 255 bytes",
}


@pytest.mark.parametrize("key", list(HOSTILE_KEYS), ids=[repr(k)[:24] for k in HOSTILE_KEYS])
def test_hostile_object_keys_are_refused_and_nothing_is_written(s3, tmp_path, monkeypatch, key):
    cache = tmp_path / "deep" / "er" / "cache"  # a `..` too many would land in tmp_path
    monkeypatch.setenv("BERT_S3_CACHE", str(cache))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    put_object(s3, "p/config.json", b"{}")
    put_object(s3, key, b"evil")
    before = files_under(tmp_path)
    for url in (f"{s3.url}/p", f"{s3.url}/p/"):
        with pytest.raises(storage.StorageError) as error:
            storage.fetch(url)
        message = str(error.value)
        assert f"refusing object key {key!r}" in message and HOSTILE_KEYS[key] in message
        assert "\n" not in message and url in message
        with pytest.raises(CheckpointError, match="refusing object key"):
            read_weights(url)  # one line from the entry scripts too
    # Nothing downloaded, nothing written anywhere but the (empty) cache folders.
    assert files_under(tmp_path) == before
    assert not (cache / "objects").exists() or files_under(cache / "objects") == set()
    assert (victim / "keep.txt").read_text() == "mine"


def test_keys_outside_the_whole_bucket_and_user_urls_are_refused(s3, tmp_path):
    put_object(s3, "/etc/x")  # an absolute key, fetched with the whole bucket
    with pytest.raises(storage.StorageError, match=r"refusing object key '/etc/x': absolute"):
        storage.fetch(f"{s3.url}/")
    put_object(s3, "a/../../x")  # a key given in the URL itself
    with pytest.raises(storage.StorageError, match=r"refusing object key 'a/../../x'"):
        storage.fetch(f"{s3.url}/a/../../x")
    with pytest.raises(storage.StorageError, match=r"not a valid bucket name '\.\.'"):
        storage.fetch("s3://../x")
    assert not list(tmp_path.glob("x")) and files_under(tmp_path / "cache") == set()


def test_a_key_that_is_both_a_file_and_a_folder_is_refused(s3):
    put_object(s3, "p/a", b"file")
    put_object(s3, "p/a/b", b"file below it")
    with pytest.raises(storage.StorageError, match=r"'p/a': it is a file and also the folder"):
        storage.fetch(f"{s3.url}/p/")


def test_folder_markers_are_skipped(s3):
    put_object(s3, "p/", b"")  # what an S3 console's "create folder" makes
    put_object(s3, "p/sub/", b"")
    put_object(s3, "p/sub/config.json", b"{}")
    folder = storage.fetch(f"{s3.url}/p")
    assert files_under(folder) == {"sub/config.json"}


def test_a_warm_cache_is_not_a_way_out(s3, tmp_path, monkeypatch):
    """A hostile key added to a prefix already cached removes nothing (no rmtree, no prune
    outside the folder), and links in the cache are removed, never followed."""
    cache = tmp_path / "deep" / "er" / "cache"
    monkeypatch.setenv("BERT_S3_CACHE", str(cache))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    put_object(s3, "p/config.json", b"{}")
    folder = storage.fetch(f"{s3.url}/p")
    put_object(s3, "p/" + "../" * 7 + "victim", b"evil")  # the path of `victim`, as a file
    with pytest.raises(storage.StorageError, match="refusing object key"):
        storage.fetch(f"{s3.url}/p")
    assert (victim / "keep.txt").read_text() == "mine"
    assert files_under(folder) == {"config.json"}
    s3.client.delete_object(Bucket=s3.bucket, Key="p/" + "../" * 7 + "victim")
    (folder / "stale").symlink_to(victim)  # links to outside, as another tool might leave
    (folder / "stale.txt").symlink_to(victim / "keep.txt")
    put_object(s3, "p/stale/keep.txt", b"evil")  # would write through the link
    with pytest.raises(storage.StorageError, match=r"'p/stale/keep.txt': leads outside"):
        storage.fetch(f"{s3.url}/p")
    s3.client.delete_object(Bucket=s3.bucket, Key="p/stale/keep.txt")
    assert files_under(storage.fetch(f"{s3.url}/p")) == {"config.json"}  # links pruned
    assert (victim / "keep.txt").read_text() == "mine"
    # The cached folder replaced by a link to another cached prefix: that one is left alone.
    put_object(s3, "q/config.json", b"[]")
    other = storage.fetch(f"{s3.url}/q")
    shutil.rmtree(folder)
    folder.symlink_to(other)
    assert storage.fetch(f"{s3.url}/p") == folder and not folder.is_symlink()
    assert (folder / "config.json").read_bytes() == b"{}"
    assert (other / "config.json").read_bytes() == b"[]"


def test_the_default_cache_is_private_to_the_user(tmp_path, monkeypatch):
    monkeypatch.delenv("BERT_S3_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = storage.cache_dir()
    assert folder == tmp_path / "xdg" / "bert_pytorch" / "s3"
    assert folder.stat().st_mode & 0o777 == 0o700
    (tmp_path / "file").write_text("")  # a cache home that cannot be created: the temp dir
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    folder = storage.cache_dir()
    assert folder == tmp_path / "tmp" / f"bert_s3_cache-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_cache_others_can_write_or_own_is_refused(s3, tmp_path, monkeypatch):
    put_object(s3, "run/ckpt.pt", b"real")
    planted = tmp_path / "planted"
    (planted / "objects" / s3.bucket / "run").mkdir(parents=True)
    (planted / "objects" / s3.bucket / "run" / "ckpt.pt").write_bytes(b"fake")
    planted.chmod(0o777)  # what another local user leaves in /tmp for us
    monkeypatch.setenv("BERT_S3_CACHE", str(planted))
    with pytest.raises(storage.StorageError) as error:
        storage.fetch(f"{s3.url}/run/ckpt.pt")
    assert f"S3 cache {planted} (BERT_S3_CACHE) is writable by group or others (mode 777)" in str(
        error.value
    )
    planted.chmod(0o700)
    if os.geteuid() == 0:  # only root can give a folder away
        os.chown(planted, 4242, -1)
        with pytest.raises(storage.StorageError, match="belongs to uid 4242, not to this user"):
            storage.fetch(f"{s3.url}/run/ckpt.pt")
        os.chown(planted, 0, -1)
    assert storage.fetch(f"{s3.url}/run/ckpt.pt").read_bytes() == b"real"  # fake one replaced


def test_cached_copies_are_verified_before_they_are_served(s3):
    url = f"{s3.url}/run/ckpt.pt"
    put_object(s3, "run/ckpt.pt", b"0123456789")
    copy = storage.fetch(url)
    stamp = json.loads(storage._stamp_path(s3.bucket, "run/ckpt.pt").read_text())
    assert stamp["key"] == "run/ckpt.pt" and stamp["size"] == 10 and stamp["etag"]
    assert stamp["sha256"] == hashlib.sha256(b"0123456789").hexdigest()
    served = copy.stat().st_ino
    assert storage.fetch(url).stat().st_ino == served  # verified: not downloaded again
    # Modified in place, same size, mtime put back: the sha256 still tells.
    info = copy.stat()
    copy.write_bytes(b"0123456780")
    os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert storage.fetch(url).read_bytes() == b"0123456789"
    # A stamp that vouches for another key (its own copy of the same bytes) is not trusted.
    put_object(s3, "run/other.pt", b"0123456789")
    storage.fetch(f"{s3.url}/run/other.pt")
    storage._stamp_path(s3.bucket, "run/ckpt.pt").write_text(
        storage._stamp_path(s3.bucket, "run/other.pt").read_text()
    )
    served = copy.stat().st_ino
    assert storage.fetch(url).stat().st_ino != served  # downloaded again
    stamp = json.loads(storage._stamp_path(s3.bucket, "run/ckpt.pt").read_text())
    assert stamp["key"] == "run/ckpt.pt"
    # A copy replaced by a link to the same bytes elsewhere is not served either.
    elsewhere = copy.with_name("elsewhere")
    copy.rename(elsewhere)
    copy.symlink_to(elsewhere)
    assert not storage.fetch(url).is_symlink()


# ------------------------------------------------------------------------------- checkpoint.py


def random_model(seed: int) -> BertForPreTraining:
    torch.manual_seed(seed)
    return BertForPreTraining(tiny_config())


def assert_same_weights(model, reference, vocab_size: int) -> None:
    ours, theirs = model.state_dict(), reference.state_dict()
    for key, value in theirs.items():
        rows = vocab_size if any(key.endswith(k) for k in VOCAB_KEYS) else None
        torch.testing.assert_close(ours[key][:rows], value[:rows], rtol=0, atol=0, msg=key)


def test_load_model_weights_from_an_s3_checkpoint(s3, tmp_path):
    source = random_model(1)
    save_nvidia_checkpoint(tmp_path / "model.pt", source.state_dict(), source.config)
    put_file(tmp_path / "model.pt", f"{s3.url}/ckpts/model.pt")
    model = random_model(2)
    report = load_model_weights(model, f"{s3.url}/ckpts/model.pt", strict=True)
    assert not report.missing and not report.unexpected
    assert_same_weights(model, source, source.config.vocab_size)


def test_load_model_weights_from_an_s3_hugging_face_prefix(s3, tmp_path):
    config = tiny_config()
    source = random_model(1)
    save_hf_folder(tmp_path / "hf", source.state_dict(), config)
    upload_folder(tmp_path / "hf", f"{s3.url}/models/hf")
    for url in (f"{s3.url}/models/hf", f"{s3.url}/models/hf/"):
        weights = read_weights(url)
        assert weights.format == "hf" and weights.config.hidden_size == config.hidden_size
        model = random_model(2)
        load_model_weights(model, url)
        assert_same_weights(model, source, config.vocab_size)
    # The prefix now holds pytorch_model.bin instead: the cached model.safetensors is stale and
    # must go, or it would be read first.
    replacement = random_model(3)
    s3.client.delete_object(Bucket=s3.bucket, Key="models/hf/model.safetensors")
    torch.save(
        hf_state_dict(replacement.state_dict(), config, "BertForPreTraining"),
        tmp_path / "pytorch_model.bin",
    )
    put_file(tmp_path / "pytorch_model.bin", f"{s3.url}/models/hf/pytorch_model.bin")
    model = random_model(2)
    load_model_weights(model, f"{s3.url}/models/hf")
    assert_same_weights(model, replacement, config.vocab_size)
    cached = storage.cache_dir() / "objects" / s3.bucket / "models" / "hf"
    assert sorted(p.name for p in cached.iterdir()) == ["config.json", "pytorch_model.bin"]


def test_missing_objects_prefixes_and_buckets_name_the_url(s3, monkeypatch):
    storage.upload(f"{s3.url}/there/config.json", lambda handle: handle.write(b"{}"))
    model = random_model(0)
    for url in (f"{s3.url}/there/model.pt", f"{s3.url}/nowhere", f"{s3.url}/nowhere/"):
        with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {url} "):
            load_model_weights(model, url)
    missing = f"s3://no-such-{uuid.uuid4().hex[:8]}/model.pt"
    with pytest.raises(FileNotFoundError, match=f"{missing}: no such bucket"):
        load_model_weights(model, missing)
    with pytest.raises(CheckpointError, match="s3://: not an s3://bucket/key URL"):
        load_model_weights(model, "s3://")
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if not installed
    with pytest.raises(CheckpointError, match=f"{s3.url}/x.pt: s3:// paths need boto3"):
        load_model_weights(model, f"{s3.url}/x.pt")


# ------------------------------------------------------------------------------- run_pretraining.py


@pytest.fixture
def shards(tmp_path):
    """Two shards of random token ids in the NVIDIA layout (32 tokens, 5 predictions)."""
    write_random_shards(tmp_path / "shards")
    return tmp_path / "shards"


def pretrain(shards, output: str, log, *extra: str) -> int:
    """run_pretraining.main in this process (the S3 server is here)."""
    flags = [
        "--train_batch_size=8",
        "--learning_rate=2e-2",
        "--max_steps=6",
        "--warmup_proportion=0.2",
        "--num_steps_per_checkpoint=1",
    ]
    return pretrain_in_process(shards, output, TINY_CONFIG, log, *flags, *extra)


def losses(log) -> dict[int, float]:
    return {
        event["step"][1]: event["data"]["average_loss"]
        for event in read_dllogger_file(log)
        if event.get("type") == "LOG"
        and len(event.get("step") or []) == 2
        and "average_loss" in event["data"]
    }


@pytest.mark.slow
def test_pretraining_saves_to_and_resumes_from_s3(s3, shards, tmp_path, monkeypatch, capsys):
    full_run = pretrain(
        shards, str(tmp_path / "full"), tmp_path / "full.json", "--num_steps_per_checkpoint=6"
    )
    assert full_run == 0
    run = f"{s3.url}/run"
    assert pretrain(shards, run, tmp_path / "first.json", "--steps_this_run=4") == 0
    # Every step saved a checkpoint; the oldest went, as KEEP_CHECKPOINTS = 3 says.
    assert keys(s3) == ["run/ckpt_2.pt", "run/ckpt_3.pt", "run/ckpt_4.pt"]
    assert list((tmp_path / "cache" / "partial").iterdir()) == []
    capsys.readouterr()
    assert pretrain(shards, run, tmp_path / "refused.json", "--steps_this_run=4") == 2
    assert f"--output_dir {run} already holds checkpoints (ckpt_2.pt" in capsys.readouterr().err
    monkeypatch.setenv("BERT_S3_CACHE", str(tmp_path / "fresh_cache"))  # only the bucket has them
    assert pretrain(shards, f"{run}/", tmp_path / "second.json", "--resume_from_checkpoint") == 0
    assert keys(s3) == [f"run/ckpt_{n}.pt" for n in (4, 5, 6)]  # the newest three in the bucket
    full, resumed = losses(tmp_path / "full.json"), losses(tmp_path / "second.json")
    assert sorted(resumed) == [5, 6]  # continued after step 4 ...
    assert [resumed[s] for s in (5, 6)] == [full[s] for s in (5, 6)]  # ... exactly
    a = torch_load(tmp_path / "full" / "ckpt_6.pt")
    b = torch_load(storage.fetch(f"{run}/ckpt_6.pt"))
    assert b["global_step"] == 6 and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )


@pytest.mark.slow
def test_a_stale_cache_neither_fakes_nor_hides_checkpoints(s3, shards, tmp_path, capsys):
    run = f"{s3.url}/run"
    stale = storage.cache_dir() / "objects" / s3.bucket / "run"
    stale.mkdir(parents=True)
    (stale / "ckpt_9.pt").write_bytes(b"from another run")  # not in the bucket: not a checkpoint
    assert pretrain(shards, run, tmp_path / "log.json", "--max_steps=1") == 0
    assert keys(s3) == ["run/ckpt_1.pt"]
    shutil.rmtree(storage.cache_dir())  # nothing cached: the bucket's checkpoint still counts
    capsys.readouterr()
    assert pretrain(shards, run, tmp_path / "log.json", "--max_steps=1") == 2
    assert f"--output_dir {run} already holds checkpoints (ckpt_1.pt" in capsys.readouterr().err
    missing = f"s3://no-such-{uuid.uuid4().hex[:8]}/run"
    capsys.readouterr()
    assert pretrain(shards, missing, tmp_path / "log2.json") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{missing}/: no such bucket" in errors[0], errors


def test_only_the_main_process_uploads(s3, tmp_path):
    def training(is_main: bool) -> types.SimpleNamespace:
        model = BertForPreTraining(tiny_config())
        return types.SimpleNamespace(
            options=types.SimpleNamespace(
                output_dir=f"{s3.url}/run",
                phase2=False,
                phase1_end_step=0,
                step_offset=0,
                initial_loss_scale=2.0**20,
                max_steps=100,
                recorded=dict,
            ),
            dist=types.SimpleNamespace(is_main_process=is_main, world_size=2),
            state=pretraining_checkpoints.RunState(step=7),
            loader=None,
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            precision=types.SimpleNamespace(scaler=None, precision="fp32"),
            scheduler=types.SimpleNamespace(state_dict=dict),
            metrics=types.SimpleNamespace(log=lambda *args, **kwargs: None),
        )

    assert pretraining_checkpoints.save_checkpoint(training(False)) == f"{s3.url}/run/ckpt_7.pt"
    assert keys(s3) == []
    pretraining_checkpoints.save_checkpoint(training(True))
    assert keys(s3) == ["run/ckpt_7.pt"]
    assert torch_load(storage.fetch(f"{s3.url}/run/ckpt_7.pt"))["global_step"] == 7


def test_fine_tuning_starts_from_an_s3_checkpoint(s3, tmp_path):
    """run_glue.py (finetuning.py's argument checks and loader) takes an s3:// --init_checkpoint:
    it trains exactly as from the same file on disk."""
    import run_glue

    repo = Path(__file__).resolve().parent.parent
    source = random_model(1)
    save_nvidia_checkpoint(tmp_path / "ckpt.pt", source.state_dict(), source.config)
    put_file(tmp_path / "ckpt.pt", f"{s3.url}/pretrained/ckpt.pt")
    losses = {}
    for name, checkpoint in (
        ("s3", f"{s3.url}/pretrained/ckpt.pt"),
        ("disk", tmp_path / "ckpt.pt"),
    ):
        status = run_glue.main(
            [
                f"--init_checkpoint={checkpoint}",
                "--task_name=mrpc",
                f"--data_dir={repo}/data/sample/glue/MRPC",
                f"--vocab_file={repo}/vocab/vocab",
                f"--config_file={repo}/bert_configs/tiny.json",
                "--do_lower_case",
                "--do_train",
                "--train_batch_size=8",
                "--max_steps=2",
                "--log_freq=1",
                f"--output_dir={tmp_path / name}",
                "--skip_checkpoint",
                f"--json-summary={tmp_path / name / 'log.json'}",
            ]
        )
        assert status == 0
        events = read_dllogger_file(tmp_path / name / "log.json")
        loaded = [e["data"] for e in events if "loaded_checkpoint" in e.get("data", {})]
        assert loaded == [{"loaded_checkpoint": True, "missing_keys": 2, "unexpected_keys": 7}]
        losses[name] = [e["data"]["step_loss"] for e in events if "step_loss" in e.get("data", {})]
    assert len(losses["s3"]) == 2 and losses["s3"] == losses["disk"]
