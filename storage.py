"""`s3://` locations for checkpoints: fetch to a local cache, upload, list, delete (boto3).

Entry scripts accept `s3://bucket/key` for `--init_checkpoint` (a checkpoint file, or a prefix
holding a Hugging Face folder) and run_pretraining.py for `--output_dir`; everything else works
on local paths. Owns the private, verified download cache (`cache_dir`, `fetch`), uploads and
small conditional objects (the lock of `output_lock.py`). boto3 is imported only when an `s3://`
path is used; the endpoint comes from `S3_ENDPOINT_URL` or `AWS_ENDPOINT_URL` (MinIO, moto),
credentials from boto3's usual chain. Object keys are outside data: each becomes a cache path
only through `fileio.safe_join`. A missing object, prefix or bucket is a FileNotFoundError
naming the URL; any other failure a StorageError naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from errors import BertError
from fileio import (
    UnsafePathError,
    atomic_write_text,
    check_relative_name,
    parse_json,
    replace_durably,
    safe_join,
    sha256_file,
)

logger = logging.getLogger(__name__)

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
    try:
        check_relative_name(bucket)  # the bucket name becomes a folder of the cache
    except UnsafePathError as err:
        raise StorageError(f"{url}: not a valid bucket name {bucket!r} ({err})") from None
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
    """The download cache, created if needed and checked private: `$BERT_S3_CACHE`, by default a
    per-user folder (`$XDG_CACHE_HOME/bert_pytorch/s3`, else `~/.cache/bert_pytorch/s3`, else
    `<temp dir>/bert_s3_cache-<uid>`) with mode 0700. A folder that belongs to another user or
    that group or others may write is refused: what it holds could have been planted. It holds
    `objects/` (the copies), `stamps/` (one JSON file per copy: the bucket, key, size and ETag it
    was downloaded as, and the sha256 of the downloaded bytes) and `partial/` (downloads and
    uploads in progress)."""
    configured = os.environ.get("BERT_S3_CACHE")
    if configured:
        return _private_folder(Path(configured).expanduser(), "BERT_S3_CACHE")
    return _private_folder(_default_cache_dir(), "the default S3 cache")


def _default_cache_dir() -> Path:
    """A per-user folder: under the XDG cache home when it can be created, else in temp."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # no home directory known
            base = ""
    if base:
        folder = Path(base) / "bert_pytorch" / "s3"
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only or missing home: fall back to the temp dir
        else:
            return folder
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return Path(tempfile.gettempdir()) / f"bert_s3_cache-{uid}"


def _private_folder(folder: Path, what: str) -> Path:
    """`folder`, created with mode 0700 if missing; refused unless this user owns it and no
    one else may write to it (another local user could otherwise plant files that are then
    served as downloads)."""
    try:
        folder.mkdir(mode=0o700, parents=True)
        os.chmod(folder, 0o700)  # exactly 0700, whatever the umask
    except FileExistsError:
        pass
    except OSError as err:
        raise StorageError(f"S3 cache {folder} ({what}): cannot create it: {err}") from None
    if not hasattr(os, "getuid"):
        return folder  # no POSIX owners to check (Windows)
    uid = os.getuid()
    hint = "set BERT_S3_CACHE to a private folder of your own"
    try:
        link, info = os.lstat(folder), os.stat(folder)
    except OSError as err:
        raise StorageError(f"S3 cache {folder} ({what}): cannot use it: {err}") from None
    if stat.S_ISLNK(link.st_mode) and link.st_uid != uid:
        raise StorageError(
            f"S3 cache {folder} ({what}) is a symbolic link owned by uid {link.st_uid}, not by "
            f"this user (uid {uid}); refusing it: {hint}"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise StorageError(f"S3 cache {folder} ({what}) is not a folder; {hint}")
    if info.st_uid != uid:
        raise StorageError(
            f"S3 cache {folder} ({what}) belongs to uid {info.st_uid}, not to this user "
            f"(uid {uid}); refusing it: {hint}"
        )
    if info.st_mode & 0o022:
        raise StorageError(
            f"S3 cache {folder} ({what}) is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); refusing it: `chmod go-w` it or {hint}"
        )
    return folder


def _cache_path(bucket: str, key: str, url: str) -> Path:
    """Where the copy of `key` lives: `objects/<bucket>/<key>` (`key` "" is the whole bucket),
    checked to stay inside `objects/<bucket>`."""
    try:
        return safe_join(cache_dir() / "objects", f"{bucket}/{key}" if key else bucket)
    except UnsafePathError as err:
        raise StorageError(f"{url}: refusing object key {key!r}: {err}") from None


def _stamp_path(bucket: str, key: str) -> Path:
    """Where the stamp of a cached copy is kept: named by a hash of its bucket and key (no
    outside name becomes a path), outside `objects/` so a Hugging Face folder holds only its
    own files."""
    digest = hashlib.sha256(f"{bucket}/{key}".encode("utf-8", "surrogateescape")).hexdigest()
    return cache_dir() / "stamps" / f"{digest}.json"


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


def _list(
    client: Any, bucket: str, prefix: str, url: str, recursive: bool = True
) -> list[dict[str, Any]]:
    """The listing entries (Key, Size, ETag) under a prefix, sorted by key."""
    entries: list[dict[str, Any]] = []
    extra = {} if recursive else {"Delimiter": "/"}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, **extra
        )
        for page in pages:
            entries.extend(page.get("Contents", []))
    except _errors() as err:
        if _code(err) == "NoSuchBucket":
            raise FileNotFoundError(f"{url}: no such bucket: {bucket}") from None
        raise StorageError(f"{url}: cannot list: {err}") from None
    return sorted(entries, key=lambda entry: entry["Key"])


