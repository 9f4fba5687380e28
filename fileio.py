"""Small file helpers every module shares: content hashes and atomic writes of files and folders.

Every file or folder the code produces is written here, under a temporary name beside its
target (`.<name>.<random>.tmp`), flushed to disk (fsync), and renamed over the target only when
complete (`atomic_write`, `atomic_path`, `atomic_folder`; `atomic_paths` and
`atomic_write_files` for files that belong together, all or none): a crash, an exception or Ctrl-C
part-way leaves the target as it was, and what a killed writer left is cleared by
`remove_stale_temporaries`. A write that fails part-way (full disk, quota, file-size limit, I/O
error) is one `WriteError` naming the target and the OS error; `check_room` tells beforehand
whether an output of a known size fits. Also lock-file creation (`create_new_file`) and a real
write test (`probe_writable`). `safe_join` is the one place where a name from outside data (an
S3 key, an archive member, a downloaded file name) becomes a local path, always inside the given
root. What to write, and when, is the callers'.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from errors import BertError


class WriteError(BertError):
    """An output that could not be written (no space, quota, file-size limit, read-only, I/O
    error); the message names the file and the OS error, and says that nothing partial was left.
    Raised from the OSError, which `os_error_in` finds again."""


#: errno values that only a write can give: a read never fills a disk or passes a size limit.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def describe_os_error(err: OSError) -> str:
    """`No space left on device (ENOSPC)`: the message, on one line, and the symbolic errno."""
    code = errno.errorcode.get(err.errno or 0)
    text = " ".join(str(err.strerror or err).split())  # HDF5's messages span lines
    return f"{text} ({code})" if code else text


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still put on the file system where `path` would be
    written (that of the nearest folder above it that exists); None when it cannot be told."""
    path = Path(path)
    for folder in (path, *path.parents):
        try:
            if folder.is_dir():
                return shutil.disk_usage(folder).free
        except (OSError, ValueError):
            return None
    return None


def check_room(path: str | os.PathLike, needed: int, label: str, what: str, advice: str) -> None:
    """Raise a `WriteError`, before any work, when the file system that `path` goes to has less
    than `needed` bytes free: `label` names the flag and path, `what` the output, and `advice`
    ends the line (what to do)."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise WriteError(
            f"{label}: {free / 1e6:.1f} MB free, {needed / 1e6:.1f} MB needed for {what}; {advice}"
        )


def _write_error(paths: list[Path], failure: OSError, existed: list[bool]) -> WriteError:
    if len(paths) > 1:
        kept = "none of them was changed and no partial file was left"
    elif existed[0]:
        kept = "what was there before is unchanged"
    else:
        kept = "no partial file was left"
    where = ", ".join(map(str, paths))
    return WriteError(f"cannot write {where}: {describe_os_error(failure)}; {kept}")


class NotRegularFile(BertError, ValueError):
    """A path to read that is a named pipe, a device or a socket; the message names it."""


def check_regular_file(path: str | os.PathLike) -> None:
    """Refuse, before it is opened, a path that exists but is neither a regular file nor a
    folder: a named pipe blocks its reader until a writer comes, a device never ends, a socket
    cannot be opened. Missing paths and folders are left to the reader, which names them in its
    own terms."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kind = (
        "a named pipe"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a special file"
    )
    raise NotRegularFile(f"{path}: is {kind}, not a regular file; refusing to read it")


class JsonError(BertError, ValueError):
    """A file or text that cannot be read as JSON; the message names it."""


