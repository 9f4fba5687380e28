"""Downloading the raw datasets: one resumable, verified `download()` and a pinned catalog.

Owns the first pipeline stage: fetching SQuAD v1.1/v2.0, GLUE, Google's pre-trained BERT zips and
an English Wikipedia dump into a download folder, checking every file against a checksum pinned
in the catalog (the dump's: read from Wikimedia's own server), retrying, resuming and changing
mirrors, and unpacking archives member by member inside the folder. Decompressing the dump and
everything after it belong to the later stages (`data/pipeline.py`). Standard library only at
run time, with `fileio.py` and `cli.py` (no torch); tqdm draws the progress bar when installed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.client
import json
import logging
import lzma
import re
import socket
import stat
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any

import cli
from errors import BertError, UsageError
from fileio import (
    WRITE_ERRNOS,
    UnsafePathError,
    atomic_path,
    atomic_write_text,
    describe_os_error,
    parse_json,
    replace_durably,
    safe_join,
)

logger = logging.getLogger(__name__)

USER_AGENT = "bert-pytorch-downloader/0.1 (+python-urllib)"
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_S = 30.0
#: Bounds of --retries and of --timeout/--rate_window: beyond them a download is better
#: restarted than waited on, and a larger timeout does not fit the socket's timeval.
MAX_RETRIES = 100
MAX_WAIT_S = 86400
#: A request whose bytes come slower than MIN_RATE bytes/s over a RATE_WINDOW_S window is ended
#: (a server that trickles a byte at a time never trips the per-read socket timeout).
MIN_RATE = 1024.0
RATE_WINDOW_S = 60.0


class DownloadError(BertError, RuntimeError):
    """A file that could not be fetched or verified; the message names the file and the URL(s)."""


@dataclass(frozen=True)
class Source:
    """One file to fetch: its mirrors, where it goes under the download folder, its checksums.

    `members_sha256` maps paths inside the extraction folder (the zip's folder) to the sha256 of
    the extracted file, for archives whose publishers list checksums of the contents only.
    """

    name: str
    urls: tuple[str, ...]
    dest: str
    sha256: str | None = None
    md5: str | None = None
    sha1: str | None = None
    extract: bool = False
    members_sha256: Mapping[str, str] = field(default_factory=dict)

    def fetch(self, download_dir: Path, **options: Any) -> Path:
        """Download (or find already verified) this file under `download_dir`."""
        return download(
            self.urls,
            Path(download_dir) / self.dest,
            sha256=self.sha256,
            md5=self.md5,
            sha1=self.sha1,
            # An archive published with checksums of its contents only: each member it holds
            # is verified once extracted (`fetch_and_extract`), and only those are extracted.
            unverified_ok=bool(self.members_sha256),
            **options,
        )


def file_digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    """Hex digests of one file for several algorithms, in a single streaming pass."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def checksum_mismatches(path: Path, expected: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(algorithm, expected, actual) for every expected digest that `path` does not have."""
    if not expected:
        return []
    actual = file_digests(path, expected)
    return [(name, want, actual[name]) for name, want in expected.items() if actual[name] != want]


def _expected_digests(sha256: str | None, md5: str | None, sha1: str | None) -> dict[str, str]:
    given = {"sha256": sha256, "md5": md5, "sha1": sha1}
    return {name: digest.strip().lower() for name, digest in given.items() if digest}


def _describe(mismatches: list[tuple[str, str, str]]) -> str:
    return "; ".join(f"expected {name} {want}, got {got}" for name, want, got in mismatches)


class _NotFound(Exception):
    """HTTP 404/410: this mirror does not have the file; retrying it is pointless."""


class _Refused(Exception):
    """Another 4xx answer (403, 401...): this mirror will not serve the file."""


class _Interrupted(Exception):
    """The body ended before the announced length (a dropped connection)."""


class _TooSlow(Exception):
    """Bytes came slower than the minimum rate: a trickling server or a dying link."""


class _RateGuard:
    """Ends a request whose bytes come too slowly, from a watchdog thread.

    The per-read socket timeout cannot end a server that sends one byte just before each
    timeout, so every `window` seconds the watchdog checks that at least `min_rate * window`
    bytes arrived in that window (the status line and headers count as none: they must come
    within the first window). Otherwise it shuts the connection's socket down, which ends the
    blocked read at once, and `too_slow` says what happened. `min_rate` 0 turns it off.
    """

    def __init__(self, min_rate: float, window: float) -> None:
        self.min_rate, self.window = float(min_rate), float(window)
        self.received = 0
        self.too_slow: str | None = None
        self._sockets: list[socket.socket] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="download-rate", daemon=True)

    def __enter__(self) -> _RateGuard:
        if self.min_rate > 0 and self.window > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def attach(self, sock: socket.socket) -> None:
        """Watch `sock` (each new connection of the request, redirects included)."""
        self._sockets.append(sock)
        if self.too_slow:
            _shut(sock)

    def check(self) -> None:
        if self.too_slow:
            raise _TooSlow(self.too_slow)

    def _watch(self) -> None:
        mark = self.received
        while not self._done.wait(self.window):
            got = self.received - mark
            if got < self.min_rate * self.window:
                self.too_slow = (
                    f"too slow: {got} bytes in {self.window:g} s, below the minimum of "
                    f"{self.min_rate:g} bytes/s"
                )
                for sock in self._sockets:
                    _shut(sock)
                return
            mark = self.received


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Connection mixin: hands each connected socket to the request's rate guard."""

    rate_guard: _RateGuard

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.rate_guard.attach(self.sock)  # type: ignore[attr-defined]


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


def _watched(connection: type, guard: _RateGuard, *args: Any, **kwargs: Any) -> Any:
    conn = connection(*args, **kwargs)
    conn.rate_guard = guard
    return conn