def list_keys(url: str, recursive: bool = True) -> list[str]:
    """Keys under an s3:// prefix, sorted; only those directly under it unless `recursive`."""
    bucket, key = split_url(url)
    return [entry["Key"] for entry in _list(_client(url), bucket, key, url, recursive)]


def fetch(url: str) -> Path:
    """A local copy of an s3:// object, or of every object under a prefix (a folder).

    A cached copy is served only when the object's current size and ETag match its stamp and
    the copy's own size and sha256 still match it; otherwise it is downloaded again. A prefix's
    copy is pruned of files no longer under the prefix. What exists remotely is always listed in
    the bucket, never inferred from the cache. A prefix whose listing holds one unsafe key
    (`..`, an absolute or empty component, a backslash, control characters, a key that is both a
    file and a folder) is refused as a whole before anything is downloaded. No boto3, no
    credentials, no connection, access denied, an unsafe key or cache folder: a StorageError."""
    bucket, key = split_url(url)
    client = _client(url)
    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except _errors() as err:
            if _code(err) not in NOT_FOUND:
                raise StorageError(f"{url}: cannot read: {err}") from None
        else:
            remote = {"size": head["ContentLength"], "etag": head["ETag"]}
            return _download(client, bucket, key, remote, _cache_path(bucket, key, url))
    prefix = _prefix(key)
    folder = _cache_path(bucket, prefix.rstrip("/"), url)
    files = _plan_folder(url, prefix, _list(client, bucket, prefix, url), folder)
    if not files:
        raise FileNotFoundError(f"checkpoint not found: {url} (no such object or prefix)")
    for name, remote, local in files:
        _download(client, bucket, name, remote, local)
    _prune(bucket, prefix, folder, {local for _, _, local in files})
    return folder


def _plan_folder(
    url: str, prefix: str, entries: list[dict[str, Any]], folder: Path
) -> list[tuple[str, dict[str, Any], Path]]:
    """(key, {size, etag}, local path) of every object under `prefix`, all checked first.

    A zero-byte key ending in "/" is a folder marker (what consoles create) and is skipped.
    Refused, naming the key, before anything is downloaded: a key ending in "/" that holds
    data (also one equal to the prefix), a key whose name below the prefix is not a plain
    relative path inside the folder, and a key that is both a file and the folder of another.
    """
    files = []
    for entry in entries:
        key = entry["Key"]
        if key.endswith("/"):
            if entry.get("Size", 0):
                raise StorageError(
                    f"{url}: refusing object key {key!r}: it ends in '/' but holds data, so it "
                    "cannot be a file of the folder; nothing downloaded"
                )
            continue
        try:
            local = safe_join(folder, key[len(prefix) :])
        except UnsafePathError as err:
            raise StorageError(
                f"{url}: refusing object key {key!r}: {err}; nothing downloaded"
            ) from None
        files.append((key, {"size": entry["Size"], "etag": entry["ETag"]}, local))
    names = {key[len(prefix) :]: key for key, _, _ in files}
    for name, key in names.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in names:
                raise StorageError(
                    f"{url}: refusing object key {names[parent]!r}: it is a file and also the "
                    f"folder of {key!r}; nothing downloaded"
                )
    return files


