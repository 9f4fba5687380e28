"""One run per output folder: a lock file that concurrent runs respect on every file system.

Two runs given the same output folder would interleave their checkpoints and delete each
other's. HDF5's file locking and fcntl/flock locks are often switched off exactly where training
writes (Lustre without `flock`, NFS without lockd), so the lock is a plain file,
`.bert-run.lock`, created atomically with its whole content and refreshed by its holder
(`OutputLock`), or for `s3://` outputs an object created with a conditional PUT (`_LockObject`).
A second run is refused with one line naming the holder, unless the holder is known to be gone
(`stale_reason`). `claim_output` is what the entry scripts use; what they write in the folder
is theirs and `fileio.py`'s. A log file that runs append to (`--json-summary`) is held the same
way for as long as a run writes it (`OutputLock(..., single_file=True)`), so two live runs never
interleave their lines in one file, and so is a single output file that two runs would replace
in turn (`create_pretraining_data.py --output_file`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import distributed
import fileio
import storage
from errors import BertError

logger = logging.getLogger(__name__)

LOCK_NAME = ".bert-run.lock"
#: The holder refreshes its lock this often ...
HEARTBEAT_SECONDS = 60.0
#: ... and a lock not refreshed for this long is taken to belong to a dead run.
STALE_SECONDS = 600.0
#: A small file written (and removed) at the start to find a read-only or full folder early.
TEST_WRITE_NAME = ".bert-write-test"


T = TypeVar("T")


class OutputError(BertError):
    """An output folder that this run cannot use: held by another run, or not writable."""


# ------------------------------------------------------------------------------- holders


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.readline().strip()
    except OSError:
        return ""


def machine_id() -> str:
    """This boot of this machine and this PID namespace (Linux), where PIDs are comparable:
    two containers with one host name have different PID namespaces, and PIDs repeat after a
    restart. Empty where the system does not say (then the host name alone counts)."""
    boot = _read_first_line("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{boot}/{namespace}" if boot or namespace else ""


def pid_running(pid: int) -> bool:
    """Whether a process with this PID exists on this machine (True when it cannot be told)."""
    if os.name == "nt" or pid <= 0:
        return True  # Windows' os.kill(pid, 0) would send CTRL_C_EVENT; rely on the age rule
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # PermissionError: it exists, owned by another user
    return True


def _torchrun_job() -> tuple[str, int]:
    """(torchrun's job id, this worker's restart count); ("", 0) outside torchrun. torchrun's
    default job id "none" (c10d rendezvous without --rdzv_id) identifies nothing."""
    job = os.environ.get("TORCHELASTIC_RUN_ID", "").strip()
    count = os.environ.get("TORCHELASTIC_RESTART_COUNT", "").strip()
    return ("" if job == "none" else job), (int(count) if count.isdigit() else 0)


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in the lock file (JSON)."""

    host: str
    machine: str
    pid: int
    started: float
    program: str
    token: str
    torchrun_job: str = ""
    restart: int = 0

    @classmethod
    def this_process(cls, program: str) -> Holder:
        job, restart = _torchrun_job()
        return cls(
            socket.gethostname(),
            machine_id(),
            os.getpid(),
            time.time(),
            program,
            secrets.token_hex(16),
            job,
            restart,
        )

    def to_bytes(self) -> bytes:
        values = dataclasses.asdict(self)
        values["started_at"] = _timestamp(self.started)  # for people reading the file
        return (json.dumps(values, indent=2) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        """The holder a lock file names; None for an empty, partial or foreign file."""
        try:
            values = fileio.parse_json(data, "lock file")
            fields = {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}
            holder = cls(**fields)
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            return None
        types_ok = isinstance(holder.pid, int) and isinstance(holder.started, (int, float))
        text_ok = all(isinstance(v, str) for v in (holder.host, holder.machine, holder.token))
        return holder if types_ok and text_ok and isinstance(holder.restart, int) else None

    def describe(self) -> str:
        job = ""
        if self.torchrun_job:
            job = f", torchrun job {_printable(self.torchrun_job)} restart {self.restart}"
        return (
            f"{_printable(self.program)} (pid {self.pid} on {_printable(self.host)}{job}, "
            f"started {_timestamp(self.started)})"
        )


def _timestamp(seconds: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(seconds).isoformat(sep=" ", timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return "at an unknown time"


def _printable(text: object) -> str:
    """A value from a lock file as one safe line (it could hold anything)."""
    return "".join(c if c.isprintable() else "?" for c in str(text))[:100]


def stale_reason(holder: Holder | None, age: float, me: Holder) -> str | None:
    """Why a lock found in the folder belongs to no live run, or None if it may.

    Gone for sure: on this machine (same host, boot and PID namespace) with a PID no longer
    running; on this host before the machine restarted; an earlier attempt of the same torchrun
    job (torchrun stops every worker before it starts new ones); or not refreshed for
    `STALE_SECONDS` (a holder on another machine that died: `kill -9`, a node failure). Such a
    lock is taken over with a warning."""
    if age > STALE_SECONDS:
        return (
            f"it was not refreshed for {age / 60:.0f} minutes (its holder refreshes it every "
            f"{HEARTBEAT_SECONDS:.0f} s)"
        )
    if holder is None:
        return None  # unreadable: perhaps being written right now; only its age can tell
    if holder.token == me.token:
        return None
    same_host = holder.host == me.host
    if same_host and holder.machine == me.machine and not pid_running(holder.pid):
        return f"its process {holder.pid} is no longer running"
    if same_host and holder.machine and me.machine and holder.machine != me.machine:
        boot, boot_now = holder.machine.split("/")[0], me.machine.split("/")[0]
        if boot and boot_now and boot != boot_now:
            return "this machine has restarted since it was taken"
    if me.torchrun_job and holder.torchrun_job == me.torchrun_job and holder.restart < me.restart:
        return (
            f"it belongs to attempt {holder.restart} of this torchrun job, which torchrun "
            f"stopped before starting attempt {me.restart}"
        )
    return None


# ------------------------------------------------------------------------------- stores


class _Store(Protocol):
    where: str

    def create(self, data: bytes) -> bool: ...

    def read(self) -> tuple[bytes, float] | None: ...

    def refresh(self, data: bytes) -> bool: ...

    def remove(self, data: bytes) -> None: ...


class _LockFile:
    """The lock as a file in a local (or NFS, Lustre) folder."""

    def __init__(self, folder: Path, name: str = LOCK_NAME) -> None:
        self.path = folder / name
        self.where = str(self.path)

    def create(self, data: bytes) -> bool:
        return fileio.create_new_file(self.path, data)

    def read(self) -> tuple[bytes, float] | None:
        """(content, seconds since it was last refreshed), or None if there is no lock."""
        try:
            data, modified = self.path.read_bytes(), self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        return data, max(time.time() - modified, 0.0)

    def refresh(self, data: bytes) -> bool:
        found = self.read()
        if found is None or found[0] != data:
            return False
        os.utime(self.path)
        return True

    def remove(self, data: bytes) -> None:
        """Delete the lock if it still holds `data`. It is first renamed aside, which only one
        of several racing processes can do; had another run re-taken the lock in between, its
        file is put back."""
        aside = self.path.with_name(f".{LOCK_NAME}.{secrets.token_hex(4)}.tmp")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            if aside.read_bytes() != data:
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
        finally:
            aside.unlink(missing_ok=True)


class _LockObject:
    """The lock as an object under an s3:// prefix.

    Created with a conditional PUT (`If-None-Match: *`, which AWS S3 and current S3-compatible
    stores decide atomically) and refreshed by writing it again. Known limits: a store without
    conditional writes is used with a check-then-write (two runs started within the same second
    could both pass it; a warning says so); taking over a stale lock deletes it and writes it
    again, which two runs racing for the same stale lock could both do."""

    def __init__(self, url: str) -> None:
        self.where = f"{url.rstrip('/')}/{LOCK_NAME}"
        self.conditional = True

    def create(self, data: bytes) -> bool:
        if self.read() is not None:
            return False  # also on a store that would ignore If-None-Match
        if self.conditional:
            try:
                return storage.put_bytes(self.where, data, only_if_absent=True)
            except storage.ConditionalWritesUnsupported as err:
                logger.warning(
                    "%s; two runs starting within the same second could both take the lock", err
                )
                self.conditional = False
        storage.put_bytes(self.where, data)
        return True

    def read(self) -> tuple[bytes, float] | None:
        found = storage.get_bytes(self.where)
        if found is None:
            return None
        data, modified = found
        return data, max(time.time() - modified, 0.0)

    def refresh(self, data: bytes) -> bool:
        found = self.read()
        if found is None or found[0] != data:
            return False
        storage.put_bytes(self.where, data)
        return True

    def remove(self, data: bytes) -> None:
        found = self.read()
        if found is not None and found[0] == data:
            storage.delete(self.where)


# ------------------------------------------------------------------------------- the lock


class OutputLock:
    """The lock of one output folder (local path or s3:// prefix).

    It is created atomically with its whole content (`fileio.create_new_file`): host, boot id
    and PID namespace, PID, start time, program, a random token, and the torchrun job id and
    restart count when torchrun started the process. Its holder refreshes it every
    `HEARTBEAT_SECONDS` from a background thread and releases it when the run ends, also on an
    error or Ctrl-C; `kill -9` leaves it, and `stale_reason` then lets the next run take it."""

    def __init__(
        self,
        location: str | os.PathLike,
        program: str,
        flag: str = "--output_dir",
        *,
        single_file: bool = False,
    ):
        """`single_file`: `location` is one local file (a log that runs append to, a file
        replaced whole), locked by `.bert-run.lock.<hash of its name>` beside it: the hash keeps
        the output's name, which may hold "training", out of the folder's listing rules."""
        self.location, self.flag = str(location), flag
        remote = storage.is_remote(location)
        self.store: _Store
        if single_file:
            path = Path(location)
            digest = hashlib.sha256(path.name.encode("utf-8", "surrogateescape")).hexdigest()
            self.store = _LockFile(path.parent, f"{LOCK_NAME}.{digest[:16]}")
        else:
            self.store = _LockObject(self.location) if remote else _LockFile(Path(location))
        self.me = Holder.this_process(program)
        self.data = self.me.to_bytes()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock, or raise OutputError naming the run that holds it."""
        for _ in range(5):
            if self._create():
                self._start_heartbeat()
                return
            found = self._guard(self.store.read)
            if found is None:
                continue  # released in between
            data, age = found
            holder = Holder.parse(data)
            reason = stale_reason(holder, age, self.me)
            if reason is None:
                raise OutputError(self._held_message(holder, age))
            logger.warning(
                "%s %s: taking over the lock %s of %s: %s",
                self.flag,
                self.location,
                self.store.where,
                holder.describe() if holder else "an unreadable lock",
                reason,
            )
            self._guard(lambda data=data: self.store.remove(data))
        raise OutputError(
            f"{self.flag} {self.location}: other runs keep taking its lock {self.store.where}; "
            "is another run starting with the same folder?"
        )

    def _create(self) -> bool:
        return self._guard(lambda: self.store.create(self.data))

    def _guard(self, action: Callable[[], T]) -> T:
        """Run a store call; a folder that cannot be written is one OutputError naming it."""
        try:
            return action()
        except OSError as err:
            raise OutputError(
                f"{self.flag} {self.location}: cannot write its lock file there "
                f"({err.strerror or err})"
            ) from None
        except storage.StorageError as err:
            raise OutputError(f"{self.flag} {self.location}: cannot use its lock: {err}") from None

    def _held_message(self, holder: Holder | None, age: float) -> str:
        who = holder.describe() if holder else "a run whose lock file cannot be read"
        return (
            f"{self.flag} {self.location} is in use by {who}: lock {self.store.where}, refreshed "
            f"{age:.0f} s ago. Wait for that run to end or choose another {self.flag}; if that "
            f"run is gone, delete the lock (it is also taken over once {STALE_SECONDS / 60:.0f} "
            "minutes old)"
        )

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._heartbeat = threading.Thread(
            target=self._refresh_until_stopped, name="output-lock-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _refresh_until_stopped(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                if not self.store.refresh(self.data):
                    logger.error(
                        "%s %s: the lock %s was taken by another run; this run no longer "
                        "holds the folder",
                        self.flag,
                        self.location,
                        self.store.where,
                    )
                    return
            except (OSError, storage.StorageError) as err:
                logger.warning("%s: cannot refresh the lock (%s)", self.store.where, err)

    def release(self) -> None:
        """Stop refreshing the lock and delete it if it is still ours."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
            try:
                self.store.remove(self.data)
            except (OSError, storage.StorageError) as err:
                logger.warning("%s: cannot remove the lock (%s)", self.store.where, err)

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


# ------------------------------------------------------------------------------- claiming


def clean_and_test(location: str, flag: str = "--output_dir") -> None:
    """With the lock held: remove what killed writers left in the folder, then test a write."""
    if storage.is_remote(location):
        try:
            aborted = storage.abort_incomplete_uploads(location)
        except storage.StorageError as err:
            raise OutputError(f"{flag} {location}: {err}") from None
        if aborted:
            logger.warning(
                "%s %s: aborted unfinished uploads of a killed run: %s",
                flag,
                location,
                ", ".join(key.rsplit("/", 1)[-1] for key in aborted),
            )
        return  # the lock object was the test write
    folder = Path(location)
    stale = fileio.remove_stale_temporaries_in(folder, keep=_lock_file_in_use)
    if stale:
        logger.warning(
            "%s %s: removed temporary files a killed run left: %s",
            flag,
            location,
            ", ".join(entry.name for entry in stale),
        )
    try:
        fileio.atomic_write(folder / TEST_WRITE_NAME, lambda handle: handle.write(b"test\n"))
        (folder / TEST_WRITE_NAME).unlink()
    except (OSError, fileio.WriteError) as err:
        failure = fileio.os_error_in(err)
        detail = fileio.describe_os_error(failure) if failure is not None else err
        raise OutputError(f"{flag} {location}: cannot write there ({detail})") from None


def _lock_file_in_use(entry: Path, target: str) -> bool:
    """A temporary file of the lock itself, made in the last minute: another run may be about
    to link it into place (and be refused) or setting a dead lock aside."""
    try:
        return target.startswith(LOCK_NAME) and time.time() - entry.lstat().st_mtime < 60
    except OSError:
        return False


@contextlib.contextmanager
def claim_output(
    location: str | os.PathLike, program: str, *, is_main: bool = True, flag: str = "--output_dir"
) -> Iterator[None]:
    """Hold `location` for this run: the main process creates the folder, takes the lock,
    removes the temporary files killed writers left there (with the lock held, no live writer
    can own one; for s3://, aborts the prefix's unfinished multipart uploads instead), and
    writes a small test file, so a read-only or missing folder is found before any work; the
    other ranks wait for the outcome and raise the same error, so all of them stop on a
    refusal. The lock is released when the block ends, however it ends."""
    location = str(location)
    lock = OutputLock(location, program, flag) if is_main else None
    failure = None
    if lock is not None:
        try:
            if not storage.is_remote(location):
                _make_folder(location, flag)
            lock.acquire()
            clean_and_test(location, flag)
        except BaseException as err:
            lock.release()
            if not isinstance(err, BertError):
                raise
            failure = err
    outcome = distributed.all_gather_object(str(failure) if failure else None)[0]
    if failure is not None:
        raise failure
    if outcome is not None:
        raise OutputError(outcome)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _make_folder(location: str, flag: str) -> None:
    path = Path(location)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {location} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{flag} {location}: cannot create it ({err.strerror or err})") from None