class _WatchedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: _RateGuard) -> None:
        super().__init__()
        self.guard = guard

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_watched, _WatchedHTTP, self.guard), req)


class _WatchedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: _RateGuard) -> None:
        super().__init__()
        self.guard = guard

    def https_open(self, req: urllib.request.Request) -> Any:
        connection = functools.partial(_watched, _WatchedHTTPS, self.guard)
        return self.do_open(connection, req, context=self._context)


def _open(request: urllib.request.Request, timeout: float, guard: _RateGuard) -> Any:
    """urlopen, with every connection of the request (redirects too) watched by `guard`."""
    opener = urllib.request.build_opener(_WatchedHTTPHandler(guard), _WatchedHTTPSHandler(guard))
    return opener.open(request, timeout=timeout)


class _NullBar:
    def __enter__(self) -> _NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _progress_bar(enabled: bool, total: int | None, initial: int, desc: str) -> Any:
    if enabled:
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is a requirement, but a missing bar must not stop a download
            return _NullBar()
        return tqdm(
            total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc
        )
    return _NullBar()


def _int_header(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of `bytes 100-199/1000` or `bytes */1000`; None where absent."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _fetch_once(
    url: str,
    part: Path,
    *,
    timeout: float,
    progress: bool,
    desc: str,
    min_rate: float = MIN_RATE,
    rate_window: float = RATE_WINDOW_S,
) -> int:
    """One HTTP request appending to `part`; returns the offset it resumed from (0: fresh).

    Each socket read waits at most `timeout` seconds, and the whole request is ended when fewer
    than `min_rate` bytes/s arrive over a `rate_window`-second window (`_RateGuard`).
    Raises _NotFound/_Refused for answers that will not change, _TooSlow, anything else for a
    retry.
    """
    with _RateGuard(min_rate, rate_window) as guard:
        try:
            return _fetch_guarded(url, part, guard, timeout=timeout, progress=progress, desc=desc)
        except (OSError, HTTPException, _Interrupted):
            guard.check()  # the error is the guard's doing: say why
            raise


def _fetch_guarded(
    url: str, part: Path, guard: _RateGuard, *, timeout: float, progress: bool, desc: str
) -> int:
    if part.is_symlink():
        part.unlink()  # appending would write wherever the link points
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = _open(request, timeout, guard)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code in (404, 410):
            raise _NotFound(f"not found: {url}") from None
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total is None or total == offset:
                return offset  # the partial file is already complete; the checksum decides
            part.unlink()
            raise _Interrupted(f"partial file of {offset} bytes does not fit {total}") from None
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise _Refused(f"HTTP {error.code} {error.reason}") from None
        raise
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Interrupted(f"asked to resume at byte {offset}, got byte {start}")
        else:
            if offset:
                logger.info("%s ignores Range requests; restarting %s from zero", url, desc)
            offset = 0
            total = _int_header(response.headers.get("Content-Length"))
        length = _int_header(response.headers.get("Content-Length"))
        expected_size = offset + length if length is not None else total
        with (
            part.open("ab" if offset else "wb") as handle,
            _progress_bar(progress, total, offset, desc) as bar,
        ):
            # read1: whatever has arrived, so the rate guard sees bytes as they come.
            while chunk := response.read1(CHUNK_BYTES):
                handle.write(chunk)
                bar.update(len(chunk))
                guard.received += len(chunk)
    guard.check()
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        raise _Interrupted(f"connection closed after {size} of {expected_size} bytes")
    return offset


def _reuse_existing(dest: Path, expected: Mapping[str, str]) -> bool:
    """True if `dest` can be returned as is; deletes it if it fails its checksum."""
    if not dest.is_file():
        return False
    if not expected:
        logger.info("%s exists (no checksum to verify it against); not downloading", dest)
        return True
    mismatches = checksum_mismatches(dest, expected)
    if not mismatches:
        logger.info("%s exists and is verified; not downloading", dest)
        return True
    logger.warning(
        "%s exists but fails its checksum (%s); downloading again", dest, _describe(mismatches)
    )
    dest.unlink()
    return False


