"""What the data-pipeline stages share: their error and how they write an output folder.

A leaf of the `data` package: it imports none of its modules (only `fileio`), so
`data/pipeline.py`, which runs the stages, and the stage modules it runs (`data/wikipedia.py`,
`data/sharding.py`) all import it at the top without an import circle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from errors import BertError
from fileio import atomic_folder, remove_stale_temporaries


class PipelineError(BertError, RuntimeError):
    """A stage that failed or produced nothing; the message names the stage and the path."""


@contextmanager
def staged_output_dir(out_dir: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside `out_dir` that replaces `out_dir` when the block succeeds.

    The folder is `fileio.atomic_folder`'s: on an exception it is deleted and `out_dir` is
    untouched. Folders left beside `out_dir` by a killed run are cleared first, so two runs must
    not share an `out_dir`. Without `overwrite`, an existing non-empty `out_dir` is an error
    before any work is done.
    """
    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"output folder {out_dir} exists and is not a folder")
    if out_dir.is_dir() and not overwrite and any(out_dir.iterdir()):
        raise PipelineError(f"output folder {out_dir} is not empty: remove it or pass overwrite")
    remove_stale_temporaries(out_dir)
    with atomic_folder(out_dir, replace=overwrite) as staging:
        yield staging
