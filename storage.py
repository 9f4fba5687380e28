"""`s3://` locations for checkpoints: fetch to a local cache, upload, list, delete (boto3).

Entry scripts accept `s3://bucket/key` for `--init_checkpoint` (a checkpoint file, or a prefix
holding a Hugging Face folder) and run_pretraining.py for `--output_dir`; everything else works
on local paths. boto3 is imported only when an `s3://` path is used. The endpoint comes from
`S3_ENDPOINT_URL` or `AWS_ENDPOINT_URL` (an S3-compatible server such as MinIO or moto),
credentials from boto3's usual chain.

Downloads go to `$BERT_S3_CACHE` (default: a folder in the system temp dir): `objects/` holds
the copies, `stamps/` the size and ETag each copy was downloaded as (and the copy's mtime),
`partial/` downloads and uploads in progress. A copy is re-used only when the object's current
size and ETag match its stamp and the copy is unchanged since; a prefix's copy is pruned of
files no longer under the prefix. What exists remotely is always listed in the bucket, never
inferred from the cache.

Errors: a missing object, prefix or bucket is a FileNotFoundError naming the URL; any other
failure (no boto3, no credentials, no connection, access denied) a StorageError naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from errors import BertError
from fileio import atomic_write_text

#: Error codes S3 and S3-compatible servers use for a missing key or bucket.
NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class StorageError(BertError, RuntimeError):
    """An S3 object or prefix that cannot be read or written; the message names the URL."""


def is_remote(path: str | os.PathLike | None) -> bool:
    return path is not None and str(path).startswith("s3://")


def split_url(url: str) -> tuple[str, str]:
    """("bucket", "key/prefix") of an s3:// URL."""
    rest = str(url)[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{url}: not an s3://bucket/key URL")
    return bucket, key


def _client(url: str) -> Any:
    try:
        import boto3
    except ImportError:
        raise StorageError(f"{url}: s3:// paths need boto3 (pip install boto3)") from None
    endpoint = os.environ.get("S3_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", endpoint_url=endpoint)


def _errors() -> tuple[type[BaseException], ...]:
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    return Boto3Error, BotoCoreError, ClientError


def _code(err: BaseException | None) -> str:
    """The S3 error code of a ClientError, also one that boto3's transfer manager wrapped."""
    while err is not None:
        code = getattr(err, "response", {}).get("Error", {}).get("Code")
        if code:
            return str(code)
        err = err.__cause__ or err.__context__
    return ""


def cache_dir() -> Path:
    return Path(os.environ.get("BERT_S3_CACHE") or Path(tempfile.gettempdir()) / "bert_s3_cache")


def _copy_path(bucket: str, key: str) -> Path:
    return cache_dir() / "objects" / bucket / key


def _stamp_path(bucket: str, key: str) -> Path:
    """Where the size and ETag of a cached copy are kept (outside `objects/`, so a downloaded
    Hugging Face folder holds only its own files)."""
    return cache_dir() / "stamps" / bucket / (key + ".json")


def _partial_file(suffix: str) -> Path:
    """A new empty file on the cache's file system, for a download or upload in progress."""
    folder = cache_dir() / "partial"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def _prefix(key: str) -> str:
    """A key as a folder prefix: "" for the whole bucket, else ending in one "/"."""
    key = key.strip("/")
    return key + "/" if key else ""


def _list(client: Any, bucket: str, prefix: str, url: str, recursive: bool = True) -> list[str]:
    keys: list[str] = []
    extra = {} if recursive else {"Delimiter": "/"}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, **extra
        )
        for page in pages:
            keys.extend(item["Key"] for item in page.get("Contents", []))
    except _errors() as err:
        if _code(err) == "NoSuchBucket":
            raise FileNotFoundError(f"{url}: no such bucket: {bucket}") from None
        raise StorageError(f"{url}: cannot list: {err}") from None
    return sorted(keys)


def list_keys(url: str, recursive: bool = True) -> list[str]:
    """Keys under an s3:// prefix, sorted; only those directly under it unless `recursive`."""
    bucket, key = split_url(url)
    return _list(_client(url), bucket, key, url, recursive)