def _download(client: Any, bucket: str, key: str, remote: dict, local: Path) -> Path:
    """`local` holding the object as it is now: the verified cached copy, or a new download."""
    url = f"s3://{bucket}/{key}"
    stamp_file = _stamp_path(bucket, key)
    try:
        if _is_cached(local, stamp_file, bucket, key, remote):
            return local
        partial = _partial_file(".download")
        try:
            client.download_file(bucket, key, str(partial))
            size = partial.stat().st_size
            if size != remote["size"]:
                raise StorageError(
                    f"{url}: downloaded {size} bytes but the object has {remote['size']} "
                    "(replaced while downloading?); run again"
                )
            digest = sha256_file(partial)
            stamp_file.unlink(missing_ok=True)  # no stamp vouches for the copy while it changes
            _make_room(local)
            replace_durably(partial, local)
        finally:
            partial.unlink(missing_ok=True)
        stamp = {"bucket": bucket, "key": key, **remote, "sha256": digest}
        atomic_write_text(stamp_file, json.dumps(stamp))
    except _errors() as err:
        if _code(err) in NOT_FOUND:
            raise FileNotFoundError(f"checkpoint not found: {url}") from None
        raise StorageError(f"{url}: cannot download: {err}") from None
    except OSError as err:
        raise StorageError(f"{url}: cannot write its copy {local}: {err}") from None
    return local


def _folders_above(local: Path) -> list[Path]:
    """The folders between `objects/` and `local`, outermost first."""
    objects = cache_dir() / "objects"
    return [objects / parent for parent in reversed(local.relative_to(objects).parents[:-1])]


def _make_room(local: Path) -> None:
    """Clear the way for a file at `local` inside `objects/`: a folder of that name (a prefix
    cached before), and files or links where its parent folders go (objects cached before; the
    cache itself never makes links)."""
    for path in _folders_above(local):
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
    if local.is_symlink():
        local.unlink()
    elif local.is_dir():
        shutil.rmtree(local)
    local.parent.mkdir(parents=True, exist_ok=True)


def _is_cached(local: Path, stamp_file: Path, bucket: str, key: str, remote: dict) -> bool:
    """Whether the copy is the object as it is now: its stamp names this bucket, key, size and
    ETag, and the copy is a regular file, reached through no link, whose size and sha256 are
    those the stamp recorded."""
    try:
        stamp, info = parse_json(stamp_file.read_text(), str(stamp_file)), local.lstat()
    except (OSError, ValueError):
        return False
    if not isinstance(stamp, dict) or any(path.is_symlink() for path in _folders_above(local)):
        return False
    vouched = {name: stamp.get(name) for name in ("bucket", "key", "size", "etag")}
    if vouched != {"bucket": bucket, "key": key, **remote}:
        return False
    regular = stat.S_ISREG(info.st_mode) and info.st_size == remote["size"]
    if regular and sha256_file(local) == stamp.get("sha256"):
        return True
    logger.warning(
        "s3://%s/%s: the cached copy %s was modified; downloading again", bucket, key, local
    )
    return False


def _prune(bucket: str, prefix: str, folder: Path, keep: set[Path]) -> None:
    """Delete what the cached copy of a prefix holds besides its current objects (a stale
    `pytorch_model.bin` beside a new `model.safetensors` would otherwise be read); links are
    removed, never followed."""
    for dirpath, dirnames, filenames in os.walk(folder, topdown=False):
        here = Path(dirpath)
        links = [name for name in dirnames if (here / name).is_symlink()]
        for name in [*filenames, *links]:
            path = here / name
            if path not in keep:
                path.unlink(missing_ok=True)
                relative = path.relative_to(folder).as_posix()
                _stamp_path(bucket, prefix + relative).unlink(missing_ok=True)
        if here != folder and not any(here.iterdir()):
            here.rmdir()


