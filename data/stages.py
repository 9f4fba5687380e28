"""What the data-pipeline stages share: their error and how they write an output folder.

A leaf module: it imports nothing of the `data` package, so `data/pipeline.py`, which runs the
stages, and the stage modules it runs (`data/wikipedia.py`, `data/sharding.py`) all import it at
the top without an import circle.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PipelineError(RuntimeError):
    """A stage that failed or produced nothing; the message names the stage and the path."""


@contextmanager
def staged_output_dir(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir` that replaces `out_dir` when the block succeeds.

    On an exception the folder is deleted and `out_dir` is untouched. A folder left by a killed
    run (`.<name>.partial`) is cleared first, so two runs must not share an `out_dir`. Without
    `overwrite`, an existing non-empty `out_dir` is an error before any work is done.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"output folder {out_dir} exists and is not a folder")
    if out_dir.is_dir() and not overwrite and any(out_dir.iterdir()):
        raise PipelineError(f"output folder {out_dir} is not empty: remove it or pass overwrite")
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old)
    else:
        staging.rename(out_dir)
