"""data/download.py against a local HTTP server: resume, mirrors, checksums, idempotence, the
Wikipedia sha1 lookup, zip extraction, the MRPC split (against the staged GLUE files), the CLI.

The server runs on 127.0.0.1 in a thread and serves in-memory files with real Range/206/416
answers; per path it can drop the connection part-way through the first response, ignore Range,
or answer with a fixed error status.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data import download as dl
from data.download import (
    DownloadError,
    Source,
    build_mrpc,
    download,
    download_wikipedia,
    extract_archive,
    fetch_and_extract,
)
from tests.support import REPO_ROOT, fill_disk

FAST = {"retries": 3, "backoff": 0.0, "timeout": 5, "progress": False}
DATE = "20240601"
DUMP_NAME = f"enwiki-{DATE}-pages-articles.xml.bz2"
SUMS_NAME = f"enwiki-{DATE}-sha1sums.txt"


@dataclass
class Served:
    body: bytes = b""
    status: int | None = None  # answer every request with this error status instead
    drop_after: int | None = None  # first request only: close the connection after this many bytes
    ignore_range: bool = False
    requests: int = 0


class FileServer:
    """In-memory files over HTTP, with a log of (path, Range header) for every request."""

    def __init__(self) -> None:
        self.files: dict[str, Served] = {}
        self.log: list[tuple[str, str | None]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def add(self, path: str, body: bytes = b"", **behaviour) -> str:
        self.files[path] = Served(body, **behaviour)
        return self.base + path

    def ranges(self, path: str) -> list[str | None]:
        return [header for logged, header in self.log if logged == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                server.log.append((self.path, range_header))
                served = server.files.get(self.path)
                if served is None:
                    self.send_error(404)
                    return
                served.requests += 1
                if served.status is not None:
                    self.send_error(served.status)
                    return
                body, start = served.body, 0
                if range_header and not served.ignore_range:
                    start = int(range_header.removeprefix("bytes=").rstrip("-"))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if served.drop_after is not None and served.requests == 1:
                    payload = payload[: served.drop_after]  # then the connection closes
                self.wfile.write(payload)

        return Handler


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    files = FileServer()
    yield files
    files.close()


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    body = blob(300_000)
    url = server.add("/data.bin", body, drop_after=100_000)
    dest = tmp_path / "out" / "data.bin"
    assert download(url, dest, sha256=sha256(body), md5=hashlib.md5(body).hexdigest(), **FAST)
    assert server.ranges("/data.bin") == [None, "bytes=100000-"]
    assert dest.read_bytes() == body
    assert not part_of(dest).exists()


def test_a_full_disk_is_one_line_at_once_and_keeps_the_bytes_to_resume(
    server, tmp_path, monkeypatch
):
    body = blob(300_000)
    url = server.add("/data.bin", body)
    dest = tmp_path / "out" / "data.bin"
    dest.parent.mkdir()
    fill_disk(monkeypatch, dest.parent, free=100_000)
    with pytest.raises(DownloadError, match=rf"cannot write {part_of(dest)}: No space left"):
        download(url, dest, sha256=sha256(body), **FAST)
    assert server.ranges("/data.bin") == [None]  # not retried: a full disk stays full
    assert part_of(dest).read_bytes() == body[:100_000] and not dest.exists()


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    body = blob(50_000)
    url = server.add("/data.bin", body)
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(body[:12_345])
    download(url, dest, sha256=sha256(body), **FAST)
    assert server.ranges("/data.bin") == ["bytes=12345-"]
    assert dest.read_bytes() == body


def test_complete_partial_file_answered_416_is_verified_and_kept(server, tmp_path):
    body = blob(4_000)
    url = server.add("/data.bin", body)
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(body)
    download(url, dest, sha256=sha256(body), **FAST)
    assert server.ranges("/data.bin") == ["bytes=4000-"]
    assert dest.read_bytes() == body


def test_stale_partial_bytes_that_fail_the_checksum_are_fetched_again_from_zero(server, tmp_path):
    body = blob(20_000)
    url = server.add("/data.bin", body)
    dest = tmp_path / "data.bin"
    part_of(dest).write_bytes(b"x" * 5_000)  # an earlier run of another version of the file
    download(url, dest, sha256=sha256(body), **FAST)
    assert server.ranges("/data.bin") == ["bytes=5000-", None]
    assert dest.read_bytes() == body


def test_server_that_ignores_range_still_gives_the_right_file(server, tmp_path):
    body = blob(200_000, seed=1)
    url = server.add("/data.bin", body, drop_after=70_000, ignore_range=True)
    dest = tmp_path / "data.bin"
    download(url, dest, sha256=sha256(body), **{**FAST, "progress": True})  # tqdm path too
    assert server.ranges("/data.bin") == [None, "bytes=70000-"]  # asked to resume, got a 200
    assert dest.read_bytes() == body


def test_checksum_mismatch_is_refused_and_leaves_nothing_behind(server, tmp_path):
    body = b"the real bytes\n"
    url = server.add("/file.json", body)
    dest = tmp_path / "file.json"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as error:
        download(url, dest, sha256=wrong, **FAST)
    message = str(error.value)
    assert str(dest) in message and url in message
    assert wrong in message and sha256(body) in message
    assert "\n" not in message
    assert not dest.exists() and not part_of(dest).exists()
    assert server.ranges("/file.json") == [None]  # a fresh download that fails is not retried


def test_missing_file_is_reported_with_its_url_and_the_next_mirror_is_used(server, tmp_path):
    body = blob(1_000)
    missing = server.add("/gone/file.bin", status=404)
    good = server.add("/mirror/file.bin", body)
    dest = tmp_path / "file.bin"
    download([missing, good], dest, sha256=sha256(body), **FAST)
    assert dest.read_bytes() == body
    assert len(server.ranges("/gone/file.bin")) == 1  # a 404 is not retried

    with pytest.raises(DownloadError, match=f"not found: {missing}"):
        download(missing, tmp_path / "other.bin", sha256=sha256(body), **FAST)


def test_all_mirrors_failing_gives_one_message_listing_each(server, tmp_path):
    missing = server.add("/a/file.bin", status=404)
    broken = server.add("/b/file.bin", status=503)
    refused = server.add("/c/file.bin", status=403)
    with pytest.raises(DownloadError) as error:
        download([missing, broken, refused], tmp_path / "file.bin", sha256="0" * 64, **FAST)
    message = str(error.value)
    assert "\n" not in message and message.startswith("could not download file.bin")
    assert f"not found: {missing}" in message
    assert f"{broken}: HTTP Error 503" in message and "3 attempt" in message
    assert f"{refused}: HTTP 403" in message
    assert len(server.ranges("/b/file.bin")) == FAST["retries"]
    assert len(server.ranges("/c/file.bin")) == 1  # 403 will not change: no retries


def test_existing_verified_file_needs_no_request_and_a_corrupt_one_is_fetched(
    server, tmp_path, caplog
):
    body = blob(10_000)
    url = server.add("/data.bin", body)
    dest = tmp_path / "data.bin"
    download(url, dest, sha256=sha256(body), **FAST)
    server.log.clear()
    download(url, dest, sha256=sha256(body), **FAST)
    assert server.log == []

    dest.write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger="data.download"):
        download(url, dest, sha256=sha256(body), **FAST)
    assert "fails its checksum" in caplog.text
    assert server.ranges("/data.bin") == [None]
    assert dest.read_bytes() == body


def test_a_download_without_a_checksum_is_refused_unless_the_caller_says_so(server, tmp_path):
    url = server.add("/data.bin", b"bytes")
    with pytest.raises(DownloadError, match=f"refusing to download data.bin from {url}: no"):
        download(url, tmp_path / "data.bin", **FAST)
    assert server.log == [] and not (tmp_path / "data.bin").exists()
    assert download(url, tmp_path / "data.bin", unverified_ok=True, **FAST).read_bytes() == b"bytes"


def test_a_partial_file_that_is_a_link_is_not_written_through(server, tmp_path):
    body = blob(3_000)
    url = server.add("/data.bin", body)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"mine")
    dest = tmp_path / "dl" / "data.bin"
    dest.parent.mkdir()
    part_of(dest).symlink_to(victim)
    assert download(url, dest, sha256=sha256(body), **FAST).read_bytes() == body
    assert victim.read_bytes() == b"mine" and server.ranges("/data.bin") == [None]


class Trickler:
    """A raw HTTP server on 127.0.0.1 that sends its answer one byte per `interval` seconds
    (with `slow_headers` the status line and headers too; with `silent` nothing after the
    headers), until the client goes away."""

    def __init__(self, body: bytes, interval: float = 1.0, **behaviour) -> None:
        self.body, self.interval = body, interval
        self.slow_headers = behaviour.get("slow_headers", False)
        self.silent = behaviour.get("silent", False)
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/file.bin"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)  # the request
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\n\r\n".encode()
            payload = head + self.body
            if not self.slow_headers:
                conn.sendall(head)
                payload = b"" if self.silent else self.body
            for byte in payload:
                if self.stop.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
            self.stop.wait(30)  # `silent`: keep the connection open, send nothing


@pytest.fixture
def trickler(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers: list[Trickler] = []
    yield lambda *args, **kwargs: servers.append(Trickler(*args, **kwargs)) or servers[-1]
    for server in servers:
        server.close()


#: A byte a second passes every per-read timeout; 10 bytes/s over 1 s is the floor here.
SLOW = {**FAST, "timeout": 5, "min_rate": 10, "rate_window": 1}


@pytest.mark.parametrize("slow_headers", [False, True], ids=["body", "headers"])
def test_a_server_that_trickles_bytes_is_left_with_one_line(
    trickler, server, tmp_path, slow_headers
):
    body = blob(5_000)
    slow = trickler(body, slow_headers=slow_headers)
    start = time.monotonic()
    with pytest.raises(DownloadError) as error:
        download(slow.url, tmp_path / "file.bin", sha256=sha256(body), **SLOW)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "\n" not in message and f"{slow.url}: too slow:" in message
    assert "below the minimum of 10 bytes/s" in message
    assert not (tmp_path / "file.bin").exists()
    # The next mirror serves it; the trickled bytes are kept only as a partial file to resume.
    good = server.add("/file.bin", body)
    dest = download([slow.url, good], tmp_path / "file.bin", sha256=sha256(body), **SLOW)
    assert dest.read_bytes() == body


def test_a_silent_server_times_out_per_read(trickler, tmp_path):
    silent = trickler(b"x" * 100, silent=True)
    options = {**FAST, "retries": 1, "timeout": 0.5, "min_rate": 0}  # only the socket timeout
    start = time.monotonic()
    with pytest.raises(DownloadError, match=f"{silent.url}: .*timed out"):
        download(silent.url, tmp_path / "file.bin", sha256="0" * 64, **options)
    assert time.monotonic() - start < 5


def sums_for(dump: bytes) -> str:
    """A sha1sums.txt line vouching for `dump`."""
    return f"{hashlib.sha1(dump).hexdigest()}  {DUMP_NAME}\n"


def serve_dump(server: FileServer, prefix: str, dump: bytes, sums: str) -> None:
    server.add(f"{prefix}/{SUMS_NAME}", sums.encode())
    server.add(f"{prefix}/{DUMP_NAME}", dump)


def test_download_wikipedia_takes_the_sha1_from_the_checksum_source(server, tmp_path):
    dump = b"BZh91AY&SY fake dump bytes " * 100
    sha1 = hashlib.sha1(dump).hexdigest()
    sums = f"{'1' * 40}  enwiki-{DATE}-stub-articles.xml.gz\n{sha1}  {DUMP_NAME}\n"
    server.add(f"/wm/enwiki/{DATE}/{SUMS_NAME}", sums.encode())  # the publisher: no dump
    # The first mirror lacks this dump; the second uses archive.org's item layout.
    server.add(f"/ia/enwiki-{DATE}/{DUMP_NAME}", dump)
    mirrors = [server.base + "/mirror", server.base + "/ia/enwiki-{date}"]
    options = {"checksum_source": server.base + "/wm", **FAST}
    path = download_wikipedia(tmp_path, DATE, mirrors, **options)
    assert path == tmp_path / "wikicorpus_en" / DUMP_NAME
    assert path.read_bytes() == dump
    assert server.ranges(f"/mirror/enwiki/{DATE}/{SUMS_NAME}") == []  # a mirror's sums: unread
    assert server.ranges(f"/mirror/enwiki/{DATE}/{DUMP_NAME}") == [None]

    server.log.clear()  # idempotent: the remembered sha1 and the verified dump need no request
    assert download_wikipedia(tmp_path, DATE, mirrors, **options) == path
    assert server.log == []


def test_a_mirror_cannot_vouch_for_its_own_dump(server, tmp_path):
    real = b"the real dump"
    fake = b"a dump with something added"
    server.add(f"/wm/enwiki/{DATE}/{SUMS_NAME}", sums_for(real).encode())
    serve_dump(server, f"/bad/enwiki/{DATE}", fake, sums_for(fake))
    with pytest.raises(DownloadError, match=r"checksum mismatch .* expected sha1"):
        download_wikipedia(
            tmp_path, DATE, [server.base + "/bad"], checksum_source=server.base + "/wm", **FAST
        )
    assert server.ranges(f"/bad/enwiki/{DATE}/{SUMS_NAME}") == []
    assert not (tmp_path / "wikicorpus_en" / DUMP_NAME).exists()


def test_download_wikipedia_without_a_sha1_is_refused_unless_told(server, tmp_path, caplog):
    dump = b"fake dump"
    serve_dump(server, f"/m/enwiki/{DATE}", dump, sums_for(dump))
    mirrors, source = [server.base + "/m"], server.base + "/wm"  # the publisher lists nothing
    with pytest.raises(DownloadError) as error:
        download_wikipedia(tmp_path, DATE, mirrors, checksum_source=source, **FAST)
    message = str(error.value)
    assert f"no sha1 to verify {DUMP_NAME} against" in message and "\n" not in message
    assert f"not found: {source}/enwiki/{DATE}/{SUMS_NAME}" in message
    assert "--wiki_sha1" in message and "--no_verify" in message
    other = f"{'2' * 40}  enwiki-{DATE}-other.xml.bz2\n"
    server.add(f"/wm/enwiki/{DATE}/{SUMS_NAME}", other.encode())
    with pytest.raises(DownloadError, match=f"lists no sha1 for {DUMP_NAME}"):
        download_wikipedia(tmp_path, DATE, mirrors, checksum_source=source, **FAST)
    assert server.ranges(f"/m/enwiki/{DATE}/{DUMP_NAME}") == []  # the dump was never asked for
    assert not (tmp_path / "wikicorpus_en" / SUMS_NAME).exists()
    with caplog.at_level(logging.WARNING, logger="data.download"):
        path = download_wikipedia(
            tmp_path, DATE, mirrors, checksum_source=source, verify=False, **FAST
        )
    assert path.read_bytes() == dump and "UNVERIFIED" in caplog.text


def test_download_wikipedia_with_a_given_sha1_asks_no_one_else(server, tmp_path):
    dump = b"fake dump"
    serve_dump(server, f"/m/enwiki/{DATE}", dump, f"{'4' * 40}  {DUMP_NAME}\n")
    sha1 = hashlib.sha1(dump).hexdigest()
    path = download_wikipedia(tmp_path, DATE, [server.base + "/m"], sha1=sha1.upper(), **FAST)
    assert path.read_bytes() == dump and server.ranges(f"/m/enwiki/{DATE}/{SUMS_NAME}") == []
    with pytest.raises(DownloadError, match="not a sha1"):
        download_wikipedia(tmp_path, DATE, [server.base + "/m"], sha1="abc", **FAST)


def test_download_wikipedia_refuses_a_dump_that_does_not_match_its_sha1(server, tmp_path):
    serve_dump(server, f"/wm/enwiki/{DATE}", b"fake dump", f"{'3' * 40}  {DUMP_NAME}\n")
    with pytest.raises(DownloadError, match=r"checksum mismatch.*expected sha1 3{40}"):
        download_wikipedia(
            tmp_path, DATE, [server.base + "/wm"], checksum_source=server.base + "/wm", **FAST
        )
    assert not (tmp_path / "wikicorpus_en" / DUMP_NAME).exists()


def test_download_wikipedia_offline_uses_the_given_dump(tmp_path):
    dump = tmp_path / "my.xml.bz2"
    dump.write_bytes(b"dump")
    assert download_wikipedia(tmp_path / "dl", local_dump=dump) == dump
    sha1 = hashlib.sha1(b"dump").hexdigest()
    assert download_wikipedia(tmp_path / "dl", local_dump=dump, sha1=sha1) == dump
    with pytest.raises(DownloadError, match=f"my.xml.bz2: expected sha1 {'5' * 40}"):
        download_wikipedia(tmp_path / "dl", local_dump=dump, sha1="5" * 40)
    dump.write_bytes(b"")
    with pytest.raises(DownloadError, match="is empty"):
        download_wikipedia(tmp_path / "dl", local_dump=dump)
    with pytest.raises(DownloadError, match="does not exist"):
        download_wikipedia(tmp_path / "dl", local_dump=tmp_path / "missing.bz2")


def test_wikipedia_urls_on_the_default_mirrors():
    source = dl.wikipedia_sources("20240601")
    assert source.urls[0] == f"https://dumps.wikimedia.org/enwiki/{DATE}/{DUMP_NAME}"
    assert f"https://archive.org/download/enwiki-{DATE}/{DUMP_NAME}" in source.urls
    assert len(source.urls) == len(dl.DEFAULT_WIKI_MIRRORS)
    with pytest.raises(ValueError, match="YYYYMMDD"):
        dl.wikipedia_sources("latest")


def make_zip(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path.read_bytes()


def test_zip_extraction_is_idempotent(tmp_path, monkeypatch):
    members = {"task/train.tsv": b"a\tb\n" * 100, "task/dev.tsv": b"c\td\n"}
    archive = tmp_path / "task.zip"
    make_zip(archive, members)
    extracted = extract_archive(archive, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in extracted) == sorted(members)
    assert all((tmp_path / name).read_bytes() == data for name, data in members.items())

    def refuse(*args, **kwargs):
        raise AssertionError("extracted again")

    with monkeypatch.context() as patch:
        patch.setattr(dl, "atomic_path", refuse)  # every member is written through one
        extract_archive(archive, tmp_path)

    (tmp_path / "task/train.tsv").write_bytes(b"truncated")  # an interrupted extraction
    extract_archive(archive, tmp_path)
    assert (tmp_path / "task/train.tsv").read_bytes() == members["task/train.tsv"]


def test_archive_members_are_verified_after_extraction(server, tmp_path):
    members = {"model/vocab.txt": b"[PAD]\n[UNK]\n", "model/bert_config.json": b"{}"}
    data = make_zip(tmp_path / "model.zip", members)
    url = server.add("/model.zip", data)
    source = Source(
        "model",
        (url,),
        "weights/model.zip",
        extract=True,
        members_sha256={name: sha256(body) for name, body in members.items()},
    )
    download_dir = tmp_path / "dl"
    fetch_and_extract(source, download_dir, **FAST)
    assert (download_dir / "weights/model/vocab.txt").read_bytes() == members["model/vocab.txt"]

    bad = Source(
        "model",
        (url,),
        "weights/model.zip",
        extract=True,
        members_sha256={"model/vocab.txt": "0" * 64},
    )
    with pytest.raises(DownloadError, match=r"checksum mismatch for .*vocab\.txt"):
        fetch_and_extract(bad, download_dir, **FAST)
    assert not (download_dir / "weights/model.zip").exists()  # the next run fetches it again
    assert not (download_dir / "weights/model/vocab.txt").exists()  # nothing unverified kept


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def zip_with(path: Path, name: str, data: bytes = b"evil", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("good/file.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, data)
    return path


def tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        good = tarfile.TarInfo("good/file.txt")
        good.size = 4
        archive.addfile(good, io.BytesIO(b"fine"))
        member.size = len(data) if member.isfile() else 0
        archive.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


HOSTILE_ZIP_MEMBERS = {
    "/etc/evil": ("absolute path", None),
    "../evil": ("'..' path component", None),
    "good/../../evil": ("'..' path component", None),
    "..\\evil": ("backslash", None),
    "C:/evil": ("drive", None),
    "good//evil": ("empty path component", None),
    "link": ("symbolic link", stat.S_IFLNK | 0o777),
    "device": ("not a regular file", stat.S_IFCHR | 0o666),
}


@pytest.mark.parametrize("name", list(HOSTILE_ZIP_MEMBERS))
def test_hostile_zip_members_are_refused_before_anything_is_written(tmp_path, name):
    reason, mode = HOSTILE_ZIP_MEMBERS[name]
    archive = zip_with(tmp_path / "in" / "a.zip", name, b"/etc" if mode else b"evil", mode)
    out = tmp_path / "in" / "out"
    with pytest.raises(DownloadError) as error:
        extract_archive(archive, out)
    message = str(error.value)
    assert f"{archive}: refusing member {name!r}" in message and reason in message
    assert "\n" not in message
    assert tree(tmp_path) == {"in", "in/a.zip"}  # nothing written, the archive kept


HOSTILE_TAR_MEMBERS = {
    "absolute": (tar_member("/etc/evil"), "absolute path"),
    "dotdot": (tar_member("../evil"), "'..' path component"),
    "nested dotdot": (tar_member("good/../../evil"), "'..' path component"),
    "symlink out": (tar_member("link", tarfile.SYMTYPE, "/etc/passwd"), "a link to '/etc/passwd'"),
    "symlink in": (tar_member("link", tarfile.SYMTYPE, "good/file.txt"), "a link to"),
    "hard link": (tar_member("hard", tarfile.LNKTYPE, "/etc/passwd"), "a link to '/etc/passwd'"),
    "char device": (tar_member("null", tarfile.CHRTYPE), "a device file or FIFO"),
    "block device": (tar_member("sda", tarfile.BLKTYPE), "a device file or FIFO"),
    "fifo": (tar_member("pipe", tarfile.FIFOTYPE), "a device file or FIFO"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TAR_MEMBERS))
def test_hostile_tar_members_are_refused_before_anything_is_written(tmp_path, case):
    member, reason = HOSTILE_TAR_MEMBERS[case]
    archive = tar_with(tmp_path / "in" / "a.tar.gz", member, b"evil")
    with pytest.raises(DownloadError) as error:
        dl.extract_archive(archive, tmp_path / "in" / "out")
    message = str(error.value)
    assert f"{archive}: refusing member {member.name!r}" in message and reason in message
    assert tree(tmp_path) == {"in", "in/a.tar.gz"}


def test_tar_archives_extract_and_links_already_there_are_not_followed(tmp_path):
    archive = tar_with(tmp_path / "a.tar.gz", tar_member("./data/x.txt"), b"data")
    out = tmp_path / "out"
    paths = dl.extract_archive(archive, out)
    assert sorted(p.relative_to(out).as_posix() for p in paths) == ["data/x.txt", "good/file.txt"]
    assert (out / "data" / "x.txt").read_bytes() == b"data"
    victim = tmp_path / "victim"
    victim.mkdir()
    shutil.rmtree(out / "good")
    (out / "good").symlink_to(victim)  # planted: good/file.txt would land in victim
    with pytest.raises(DownloadError, match=r"refusing member 'good/file.txt': leads outside"):
        dl.extract_archive(archive, out)
    assert list(victim.iterdir()) == []
    a_zip = zip_with(tmp_path / "b.zip", "b.zip")  # a member in the archive's own place
    with pytest.raises(DownloadError, match=r"refusing member 'b\.zip': the archive itself"):
        dl.extract_archive(a_zip, tmp_path)
    (tmp_path / "junk.zip").write_bytes(b"neither zip nor tar")
    with pytest.raises(DownloadError, match="neither a zip nor a tar archive; deleted it"):
        dl.extract_archive(tmp_path / "junk.zip", out)


def test_an_archive_with_member_checksums_unpacks_only_those(server, tmp_path):
    members = {"model/vocab.txt": b"[PAD]\n", "model/bert_config.json": b"{}"}
    extra = {"model/run_me.sh": b"rm -rf ~", "other_model/vocab.txt": b"replaced"}
    data = make_zip(tmp_path / "model.zip", members | extra)
    source = Source(
        "model",
        (server.add("/model.zip", data),),
        "weights/model.zip",
        extract=True,
        members_sha256={name: sha256(body) for name, body in members.items()},
    )
    fetch_and_extract(source, tmp_path / "dl", **FAST)
    assert tree(tmp_path / "dl" / "weights") == {
        "model.zip",
        "model",
        "model/vocab.txt",
        "model/bert_config.json",
    }


def test_build_mrpc_reproduces_the_staged_glue_files(shared_data, tmp_path):
    mrpc = shared_data / "glue" / "MRPC"
    outputs = build_mrpc(mrpc, tmp_path)
    assert [p.name for p in outputs] == ["train.tsv", "dev.tsv", "test.tsv"]
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / name).read_bytes() == (mrpc / name).read_bytes(), name
    assert (tmp_path / "test.tsv").read_text().startswith("index\t#1 ID\t#2 ID\t#1 String\t")


def test_download_dataset_glue_mrpc_end_to_end(server, shared_data, tmp_path, monkeypatch):
    """The MRPC catalog entries, served locally from the staged copies, verify and split."""
    staged = shared_data / "glue" / "MRPC"
    local = tuple(
        dataclasses.replace(
            source,
            urls=(server.add("/" + source.dest, (staged / Path(source.dest).name).read_bytes()),),
        )
        for source in dl.GLUE_SOURCES["MRPC"]
    )
    monkeypatch.setitem(dl.GLUE_SOURCES, "MRPC", local)
    paths = dl.download_dataset("glue", tmp_path, tasks=["mrpc"], **FAST)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / "glue" / "MRPC" / name).read_bytes() == (staged / name).read_bytes()
    server.log.clear()
    assert dl.download_dataset("glue", tmp_path, tasks=["MRPC"], **FAST) == paths
    assert server.log == []


def test_catalog_checksums_match_the_staged_copies(shared_data):
    """Independent copies of a few catalog files must verify against the catalog's checksums."""
    squad_dev = next(s for s in dl.SQUAD_SOURCES if s.dest.endswith("dev-v1.1.json"))
    staged = shared_data / "squad" / "v1.1" / "dev-v1.1.json"
    assert not dl.checksum_mismatches(staged, {"sha256": squad_dev.sha256, "md5": squad_dev.md5})
    for source in dl.GLUE_SOURCES["MRPC"]:
        path = shared_data / "glue" / "MRPC" / Path(source.dest).name
        assert not dl.checksum_mismatches(path, {"sha256": source.sha256}), source.name
    uncased = dl.GOOGLE_WEIGHTS["bert_base_uncased"].members_sha256
    vocab = uncased["uncased_L-12_H-768_A-12/vocab.txt"]
    assert not dl.checksum_mismatches(REPO_ROOT / "vocab" / "vocab", {"sha256": vocab})