def upload(url: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(handle)` on a scratch file in the cache, upload it to `url`, delete it.

    On POSIX systems the scratch file loses its name as soon as it is open, so even a writer
    killed with SIGKILL leaves no checkpoint-sized file behind in the cache; what a killed
    multipart upload leaves on the server, `abort_incomplete_uploads` removes."""
    partial = _partial_file(".upload")
    try:
        with open(partial, "w+b") as handle:
            if os.name != "nt":  # Windows cannot delete an open file
                partial.unlink()
            write(handle)
            handle.flush()
            handle.seek(0)
            bucket, key = split_url(url)
            try:
                _client(url).upload_fileobj(handle, bucket, key)
            except _errors() as err:
                if _code(err) == "NoSuchBucket":
                    raise FileNotFoundError(f"{url}: no such bucket: {bucket}") from None
                raise StorageError(f"{url}: cannot upload: {err}") from None
    finally:
        partial.unlink(missing_ok=True)


class ConditionalWritesUnsupported(StorageError):
    """The S3 store rejects `If-None-Match` on PUT (it predates S3's conditional writes)."""


#: Error codes of a store that does not implement a request header.
NOT_IMPLEMENTED = ("NotImplemented", "501")


def put_bytes(url: str, data: bytes, only_if_absent: bool = False) -> bool:
    """Write a small object; with `only_if_absent`, only if no object has that key (a PUT with
    `If-None-Match: *`, which S3 decides atomically). False when the object already existed."""
    bucket, key = split_url(url)
    extra = {"IfNoneMatch": "*"} if only_if_absent else {}
    try:
        _client(url).put_object(Bucket=bucket, Key=key, Body=data, **extra)
    except _errors() as err:
        code = _code(err)
        if only_if_absent and code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return False
        if only_if_absent and code in NOT_IMPLEMENTED:
            raise ConditionalWritesUnsupported(
                f"{url}: this S3 store does not support conditional writes (If-None-Match)"
            ) from None
        if code == "NoSuchBucket":
            raise FileNotFoundError(f"{url}: no such bucket: {bucket}") from None
        raise StorageError(f"{url}: cannot write: {err}") from None
    return True


def get_bytes(url: str) -> tuple[bytes, float] | None:
    """A small object's content and last-modified time (seconds since the epoch, the store's
    clock), or None when there is no such object."""
    bucket, key = split_url(url)
    try:
        response = _client(url).get_object(Bucket=bucket, Key=key)
        return response["Body"].read(), response["LastModified"].timestamp()
    except _errors() as err:
        if _code(err) in NOT_FOUND:
            return None
        raise StorageError(f"{url}: cannot read: {err}") from None


def abort_incomplete_uploads(url: str) -> list[str]:
    """Abort the unfinished multipart uploads of keys directly under the prefix `url` (what a
    writer killed during a large upload leaves: parts that are stored, and billed, but never
    become an object); returns their keys. Only for a prefix one writer owns, under a lock."""
    bucket, key = split_url(url)
    prefix = _prefix(key)
    client = _client(url)
    aborted = []
    try:
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=prefix
        )
        uploads = [upload for page in pages for upload in page.get("Uploads", [])]
        for upload in uploads:
            if "/" in upload["Key"][len(prefix) :]:
                continue  # a deeper key: not this folder's
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
            aborted.append(upload["Key"])
    except _errors() as err:
        if _code(err) in NOT_IMPLEMENTED:
            return aborted  # a store without multipart listing has nothing to clean here
        raise StorageError(f"{url}: cannot list or abort unfinished uploads: {err}") from None
    return sorted(aborted)


def delete(url: str) -> None:
    """Delete an object (and its cached copy); deleting a missing object is not an error."""
    bucket, key = split_url(url)
    try:
        _client(url).delete_object(Bucket=bucket, Key=key)
    except _errors() as err:
        raise StorageError(f"{url}: cannot delete: {err}") from None
    _stamp_path(bucket, key).unlink(missing_ok=True)
    try:
        local = _cache_path(bucket, key, url)
    except StorageError:
        return  # a key that could never have been cached
    if local.is_file() and not local.is_symlink():
        local.unlink()
