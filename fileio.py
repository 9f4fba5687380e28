"""Small file helpers every module shares: content hashes, atomic writes, and safe joins.

An atomic write goes to a temporary file in the target's folder, is flushed to disk, and is
renamed over the target only when complete, so a crash or a full disk never leaves a
half-written file under the real name (DESIGN.md, Reliability).

`safe_join` is the one place where a name that came from outside data (an S3 key, an archive
member, a file name read from a download) becomes a local path: it only ever returns a path
inside the given root.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from errors import BertError


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        for block in iter(lambda: reader.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write(handle)` on a temporary binary file, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text (LF line ends) atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int = 4) -> None:
    """Write JSON (with a final newline) atomically."""
    atomic_write_text(path, json.dumps(value, indent=indent) + "\n")


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