def parse_json(text: str | bytes, where: str) -> Any:
    """`json.loads(text)`, every failure one JsonError naming `where`: syntax, bytes that are
    not UTF-8, an integer beyond Python's integer-string limit (a ValueError of its own) and
    nesting beyond the recursion limit (a RecursionError, which is no ValueError at all)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise JsonError(
            f"{where}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except UnicodeDecodeError as err:
        raise JsonError(f"{where}: not valid JSON (not UTF-8 text: {err.reason})") from None
    except ValueError:  # json gives no position: the int-string limit is all it raises
        raise JsonError(
            f"{where}: cannot be read as JSON (a number of more than "
            f"{sys.get_int_max_str_digits()} digits, Python's limit)"
        ) from None
    except RecursionError:
        raise JsonError(
            f"{where}: cannot be read as JSON (nested deeper than {sys.getrecursionlimit()} levels)"
        ) from None


def read_json(path: str | os.PathLike, what: str = "") -> Any:
    """The JSON value of the file at `path`, failures one JsonError naming `what` and the file
    (`parse_json`); a named pipe or device is refused unopened; OSErrors (a missing file) are
    the caller's to word."""
    check_regular_file(path)
    where = f"{what} {os.fspath(path)}" if what else os.fspath(path)
    with open(path, "rb") as reader:
        data = reader.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JsonError(f"{where}: not valid JSON (not UTF-8 text: {err.reason})") from None
    return parse_json(text, where)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    check_regular_file(path)
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _temporary_sibling(path: Path, folder: bool) -> Path:
    """Create a new empty file (or folder) `.<name>.<random>.tmp` beside `path`.

    Made with os.open / os.mkdir, not tempfile, so it gets the permissions a plain open() would
    (the umask's), not tempfile's private 0600 / 0700."""
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            if folder:
                os.mkdir(candidate, 0o777)
            else:
                os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return candidate
        except FileExistsError:
            continue


_TEMPORARY_NAME = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp", re.DOTALL)


def temporary_target(name: str) -> str | None:
    """The target name of a `_temporary_sibling` named `name`, or None if it is not one."""
    match = _TEMPORARY_NAME.fullmatch(name)
    return match.group(1) if match else None


def _is_temporary_of(entry: Path, path: Path) -> bool:
    """Whether `entry` is named like a `_temporary_sibling` of `path`."""
    return temporary_target(entry.name) == path.name


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's content (a folder: its list of names) to disk."""
    if os.name == "nt" and path.is_dir():
        return  # Windows cannot open a folder for fsync; NTFS journals its names
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, and `folder` itself."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root, name))
        _fsync(Path(root))


def replace_durably(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Rename a complete file over `target` (same file system), flushed to disk first and the
    rename itself after: for files written under their own scratch name (resumable downloads)."""
    _fsync(Path(source))
    os.replace(source, target)
    _fsync(Path(target).parent)


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` with its missing parents; returns the ones made, deepest first."""
    made = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            break
        made.append(parent)
    folder.mkdir(parents=True, exist_ok=True)
    return made


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write made, deepest first, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file beside `path` (empty, closed) for the block to write by name.

    When the block ends normally the file is fsynced and renamed to `path`; on any exception,
    KeyboardInterrupt included, it is removed and `path` is left untouched, and so are the
    folders above it (any that were made for it are removed again). A failed write (no space,
    quota, file-size limit; any error in the flush or the rename) becomes a `WriteError` naming
    `path`. Close the file inside the block."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(
    paths: Sequence[str | os.PathLike], writes_only: bool = False
) -> Iterator[list[Path]]:
    """`atomic_path` for several files that belong together (a model and its configs, the
    prediction files): all are renamed into place once every one is complete and flushed, or
    none is. With `writes_only` (the block does nothing but write them) any OSError of the
    block is a `WriteError`; otherwise only those a read cannot give (ENOSPC, EDQUOT, EFBIG) or
    that name one of the temporary files."""
    targets = [Path(p) for p in paths]
    existed = [p.exists() for p in targets]
    made: list[Path] = []
    temps: list[Path] = []
    finishing = False
    try:
        for target in targets:
            made += _make_folders(target.parent)
            temps.append(_temporary_sibling(target, folder=False))
        yield list(temps)
        finishing = True  # from here on every failure is the write's
        for tmp in temps:
            _fsync(tmp)
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    except BaseException as err:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        _remove_empty(made)
        failure = os_error_in(err) if isinstance(err, Exception) else None
        if failure is None or isinstance(err, WriteError):
            raise
        if finishing or writes_only or not temps or _names_one_of(failure, temps):
            raise _write_error(targets, failure, existed) from err
        if failure.errno in WRITE_ERRNOS:
            raise _write_error(targets, failure, existed) from err
        raise
    for folder in dict.fromkeys(target.parent for target in targets):
        _fsync(folder)  # the renames themselves


