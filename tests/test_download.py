"""data/download.py against a local HTTP server: resume, mirrors, checksums, idempotence, the
Wikipedia sha1 lookup, zip extraction, the MRPC split (against the staged GLUE files), the CLI.

The server runs on 127.0.0.1 in a thread and serves in-memory files with real Range/206/416
answers; per path it can drop the connection part-way through the first response, ignore Range,
or answer with a fixed error status.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import subprocess
import sys
import threading
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
    extract_zip,
    fetch_and_extract,
)
from tests.conftest import REPO_ROOT

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
        download(missing, tmp_path / "other.bin", **FAST)


def test_all_mirrors_failing_gives_one_message_listing_each(server, tmp_path):
    missing = server.add("/a/file.bin", status=404)
    broken = server.add("/b/file.bin", status=503)
    refused = server.add("/c/file.bin", status=403)
    with pytest.raises(DownloadError) as error:
        download([missing, broken, refused], tmp_path / "file.bin", **FAST)
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


def serve_dump(server: FileServer, prefix: str, dump: bytes, sums: str) -> None:
    server.add(f"{prefix}/{SUMS_NAME}", sums.encode())
    server.add(f"{prefix}/{DUMP_NAME}", dump)


def test_download_wikipedia_verifies_the_dump_with_the_sha1_from_its_sums_file(server, tmp_path):
    dump = b"BZh91AY&SY fake dump bytes " * 100
    sha1 = hashlib.sha1(dump).hexdigest()
    sums = f"{'1' * 40}  enwiki-{DATE}-stub-articles.xml.gz\n{sha1}  {DUMP_NAME}\n"
    # The first mirror lacks this dump; the second uses archive.org's item layout.
    serve_dump(server, f"/ia/enwiki-{DATE}", dump, sums)
    mirrors = [server.base + "/wm", server.base + "/ia/enwiki-{date}"]
    path = download_wikipedia(tmp_path, DATE, mirrors, **FAST)
    assert path == tmp_path / "wikicorpus_en" / DUMP_NAME
    assert path.read_bytes() == dump
    assert server.ranges(f"/wm/enwiki/{DATE}/{SUMS_NAME}") == [None]

    server.log.clear()  # idempotent: the kept sums file and the verified dump need no request
    assert download_wikipedia(tmp_path, DATE, mirrors, **FAST) == path
    assert server.log == []


def test_download_wikipedia_refuses_a_dump_its_sums_file_does_not_list(server, tmp_path):
    dump = b"fake dump"
    serve_dump(server, f"/wm/enwiki/{DATE}", dump, f"{'2' * 40}  enwiki-{DATE}-other.xml.bz2\n")
    with pytest.raises(DownloadError, match=f"lists no sha1 for {DUMP_NAME}"):
        download_wikipedia(tmp_path, DATE, [server.base + "/wm"], **FAST)
    assert server.ranges(f"/wm/enwiki/{DATE}/{DUMP_NAME}") == []
    assert not (tmp_path / "wikicorpus_en" / SUMS_NAME).exists()


def test_download_wikipedia_refuses_a_dump_that_does_not_match_its_sha1(server, tmp_path):
    serve_dump(server, f"/wm/enwiki/{DATE}", b"fake dump", f"{'3' * 40}  {DUMP_NAME}\n")
    with pytest.raises(DownloadError, match=r"checksum mismatch.*expected sha1 3{40}"):
        download_wikipedia(tmp_path, DATE, [server.base + "/wm"], **FAST)
    assert not (tmp_path / "wikicorpus_en" / DUMP_NAME).exists()


def test_download_wikipedia_offline_uses_the_given_dump(tmp_path):
    dump = tmp_path / "my.xml.bz2"
    dump.write_bytes(b"dump")
    assert download_wikipedia(tmp_path / "dl", local_dump=dump) == dump
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
    extracted = extract_zip(archive, tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in extracted) == sorted(members)
    assert all((tmp_path / name).read_bytes() == data for name, data in members.items())

    def refuse(*args, **kwargs):
        raise AssertionError("extracted again")

    with monkeypatch.context() as patch:
        patch.setattr(zipfile.ZipFile, "extractall", refuse)
        extract_zip(archive, tmp_path)

    (tmp_path / "task/train.tsv").write_bytes(b"truncated")  # an interrupted extraction
    extract_zip(archive, tmp_path)
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


def test_cli_bad_dataset_name_exits_1_with_one_line(tmp_path):
    result = run_cli("--dataset", "bookscorpus", "--download_dir", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown dataset 'bookscorpus'" in lines[0]


def test_cli_download_error_exits_1_with_one_line(server, tmp_path):
    mirror = server.base + "/none"
    result = run_cli(
        *("--dataset", "wikicorpus_en", "--download_dir", str(tmp_path), "--mirror", mirror)
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"not found: {mirror}/enwiki/{DATE}/{SUMS_NAME}" in lines[0]


def test_cli_refuses_a_flag_for_another_dataset(tmp_path, capsys):
    assert dl.main(["--dataset", "squad", "--download_dir", str(tmp_path), "--tasks", "MRPC"]) == 1
    assert capsys.readouterr().err.strip() == "error: --tasks applies only to --dataset glue"