def download(
    urls: str | Sequence[str],
    dest: Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    sha1: str | None = None,
    unverified_ok: bool = False,
    retries: int = 5,
    timeout: float = 60,
    min_rate: float = MIN_RATE,
    rate_window: float = RATE_WINDOW_S,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Fetch one file from the first mirror that serves it, verify it, and move it to `dest`.

    A checksum is required: without one the call is refused unless `unverified_ok` says the
    caller verifies the file another way (or, for `--no_verify`, knowingly not at all).
    Each URL gets up to `retries` attempts, `backoff * 2**attempt` seconds apart (at most 30 s);
    each socket read waits at most `timeout` s, and a mirror sending fewer than `min_rate`
    bytes/s over `rate_window` s is left for the next one.
    Bytes go to `dest` + ".part"; later attempts and later runs resume it with a Range request.
    A 404/410 skips to the next mirror at once. All given checksums must match before the file
    is renamed to `dest`; a mismatch deletes the partial file and raises. A `dest` that already
    exists and verifies is returned without any request (with `unverified_ok` and no checksum,
    any existing `dest`). Raises DownloadError, naming every URL tried, when no mirror succeeds.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError(f"no URL given for {dest}")
    dest = Path(dest)
    expected = _expected_digests(sha256, md5, sha1)
    if not expected and not unverified_ok:
        raise DownloadError(
            f"refusing to download {dest.name} from {urls[0]}: no checksum to verify it against"
        )
    if _reuse_existing(dest, expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    limits = {"timeout": timeout, "min_rate": min_rate, "rate_window": rate_window}
    failures: list[str] = []
    for url in urls:
        last_error = "no attempt made"
        for attempt in range(max(1, retries)):
            try:
                resumed_from = _fetch_once(url, part, progress=progress, desc=dest.name, **limits)
            except _NotFound as error:
                last_error = str(error)
                break
            except (_Refused, _TooSlow) as error:
                last_error = f"{url}: {error}"
                logger.warning("%s; trying the next mirror, if any", last_error)
                break
            except (urllib.error.URLError, HTTPException, OSError, _Interrupted) as error:
                if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:  # no retry helps
                    raise DownloadError(
                        f"cannot write {part}: {describe_os_error(error)}; the bytes received "
                        "are kept there, and a rerun resumes from them"
                    ) from None
                last_error = f"{url}: {error} (after {attempt + 1} attempt(s))"
                logger.warning("%s: attempt %d of %d failed: %s", url, attempt + 1, retries, error)
                if attempt + 1 < retries:
                    time.sleep(min(backoff * 2**attempt, MAX_BACKOFF_S))
                continue
            mismatches = checksum_mismatches(part, expected)
            if not mismatches:
                replace_durably(part, dest)
                logger.info("downloaded %s", dest)
                return dest
            part.unlink()
            if resumed_from:
                # The old partial bytes may come from another version of the file: start clean.
                last_error = f"{url}: resumed file failed its checksum ({_describe(mismatches)})"
                logger.warning("%s; downloading it again from zero", last_error)
                continue
            raise DownloadError(
                f"checksum mismatch for {dest} downloaded from {url}: {_describe(mismatches)}"
            )
        failures.append(last_error)
    raise DownloadError(f"could not download {dest.name}: " + "; ".join(failures))


@dataclass(frozen=True)
class _Member:
    """One entry of a zip or tar archive: its cleaned name, kind and declared size."""

    name: str
    kind: str  # "file" or "dir"
    size: int = 0
    open: Callable[[], IO[bytes]] | None = None


def _member_name(raw: str) -> str:
    """A member's name without the `./` that tar archives made with `tar -C dir .` carry."""
    name = raw
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if name not in ("", ".") else ""


def _zip_members(archive: Path, zipped: zipfile.ZipFile) -> list[_Member]:
    members = []
    for info in zipped.infolist():
        name = _member_name(info.filename)
        mode = info.external_attr >> 16  # Unix mode bits, when a Unix zip tool wrote them
        kind = stat.S_IFMT(mode)
        if info.is_dir():
            members.append(_Member(name, "dir"))
        elif kind in (0, stat.S_IFREG):
            opener = functools.partial(zipped.open, info)
            members.append(_Member(name, "file", info.file_size, opener))
        else:
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise DownloadError(f"{archive}: refusing member {info.filename!r}: {what}")
    return members


def _tar_members(archive: Path, tarred: tarfile.TarFile) -> list[_Member]:
    members = []
    for info in tarred.getmembers():
        name = _member_name(info.name)
        if info.isdir():
            members.append(_Member(name, "dir"))
        elif info.isfile():
            opener = functools.partial(tarred.extractfile, info)
            members.append(_Member(name, "file", info.size, opener))  # type: ignore[arg-type]
        else:
            what = (
                f"a link to {info.linkname!r}"
                if info.issym() or info.islnk()
                else "a device file or FIFO"
            )
            raise DownloadError(f"{archive}: refusing member {info.name!r}: {what}")
    return members


def extract_archive(
    archive: Path, out_dir: Path, only: Collection[str] | None = None
) -> list[Path]:
    """Unpack a zip or tar archive into `out_dir`, unless its files are already there at their
    full size; returns the paths of its files.

    Member names come from outside data, so every one is checked before anything is written,
    and the whole archive is refused (DownloadError naming the archive and the member) for one
    absolute name, `..`, backslash, drive or empty component (`fileio.safe_join`), one name that
    leads outside `out_dir` through an existing link or onto the archive itself, or one member
    that is a link, a device file or a FIFO. Only regular files and folders are written, with
    this process's default permissions (no owner, mode or set-uid bits from the archive).
    With `only`, just those file names are extracted (an archive published with the checksums
    of some members: the others could not be verified) and the rest is skipped with one line.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                return _extract(archive, out_dir, _zip_members(archive, zipped), only)
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                return _extract(archive, out_dir, _tar_members(archive, tarred), only)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as error:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive} is not a valid archive ({error}); deleted it, run again"
        ) from None
    except OSError as error:
        raise DownloadError(f"{archive}: cannot extract into {out_dir}: {error}") from None
    archive.unlink(missing_ok=True)
    raise DownloadError(f"{archive} is neither a zip nor a tar archive; deleted it, run again")


def _extract(
    archive: Path, out_dir: Path, members: list[_Member], only: Collection[str] | None
) -> list[Path]:
    targets: dict[str, Path] = {}
    for member in members:
        if not member.name and member.kind == "dir":
            continue  # the archive's root folder itself
        try:
            target = safe_join(out_dir, member.name)
        except UnsafePathError as error:
            raise DownloadError(f"{archive}: refusing member {member.name!r}: {error}") from None
        if target.resolve() == archive.resolve():
            raise DownloadError(f"{archive}: refusing member {member.name!r}: the archive itself")
        targets[member.name] = target
    files = [m for m in members if m.kind == "file" and (only is None or m.name in only)]
    chosen = {m.name for m in files}
    skipped = [m.name for m in members if m.kind == "file" and m.name not in chosen]
    if skipped:
        logger.info(
            "%s: skipped %d member(s) without a published checksum: %s",
            archive.name,
            len(skipped),
            ", ".join(skipped[:5]),
        )
    paths = [targets[m.name] for m in files]
    if all(
        path.is_file() and not path.is_symlink() and path.stat().st_size == member.size
        for path, member in zip(paths, files, strict=True)
    ):
        logger.info("%s already extracted into %s", archive.name, out_dir)
        return paths
    logger.info("extracting %s into %s", archive.name, out_dir)
    for member, path in zip(files, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        assert member.open is not None
        with atomic_path(path) as tmp, open(tmp, "wb") as writer, member.open() as reader:
            while block := reader.read(CHUNK_BYTES):
                writer.write(block)
    return paths


def verify_members(source: Source, out_dir: Path) -> None:
    """Check the extracted files of `source` against their published sha256; a file that fails
    is deleted, with the archive, so nothing unverified stays behind."""
    for member, digest in source.members_sha256.items():
        path = Path(out_dir) / member
        if not path.is_file():
            raise DownloadError(
                f"{path} is missing after extracting {source.dest} ({source.urls[0]})"
            )
        mismatches = checksum_mismatches(path, {"sha256": digest})
        if mismatches:
            archive = Path(out_dir) / Path(source.dest).name
            archive.unlink(missing_ok=True)
            path.unlink()
            raise DownloadError(
                f"checksum mismatch for {path} extracted from {source.urls[0]}: "
                f"{_describe(mismatches)}; deleted it and {archive.name}, run again to "
                "re-download"
            )


def fetch_and_extract(source: Source, download_dir: Path, **options: Any) -> list[Path]:
    """Fetch `source`; unpack it next to itself if it is an archive and verify its members."""
    path = source.fetch(download_dir, **options)
    if not source.extract:
        return [path]
    extracted = extract_archive(path, path.parent, source.members_sha256 or None)
    verify_members(source, path.parent)
    return extracted


# SQuAD. URLs and md5 from NVIDIA DeepLearningExamples PyTorch/LanguageModeling/BERT/data/squad/
# squad_download.sh (commit 4b9c90dd6760355149efc47d1eb9af6275f6eda3). sha256 of the v1.1 JSONs
# as pinned by stagedml `fetchsquad11` (and ParlAI), of the v2.0 JSONs by facebookresearch/ParlAI
# parlai/tasks/squad2/build.py (commit 0570c9fccb536f045104d10a2f6f658c6d39909c).
_SQUAD_DATASET = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
_CODALAB_BLOB = "https://worksheets.codalab.org/rest/bundles/{}/contents/blob/"

SQUAD_SOURCES: tuple[Source, ...] = (
    Source(
        "squad-v1.1-train",
        (_SQUAD_DATASET + "train-v1.1.json",),
        "squad/v1.1/train-v1.1.json",
        sha256="3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955",
        md5="981b29407e0affa3b1b156f72073b945",
    ),
    Source(
        "squad-v1.1-dev",
        (_SQUAD_DATASET + "dev-v1.1.json",),
        "squad/v1.1/dev-v1.1.json",
        sha256="95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
        md5="3e85deb501d4e538b6bc56f786231552",
    ),
    Source(
        "squad-v1.1-evaluate",
        (_CODALAB_BLOB.format("0xbcd57bee090b421c982906709c8c27e1"),),
        "squad/v1.1/evaluate-v1.1.py",
        md5="afb04912d18ff20696f7f88eed49bea9",
    ),
    Source(
        "squad-v2.0-train",
        (_SQUAD_DATASET + "train-v2.0.json",),
        "squad/v2.0/train-v2.0.json",
        sha256="68dcfbb971bd3e96d5b46c7177b16c1a4e7d4bdef19fb204502738552dede002",
        md5="62108c273c268d70893182d5cf8df740",
    ),
    Source(
        "squad-v2.0-dev",
        (_SQUAD_DATASET + "dev-v2.0.json",),
        "squad/v2.0/dev-v2.0.json",
        sha256="80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8",
        md5="246adae8b7002f8679c027697b0b7cf8",
    ),
    Source(
        "squad-v2.0-evaluate",
        (_CODALAB_BLOB.format("0x6b567e1cf2e041ec80d7098f031c5c9e"),),
        "squad/v2.0/evaluate-v2.0.py",
        md5="ff23213bed5516ea4a6d9edb6cd7d627",
    ),
)


# GLUE. URLs are those of the GLUE download script (W4ngatang's gist, which NVIDIA's
# data/glue/download_mrpc.sh fetches at revision 17b8dd0d724281ed7c3b2aeeda662b92809aadd5);
# sha256 from huggingface/datasets datasets/glue/dataset_infos.json
# (commit 040102f100964a33fd334e2695f1c493fa6b92db), which lists the same URLs.
_GLUE_DATA = "https://dl.fbaipublicfiles.com/glue/data/"
_SENTEVAL = "https://dl.fbaipublicfiles.com/senteval/senteval_data/"


def _glue_zip(task: str, zip_name: str, sha256: str) -> Source:
    return Source(
        f"glue-{task}", (_GLUE_DATA + zip_name,), f"glue/{zip_name}", sha256, extract=True
    )


# The gist's table swaps the QQP and STS URLs; both zips unpack into their own folder anyway.
_GLUE_ZIPS = {  # task folder: (zip, sha256)
    "CoLA": ("CoLA.zip", "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff"),
    "SST-2": ("SST-2.zip", "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"),
    "QQP": ("QQP-clean.zip", "40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0"),
    "STS-B": ("STS-B.zip", "e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85"),
    "MNLI": ("MNLI.zip", "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633"),
    "QNLI": ("QNLIv2.zip", "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5"),
    "RTE": ("RTE.zip", "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee"),
    "WNLI": ("WNLI.zip", "ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46"),
}

# MRPC is not hosted by GLUE: the MSR files come from SentEval and are split by `build_mrpc`.
_MRPC_SOURCES = (
    Source(
        "glue-MRPC-train",
        (_SENTEVAL + "msr_paraphrase_train.txt",),
        "glue/MRPC/msr_paraphrase_train.txt",
        sha256="60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
    ),
    Source(
        "glue-MRPC-test",
        (_SENTEVAL + "msr_paraphrase_test.txt",),
        "glue/MRPC/msr_paraphrase_test.txt",
        sha256="a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
    ),
    Source(
        "glue-MRPC-dev-ids",
        (_GLUE_DATA + "mrpc_dev_ids.tsv",),
        "glue/MRPC/dev_ids.tsv",
        sha256="971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
    ),
)

GLUE_TASKS = ("CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI")
GLUE_SOURCES: dict[str, tuple[Source, ...]] = {
    task: _MRPC_SOURCES if task == "MRPC" else (_glue_zip(task, *_GLUE_ZIPS[task]),)
    for task in GLUE_TASKS
}

#: Task names of the GLUE download script (`--tasks SST`, `STS`) accepted next to the folder names.
GLUE_TASK_ALIASES = {"SST": "SST-2", "STS": "STS-B"}


# Google's pre-trained BERT. URLs and the sha256 of the extracted files (no checksum of the zips
# themselves is published) from NVIDIA DeepLearningExamples PyTorch/LanguageModeling/BERT/data/
# GooglePretrainedWeightDownloader.py (commit 1187980309bb6dd6fd1dbdd93afb326c6687f9e0).
_GOOGLE_BERT = "https://storage.googleapis.com/bert_models/"
_UNCASED_VOCAB = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
_CASED_VOCAB = "eeaa9875b23b04b4c54ef759d03db9d1ba1554838f8fb26c5d96fa551df93d02"


def _google_model(release: str, folder: str, digests: Sequence[str]) -> Source:
    """`digests`: sha256 of bert_config.json, the ckpt data, index and meta files, vocab.txt."""
    files = (
        "bert_config.json",
        "bert_model.ckpt.data-00000-of-00001",
        "bert_model.ckpt.index",
        "bert_model.ckpt.meta",
        "vocab.txt",
    )
    return Source(
        f"google-{folder}",
        (f"{_GOOGLE_BERT}{release}/{folder}.zip",),
        f"google_pretrained_weights/{folder}.zip",
        extract=True,
        members_sha256={
            f"{folder}/{name}": digest for name, digest in zip(files, digests, strict=True)
        },
    )


GOOGLE_WEIGHTS: dict[str, Source] = {
    "bert_base_uncased": _google_model(
        "2018_10_18",
        "uncased_L-12_H-768_A-12",
        (
            "7b4e5f53efbd058c67cda0aacfafb340113ea1b5797d9ce6ee411704ba21fcbc",
            "58580dc5e0bf0ae0d2efd51d0e8272b2f808857f0a43a88aaf7549da6d7a8a84",
            "04c1323086e2f1c5b7c0759d8d3e484afbb0ab45f51793daab9f647113a0117b",
            "dd5682170a10c3ea0280c2e9b9a45fee894eb62da649bbdea37b38b0ded5f60e",
            _UNCASED_VOCAB,
        ),
    ),
    "bert_large_uncased": _google_model(
        "2018_10_18",
        "uncased_L-24_H-1024_A-16",
        (
            "bfa42236d269e2aeb3a6d30412a33d15dbe8ea597e2b01dc9518c63cc6efafcb",
            "bc6b3363e3be458c99ecf64b7f472d2b7c67534fd8f564c0556a678f90f4eea1",
            "68b52f2205ffc64dc627d1120cf399c1ef1cbc35ea5021d1afc889ffe2ce2093",
            "6fcce8ff7628f229a885a593625e3d5ff9687542d5ef128d9beb1b0c05edc4a1",
            _UNCASED_VOCAB,
        ),
    ),
    "bert_base_cased": _google_model(
        "2018_10_18",
        "cased_L-12_H-768_A-12",
        (
            "f11dfb757bea16339a33e1bf327b0aade6e57fd9c29dc6b84f7ddb20682f48bc",
            "734d5a1b68bf98d4e9cb6b6692725d00842a1937af73902e51776905d8f760ea",
            "517d6ef5c41fc2ca1f595276d6fccf5521810d57f5a74e32616151557790f7b1",
            "5f8a9771ff25dadd61582abb4e3a748215a10a6b55947cbb66d0f0ba1694be98",
            _CASED_VOCAB,
        ),
    ),
    "bert_large_cased": _google_model(
        "2018_10_18",
        "cased_L-24_H-1024_A-16",
        (
            "7adb2125c8225da495656c982fd1c5f64ba8f20ad020838571a3f8a954c2df57",
            "6ff33640f40d472f7a16af0c17b1179ca9dcc0373155fb05335b6a4dd1657ef0",
            "ef42a53f577fbe07381f4161b13c7cab4f4fc3b167cec6a9ae382c53d18049cf",
            "d2ddff3ed33b80091eac95171e94149736ea74eb645e575d942ec4a5e01a40a1",
            _CASED_VOCAB,
        ),
    ),
    "bert_base_multilingual_cased": _google_model(
        "2018_11_23",
        "multi_cased_L-12_H-768_A-12",
        (
            "e76c3964bc14a8bb37a5530cdc802699d2f4a6fddfab0611e153aa2528f234f0",
            "55b8a2df41f69c60c5180e50a7c31b7cdf6238909390c4ddf05fbc0d37aa1ac5",
            "7d8509c2a62b4e300feb55f8e5f1eef41638f4998dd4d887736f42d4f6a34b37",
            "95e5f1997e8831f1c31e5cf530f1a2e99f121e9cd20887f2dce6fe9e3343e3fa",
            "fe0fda7c425b48c516fc8f160d594c8022a0808447475c1a7c6d6479763f310c",
        ),
    ),
    "bert_base_multilingual_uncased": _google_model(
        "2018_11_03",
        "multilingual_L-12_H-768_A-12",
        (
            "49063bb061390211d2fdd108cada1ed86faa5f90b80c8f6fdddf406afa4c4624",
            "3cd83912ebeb0efe2abf35c9f1d5a515d8e80295e61c49b75c8853f756658429",
            "87c372c1a3b1dc7effaaa9103c80a81b3cbab04c7933ced224eec3b8ad2cc8e7",
            "27f504f34f02acaa6b0f60d65195ec3e3f9505ac14601c6a32b421d0c8413a29",
            "87b44292b452f6c05afa49b2e488e7eedf79ea4f4c39db6f2f4b37764228ef3f",
        ),
    ),
    "bert_base_chinese": _google_model(
        "2018_11_03",
        "chinese_L-12_H-768_A-12",
        (
            "7aaad0335058e2640bcb2c2e9a932b1cd9da200c46ea7b8957d54431f201c015",
            "756699356b78ad0ef1ca9ba6528297bcb3dd1aef5feadd31f4775d7c7fc989ba",
            "46315546e05ce62327b3e2cd1bed22836adcb2ff29735ec87721396edb21b82e",
            "c0f8d51e1ab986604bc2b25d6ec0af7fd21ff94cf67081996ec3f3bf5d823047",
            "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c",
        ),
    ),
}

#: NVIDIA's key for the 12-layer multilingual uncased model says "large"; accepted as an alias.
GOOGLE_WEIGHT_ALIASES = {"bert_large_multilingual_uncased": "bert_base_multilingual_uncased"}


# English Wikipedia. A dated dump instead of NVIDIA's `enwiki-latest` (which changes under a
# running job and is rotated away). Mirror layouts: `<mirror>/enwiki/<date>/<file>` for the
# Wikimedia server and its rsync mirrors (your.org, acc.umu.se); archive.org keeps each dump as an
# item `enwiki-<date>` holding the files at its top level, so its entry is a template.
DEFAULT_WIKI_DATE = "20240601"
DEFAULT_WIKI_MIRRORS: tuple[str, ...] = (
    "https://dumps.wikimedia.org",
    "https://dumps.wikimedia.your.org",
    "https://ftp.acc.umu.se/mirror/wikimedia.org/dumps",
    "https://archive.org/download/enwiki-{date}",
)


def wiki_dump_name(date: str) -> str:
    return f"enwiki-{date}-pages-articles.xml.bz2"


def wiki_file_url(mirror: str, date: str, filename: str) -> str:
    """URL of one file of the `date` dump on `mirror` (a base URL, or a template with `{date}`)."""
    if "{date}" in mirror:
        folder = mirror.format(date=date)
    else:
        folder = f"{mirror.rstrip('/')}/enwiki/{date}"
    return f"{folder.rstrip('/')}/{filename}"


def wikipedia_sources(
    date: str = DEFAULT_WIKI_DATE, mirrors: Sequence[str] = DEFAULT_WIKI_MIRRORS
) -> Source:
    """The pages-articles dump of `date` on every mirror (its sha1 is read at download time)."""
    _check_wiki_date(date)
    name = wiki_dump_name(date)
    urls = tuple(wiki_file_url(mirror, date, name) for mirror in mirrors)
    return Source("wikicorpus_en", urls, f"wikicorpus_en/{name}")


def _check_wiki_date(date: str) -> None:
    if not re.fullmatch(r"\d{8}", date):
        raise ValueError(f"Wikipedia dump date must be YYYYMMDD, got {date!r} ('latest' moves)")


def parse_sha1sums(text: str, filename: str) -> str | None:
    """The sha1 that a `sha1sum`-format listing gives for `filename`, or None."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename and len(parts[0]) == 40:
            return parts[0].lower()
    return None


#: Where the sha1 of a dump is read by default: Wikimedia's own server, which publishes the
#: dumps. A mirror never vouches for the bytes it serves itself.
WIKI_CHECKSUM_SOURCE = "https://dumps.wikimedia.org"


def _wiki_sha1(date: str, dest: Path, checksum_source: str, **options: Any) -> str:
    """sha1 of the `date` dump from the sums file at `checksum_source`, remembered beside the
    dump (with the URL it came from) so a second run needs no request."""
    sums_name = f"enwiki-{date}-sha1sums.txt"
    sums_url = wiki_file_url(checksum_source, date, sums_name)
    record = dest.with_name(dest.name + ".sha1.json")
    try:
        known = parse_json(record.read_text(encoding="utf-8"), str(record))
        if known.get("from") == sums_url and re.fullmatch(r"[0-9a-f]{40}", known.get("sha1", "")):
            return known["sha1"]
    except (OSError, ValueError, AttributeError):
        pass
    sums_path = dest.with_name(sums_name)
    sums_path.unlink(missing_ok=True)  # never one left by a run that read another source
    hint = (
        "pass --wiki_sha1 with the sha1 Wikimedia published for it (or --checksum_source with "
        "another copy of its sha1sums file you trust), or --no_verify to download it unverified"
    )
    try:
        download(sums_url, sums_path, unverified_ok=True, **{**options, "progress": False})
    except DownloadError as error:
        raise DownloadError(f"no sha1 to verify {dest.name} against: {error}; {hint}") from None
    sha1 = parse_sha1sums(sums_path.read_text(encoding="utf-8", errors="replace"), dest.name)
    sums_path.unlink()
    if sha1 is None:
        raise DownloadError(
            f"{sums_url} lists no sha1 for {dest.name}; refusing an unverified dump: {hint}"
        )
    source = {"file": dest.name, "sha1": sha1, "from": sums_url}
    atomic_write_text(record, json.dumps(source) + "\n")
    return sha1


def download_wikipedia(
    download_dir: Path,
    date: str = DEFAULT_WIKI_DATE,
    mirrors: Sequence[str] = DEFAULT_WIKI_MIRRORS,
    *,
    local_dump: Path | None = None,
    sha1: str | None = None,
    checksum_source: str = WIKI_CHECKSUM_SOURCE,
    verify: bool = True,
    **options: Any,
) -> Path:
    """The `date` pages-articles dump from the first of `mirrors` that serves it, verified.

    The sha1 is `sha1` when given, else the one in the dump's `sha1sums.txt` on
    `checksum_source` (Wikimedia's server by default), never one from the mirror that serves
    the dump: a compromised mirror could otherwise vouch for its own bytes. When no sha1 can be
    had the download is refused, unless `verify` is False, which downloads the dump unverified
    with a warning. `local_dump` skips the network: it is checked against `sha1` when given and
    returned as is. `options` go to `download()`.
    """
    if local_dump is not None:
        local_dump = Path(local_dump)
        if not local_dump.is_file():
            raise DownloadError(f"local Wikipedia dump {local_dump} does not exist")
        if local_dump.stat().st_size == 0:
            raise DownloadError(f"local Wikipedia dump {local_dump} is empty")
        if sha1 and (mismatches := checksum_mismatches(local_dump, {"sha1": sha1.lower()})):
            raise DownloadError(f"local Wikipedia dump {local_dump}: {_describe(mismatches)}")
        logger.info("using the local Wikipedia dump %s (not downloading)", local_dump)
        return local_dump
    source = wikipedia_sources(date, mirrors)
    dest = Path(download_dir) / source.dest
    if sha1 is not None and not re.fullmatch(r"[0-9a-fA-F]{40}", sha1.strip()):
        raise DownloadError(f"--wiki_sha1 {sha1!r}: not a sha1 (40 hex digits)")
    if sha1 is None and verify:
        sha1 = _wiki_sha1(date, dest, checksum_source, **options)
    if sha1 is None:
        logger.warning(
            "UNVERIFIED: %s is downloaded without any checksum (--no_verify): its bytes are "
            "whatever the mirror serves",
            dest.name,
        )
        return download(source.urls, dest, unverified_ok=True, **options)
    return download(source.urls, dest, sha1=sha1, **options)


def build_mrpc(download_dir: Path, out_dir: Path) -> list[Path]:
    """GLUE's MRPC train/dev/test.tsv from the MSR files and dev_ids.tsv in `download_dir`.

    Same rules as GLUE's download script: the header line is copied as is (BOM included);
    each row is stripped, split on tabs and rewritten; pairs listed in dev_ids.tsv go to dev,
    the others to train; test.tsv gets an `index` column instead of the label.
    """
    download_dir, out_dir = Path(download_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with (download_dir / "dev_ids.tsv").open(encoding="utf-8") as ids:
        dev_ids = {tuple(row.strip().split("\t")) for row in ids}
    outputs = [out_dir / name for name in ("train.tsv", "dev.tsv", "test.tsv")]
    with contextlib.ExitStack() as stack:  # all three files appear together, or none changes
        temps = [stack.enter_context(atomic_path(path)) for path in outputs]
        _write_mrpc(download_dir, dev_ids, temps)
    return outputs


def _write_mrpc(download_dir: Path, dev_ids: set[tuple[str, ...]], temps: list[Path]) -> None:
    """Write MRPC's train, dev and test rows into the three files `temps`."""
    with (
        (download_dir / "msr_paraphrase_train.txt").open(encoding="utf-8") as data,
        temps[0].open("w", encoding="utf-8") as train,
        temps[1].open("w", encoding="utf-8") as dev,
    ):
        header = data.readline()
        train.write(header)
        dev.write(header)
        for row in data:
            label, id1, id2, s1, s2 = row.strip().split("\t")
            (dev if (id1, id2) in dev_ids else train).write(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    with (
        (download_dir / "msr_paraphrase_test.txt").open(encoding="utf-8") as data,
        temps[2].open("w", encoding="utf-8") as test,
    ):
        data.readline()
        test.write("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
        for index, row in enumerate(data):
            _, id1, id2, s1, s2 = row.strip().split("\t")
            test.write(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")


def _pick(
    names: Sequence[str] | None, known: Mapping[str, Any], aliases: Mapping[str, str], what: str
) -> list[str]:
    """Canonical keys of `known` for `names` (all of them for None), matched case-insensitively."""
    if not names or any(name.lower() == "all" for name in names):
        return list(known)
    lookup = {key.lower(): key for key in known}
    lookup.update({alias.lower(): key for alias, key in aliases.items()})
    picked = []
    for name in names:
        key = lookup.get(name.lower())
        if key is None:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(known)}")
        if key not in picked:
            picked.append(key)
    return picked


def download_squad(download_dir: Path, **options: Any) -> list[Path]:
    """SQuAD v1.1 and v2.0: train, dev and the official evaluation scripts."""
    return [source.fetch(download_dir, **options) for source in SQUAD_SOURCES]


def download_glue(
    download_dir: Path, tasks: Sequence[str] | None = None, **options: Any
) -> list[Path]:
    """GLUE task folders under `download_dir/glue` (all nine tasks by default)."""
    paths: list[Path] = []
    for task in _pick(tasks, GLUE_SOURCES, GLUE_TASK_ALIASES, "GLUE task"):
        for source in GLUE_SOURCES[task]:
            paths += fetch_and_extract(source, download_dir, **options)
        if task == "MRPC":
            mrpc_dir = Path(download_dir) / "glue" / "MRPC"
            paths += build_mrpc(mrpc_dir, mrpc_dir)
    return paths


def download_google_weights(
    download_dir: Path, models: Sequence[str] | None = None, **options: Any
) -> list[Path]:
    """Google's TensorFlow BERT checkpoints, unpacked and verified (all seven by default)."""
    paths: list[Path] = []
    for model in _pick(models, GOOGLE_WEIGHTS, GOOGLE_WEIGHT_ALIASES, "model"):
        paths += fetch_and_extract(GOOGLE_WEIGHTS[model], download_dir, **options)
    return paths


def _download_wikicorpus(download_dir: Path, **options: Any) -> list[Path]:
    return [download_wikipedia(download_dir, **options)]


DATASETS: dict[str, Callable[..., list[Path]]] = {
    "squad": download_squad,
    "glue": download_glue,
    "google_pretrained_weights": download_google_weights,
    "wikicorpus_en": _download_wikicorpus,
}


def download_dataset(name: str, download_dir: Path, **options: Any) -> list[Path]:
    """Fetch dataset `name` into `download_dir`; `options` are the dataset's keyword arguments.

    glue: `tasks`; google_pretrained_weights: `models`; wikicorpus_en: `date`, `mirrors`,
    `local_dump`, `sha1`, `checksum_source`, `verify`; all: `download()`'s `retries`,
    `timeout`, `min_rate`, `rate_window`, `progress`, `backoff`.
    """
    _check_dataset_name(name)
    return DATASETS[name](Path(download_dir), **options)


def _check_dataset_name(name: str) -> None:
    if name not in DATASETS:
        hint = " (BookCorpus is not offered: its source is gone)" if "book" in name.lower() else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; choose from {', '.join(DATASETS)}")


#: CLI flag, its argparse attribute, the dataset it applies to, its `download_dataset` keyword.
_CLI_OPTIONS = (
    ("--tasks", "tasks", "glue", "tasks"),
    ("--models", "models", "google_pretrained_weights", "models"),
    ("--wiki_date", "wiki_date", "wikicorpus_en", "date"),
    ("--mirror", "mirror", "wikicorpus_en", "mirrors"),
    ("--dump", "dump", "wikicorpus_en", "local_dump"),
    ("--wiki_sha1", "wiki_sha1", "wikicorpus_en", "sha1"),
    ("--checksum_source", "checksum_source", "wikicorpus_en", "checksum_source"),
    ("--no_verify", "verify", "wikicorpus_en", "verify"),
)


def _dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """`download_dataset` keywords from the CLI flags; a flag for another dataset is an error."""
    options: dict[str, Any] = {}
    for flag, attribute, dataset, keyword in _CLI_OPTIONS:
        value = getattr(args, attribute)
        if value is None:
            continue
        if args.dataset in DATASETS and args.dataset != dataset:
            raise ValueError(f"{flag} applies only to --dataset {dataset}")
        if keyword in ("tasks", "models"):  # accept `--tasks MRPC SST-2` and `--tasks MRPC,SST-2`
            value = [name for item in value for name in item.split(",") if name]
        options[keyword] = value
    return options


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.ArgumentParser(
        prog="data.download",
        description="Download and verify the raw datasets (squad, glue, "
        "google_pretrained_weights, wikicorpus_en).",
    )
    parser.add_argument("--dataset", required=True, help=", ".join(DATASETS))
    parser.add_argument("--download_dir", type=Path, required=True)
    parser.add_argument("--wiki_date", help=f"Wikipedia dump date YYYYMMDD ({DEFAULT_WIKI_DATE})")
    parser.add_argument("--mirror", action="extend", nargs="+", help="Wikipedia mirror base URLs")
    parser.add_argument("--dump", type=Path, help="a local enwiki pages-articles dump (offline)")
    parser.add_argument("--tasks", action="extend", nargs="+", help="GLUE tasks (default: all)")
    parser.add_argument("--models", action="extend", nargs="+", help="Google models (default: all)")
    parser.add_argument(
        "--wiki_sha1", help="the sha1 Wikimedia published for the dump (instead of fetching it)"
    )
    parser.add_argument(
        "--checksum_source",
        help="base URL (or template with {date}) of the server whose sha1sums file verifies "
        f"the dump (default: Wikimedia's own, {WIKI_CHECKSUM_SOURCE}; mirrors' copies are "
        "never read)",
    )
    parser.add_argument(
        "--no_verify",
        dest="verify",
        action="store_const",
        const=False,
        help="download the Wikipedia dump even when no sha1 can be had to verify it (unsafe: "
        "its bytes are whatever the mirror serves)",
    )
    parser.add_argument(
        "--retries", type=cli.int_between(0, MAX_RETRIES, "attempts per file"), default=5
    )
    parser.add_argument(
        "--timeout",
        type=cli.positive_float_up_to(MAX_WAIT_S, "seconds, a day"),
        default=60,
        help="seconds per socket read",
    )
    parser.add_argument(
        "--min_rate",
        type=cli.non_negative_float,
        default=MIN_RATE,
        help="end a download slower than this many bytes/s over --rate_window (0: never)",
    )
    parser.add_argument(
        "--rate_window",
        type=cli.positive_float_up_to(MAX_WAIT_S, "seconds, a day"),
        default=RATE_WINDOW_S,
        help="seconds",
    )
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a bug")
    return parser.parse_args(argv)


def check_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """Names, dates and paths before anything is fetched; the dataset's keyword options."""
    try:
        _check_dataset_name(args.dataset)
        options = _dataset_options(args)
        _pick(options.get("tasks"), GLUE_SOURCES, GLUE_TASK_ALIASES, "GLUE task")
        _pick(options.get("models"), GOOGLE_WEIGHTS, GOOGLE_WEIGHT_ALIASES, "model")
        if "date" in options:
            _check_wiki_date(options["date"])
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.dump is not None:
        cli.check_input_file(args.dump, "--dump")
    cli.check_output_dir(args.download_dir, "--download_dir")
    return options


def execute(args: argparse.Namespace) -> None:
    options = check_arguments(args)
    paths = download_dataset(
        args.dataset,
        args.download_dir,
        retries=args.retries,
        timeout=args.timeout,
        min_rate=args.min_rate,
        rate_window=args.rate_window,
        progress=not args.no_progress,
        **options,
    )
    print(f"{args.dataset}: {len(paths)} file(s) ready under {args.download_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run_main("data.download", parse_args, execute, argv)


if __name__ == "__main__":
    sys.exit(main())