def test_every_catalog_entry_is_pinned():
    sources = [
        *dl.SQUAD_SOURCES,
        *(s for task in dl.GLUE_SOURCES.values() for s in task),
        *dl.GOOGLE_WEIGHTS.values(),
    ]
    assert len({s.dest for s in sources}) == len(sources)
    for source in sources:
        assert source.sha256 or source.md5 or source.sha1 or source.members_sha256, source.name
        assert all(url.startswith("https://") for url in source.urls), source.name
    assert len(dl.GOOGLE_WEIGHTS) == 7 and len(dl.GLUE_SOURCES) == 9


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "data.download", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "no_proxy": "127.0.0.1,localhost"},
    )


def test_cli_bad_dataset_name_exits_2_with_one_line(tmp_path):
    result = run_cli("--dataset", "bookscorpus", "--download_dir", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown dataset 'bookscorpus'" in lines[0]


def test_cli_download_error_exits_1_with_one_line(server, tmp_path):
    mirror, source = server.base + "/none", server.base + "/wm"
    result = run_cli(
        *("--dataset", "wikicorpus_en", "--download_dir", str(tmp_path), "--mirror", mirror),
        *("--checksum_source", source, "--retries", "1"),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("data.download: error: ")
    assert f"not found: {source}/enwiki/{DATE}/{SUMS_NAME}" in lines[0]


def test_cli_refuses_a_flag_for_another_dataset(tmp_path, capsys):
    assert dl.main(["--dataset", "squad", "--download_dir", str(tmp_path), "--tasks", "MRPC"]) == 2
    assert capsys.readouterr().err.strip() == (
        "data.download: error: --tasks applies only to --dataset glue"
    )
