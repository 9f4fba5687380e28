"""The one base class of the errors a user is shown as a single line.

Every module raises its own subclass (`ConfigError`, `CheckpointError`, `ShardError`, ...),
whose message names the file, flag or key at fault (JSON files are read through
`fileio.read_json`, whose errors say why a file could not be parsed). The entry scripts'
shared `main()` wrapper (`cli.run_main`) prints such an error as one line and exits with
status 1, or 2 for a `UsageError` (a flag value or combination that cannot work, as argparse
exits for a bad flag). Anything else that escapes is a bug: it is printed as one line too,
with a pointer to `--debug` for the traceback. `refuse_if_nothing_usable` is the one rule for
input that leaves nothing to train on, predict or score: an error naming the source and why,
never an empty result.

This module imports nothing, so every module can use it.
"""

from __future__ import annotations


class BertError(Exception):
    """An expected failure (bad input, missing file, diverged run) described in one line."""

    exit_code = 1


class MissingDependency(BertError, ImportError):
    """An optional package a chosen feature needs is not installed; the message says which."""


class UsageError(BertError, ValueError):
    """A flag value or a combination of flags that cannot work; the message names the flag."""

    exit_code = 2


def refuse_if_nothing_usable(
    count: int, source: object, what: str, why: str, error: type[BertError] = BertError
) -> None:
    """Stop a run that would train, predict or score over zero usable items (a result from
    nothing looks like a success: empty predictions, a score of 0, a loss of nothing).

    `source` names the file, folder or flag the items came from, `what` the items ("SQuAD
    questions"), `why` what left none usable; the error is `error` (a module's subclass)."""
    if count == 0:
        raise error(f"{source}: no usable {what} ({why})")