def _names_one_of(failure: OSError, temps: list[Path]) -> bool:
    return failure.filename is not None and os.fspath(failure.filename) in map(str, temps)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(handle)` on a temporary binary file, then rename it to `path`; any OSError
    of `write` is a `WriteError` naming `path` (the handle is all it writes to)."""
    with atomic_paths([path], writes_only=True) as (tmp,), open(tmp, "wb") as handle:
        write(handle)


def atomic_write_files(contents: Mapping[Path, bytes]) -> None:
    """Write several files that belong together: all are renamed into place, or none is."""
    with atomic_paths(list(contents), writes_only=True) as temps:
        for tmp, data in zip(temps, contents.values(), strict=True):
            with open(tmp, "wb") as handle:
                handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text (LF line ends) atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int = 4) -> None:
    """Write JSON (with a final newline) atomically."""
    atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


def _non_empty_folder(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path` for the block to fill.

    When the block ends normally every file and folder in it is fsynced and it is renamed to
    `path`; on any exception, KeyboardInterrupt included, it is removed and `path` is left
    untouched. A missing `path` or an empty folder there is simply replaced. A non-empty folder
    is replaced only with `replace=True` (moved aside, then deleted once the new one is in
    place); without it, FileExistsError is raised before the block runs. A failed write (no
    space, quota, file-size limit, or any OS error in the flush or the rename) becomes a
    `WriteError` naming `path`.
    """
    path = Path(path)
    if not replace and _non_empty_folder(path):
        raise FileExistsError(f"{path}: a non-empty folder is in the way")
    made = _make_folders(path.parent)
    try:
        tmp = _temporary_sibling(path, folder=True)
    except BaseException:
        _remove_empty(made)
        raise
    old = None
    existed = _non_empty_folder(path)
    finishing = False
    try:
        yield tmp
        finishing = True  # from here on every OS error is the write's
        _fsync_tree(tmp)
        if _non_empty_folder(path):
            if not replace:
                raise FileExistsError(f"{path}: a non-empty folder appeared while writing")
            old = _temporary_sibling(path, folder=True)
            os.replace(path, old)  # over the new empty folder
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                old = None
                raise
        else:
            os.replace(tmp, path)  # over nothing, or over an empty folder
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _remove_empty(made)
        failure = os_error_in(err) if isinstance(err, Exception) else None
        if failure is None or failure.errno is None or isinstance(err, WriteError):
            raise
        if finishing or failure.errno in WRITE_ERRNOS:
            raise _write_error([path], failure, [existed]) from err
        raise
    _fsync(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def probe_writable(folder: str | os.PathLike) -> None:
    """Create a temporary file in the existing `folder` and remove it again: the OSError a real
    write there would meet (read-only, no permission, no space for a name), before any work."""
    _temporary_sibling(Path(folder) / "write-probe", folder=False).unlink()


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders of writers of `path` that were killed before they
    could clean up; returns what was removed. Only for outputs that one process writes at a
    time: a concurrent writer's temporary entry would be removed too."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(entry for entry in path.parent.iterdir() if _is_temporary_of(entry, path))
    _remove_entries(stale)
    return stale


def remove_stale_temporaries_in(
    folder: str | os.PathLike, keep: Callable[[Path, str], bool] | None = None
) -> list[Path]:
    """Delete every temporary file and folder directly in `folder` (whatever its target name)
    and return them sorted: for a folder that one run owns, under a lock, where a temporary
    entry can only be left by a writer that was killed. `keep(entry, target name)` spares
    entries that may still be in use (another process's lock file being created)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = []
    for entry in sorted(folder.iterdir()):
        target = temporary_target(entry.name)
        if target is not None and not (keep and keep(entry, target)):
            stale.append(entry)
    _remove_entries(stale)
    return stale


def _remove_entries(entries: list[Path]) -> None:
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


#: errno values of a file system that has no hard links (some FUSE, SMB and object-store mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def create_new_file(path: str | os.PathLike, data: bytes) -> bool:
    """Create `path` holding `data`, unless a file of that name exists; True if it was created.

    Readers never see the file empty or part-written: the data goes into a temporary file,
    which is flushed and then hard-linked to `path`. A link fails if the name exists, and NFS
    and Lustre perform it atomically on the server, where `O_EXCL` was not always atomic
    (NFSv2). On a file system without hard links the file is created with `O_CREAT | O_EXCL`
    and then written, so a reader may briefly find it empty."""
    path = Path(path)
    tmp = _temporary_sibling(path, folder=False)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as err:
            if err.errno not in _NO_HARD_LINKS:
                raise
            return _create_exclusive(path, data)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(path.parent)
    return True


def _create_exclusive(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def os_error_in(err: BaseException | None) -> OSError | None:
    """`err` if it is an OSError, else the first OSError it was raised from or during (torch.save
    reports a failed write of its file handle as a RuntimeError raised during the OSError)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class UnsafePathError(BertError, ValueError):
    """A name from outside data that would lead out of its folder; the message says why."""


#: Control characters (NUL included) have no place in a file name and can forge log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: `C:` starts an absolute path on Windows.
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Longest file name component most file systems take (ext4, xfs, NTFS: 255 bytes/units).
MAX_COMPONENT_BYTES = 255


def check_relative_name(name: str) -> list[str]:
    """The `/`-separated components of `name` if it is a plain relative path, else raise.

    Refused: an empty name; control characters (NUL included); a backslash or a drive letter
    (separators elsewhere); a leading `/`; an empty, `.` or `..` component, also one that Unicode
    compatibility normalisation (NFKC, which some file systems and tools apply) turns into one
    or into a separator (`‥`, `．．`, `／`); a component longer than 255 bytes.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError("empty name")
    if _CONTROL.search(name):
        raise UnsafePathError("control character in the name")
    if "\\" in name:
        raise UnsafePathError("backslash in the name")
    if name.startswith("/"):
        raise UnsafePathError("absolute path")
    parts = name.split("/")
    for part in parts:
        folded = unicodedata.normalize("NFKC", part)
        if not part:
            raise UnsafePathError("an empty path component")
        if part in (".", "..") or folded in ("", ".", ".."):
            raise UnsafePathError(f"a {part!r} path component")
        if any(sep in folded for sep in ("/", "\\")) or _DRIVE.match(part):
            raise UnsafePathError(f"{part!r} holds a separator or a drive")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(f"a component longer than {MAX_COMPONENT_BYTES} bytes")
    return parts


def safe_join(root: str | os.PathLike, name: str) -> Path:
    """`root / name` for a `name` taken from outside data, checked to stay inside `root`.

    `name` must pass `check_relative_name`; then both paths are resolved (following any
    symbolic link that already exists on the way) and the result must lie strictly inside the
    resolved root, so a link planted anywhere under `root` cannot lead out of it either.
    Raises UnsafePathError; callers turn it into their own one-line error naming the source.
    """
    parts = check_relative_name(name)
    root = Path(root)
    path = root.joinpath(*parts)
    real_root = root.resolve()
    try:
        real_path = path.resolve()
    except (OSError, RuntimeError) as err:  # a symbolic-link loop
        raise UnsafePathError(f"cannot resolve: {err}") from None
    if real_path == real_root or not real_path.is_relative_to(real_root):
        raise UnsafePathError(f"leads outside {root} (to {real_path})")
    return path