def fetch(url: str) -> Path:
    """A local copy of an s3:// object, or of every object under a prefix (a folder)."""
    bucket, key = split_url(url)
    client = _client(url)
    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except _errors() as err:
            if _code(err) not in NOT_FOUND:
                raise StorageError(f"{url}: cannot read: {err}") from None
        else:
            return _download(client, bucket, key, head)
    prefix = _prefix(key)
    keys = [k for k in _list(client, bucket, prefix, url) if not k.endswith("/")]
    if not keys:
        raise FileNotFoundError(f"checkpoint not found: {url} (no such object or prefix)")
    folder = _copy_path(bucket, prefix)
    if folder.is_file():
        folder.unlink()  # an object of that name was cached before
    for name in keys:
        _download(client, bucket, name, None)
    _prune(bucket, prefix, {name[len(prefix) :] for name in keys})
    return folder


def _download(client: Any, bucket: str, key: str, head: dict | None) -> Path:
    url = f"s3://{bucket}/{key}"
    local, stamp_file = _copy_path(bucket, key), _stamp_path(bucket, key)
    try:
        head = head or client.head_object(Bucket=bucket, Key=key)
        remote = {"size": head["ContentLength"], "etag": head["ETag"]}
        if _is_cached(local, stamp_file, remote):
            return local
        partial = _partial_file(".download")
        try:
            client.download_file(bucket, key, str(partial))
            if local.is_dir():
                shutil.rmtree(local)  # a prefix of that name was cached before
            local.parent.mkdir(parents=True, exist_ok=True)
            stamp_file.unlink(missing_ok=True)  # no stamp vouches for the copy while it changes
            os.replace(partial, local)
        finally:
            partial.unlink(missing_ok=True)
        stamp = remote | {"mtime_ns": local.stat().st_mtime_ns}  # a copy changed since: stale
        atomic_write_text(stamp_file, json.dumps(stamp))
    except _errors() as err:
        if _code(err) in NOT_FOUND:
            raise FileNotFoundError(f"checkpoint not found: {url}") from None
        raise StorageError(f"{url}: cannot download: {err}") from None
    return local


def _is_cached(local: Path, stamp_file: Path, remote: dict) -> bool:
    """Whether the copy is the object as it is now: same size and ETag, untouched since."""
    try:
        stamp, stat = json.loads(stamp_file.read_text()), local.stat()
    except (OSError, ValueError):
        return False
    return (
        stamp == remote | {"mtime_ns": stat.st_mtime_ns}
        and local.is_file()
        and stat.st_size == remote["size"]
    )


def _prune(bucket: str, prefix: str, keep: set[str]) -> None:
    """Delete cached files under a prefix that are no longer objects under it (a stale
    `pytorch_model.bin` beside a new `model.safetensors` would otherwise be read)."""
    folder = _copy_path(bucket, prefix)
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in keep:
            path.unlink(missing_ok=True)
            _stamp_path(bucket, prefix + relative).unlink(missing_ok=True)


def put(local: str | os.PathLike, url: str) -> None:
    """Upload a local file to an s3:// URL.

    S3 shows an object only once its upload completed (one PUT, or the completion of a
    multipart upload), so readers never see a half-written one under the name.
    """
    bucket, key = split_url(url)
    try:
        _client(url).upload_file(str(local), bucket, key)
    except _errors() as err:
        if _code(err) == "NoSuchBucket":
            raise FileNotFoundError(f"{url}: no such bucket: {bucket}") from None
        raise StorageError(f"{url}: cannot upload: {err}") from None


def upload(url: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(handle)` on a scratch file in the cache, upload it to `url`, delete it."""
    partial = _partial_file(".upload")
    try:
        with open(partial, "wb") as handle:
            write(handle)
        put(partial, url)
    finally:
        partial.unlink(missing_ok=True)


def delete(url: str) -> None:
    """Delete an object (and its cached copy); deleting a missing object is not an error."""
    bucket, key = split_url(url)
    try:
        _client(url).delete_object(Bucket=bucket, Key=key)
    except _errors() as err:
        raise StorageError(f"{url}: cannot delete: {err}") from None
    _stamp_path(bucket, key).unlink(missing_ok=True)
    if _copy_path(bucket, key).is_file():
        _copy_path(bucket, key).unlink()
