"""errors.py: the exit statuses of the error classes and the rule for results from nothing."""

from __future__ import annotations

import pytest

from errors import BertError, UsageError, refuse_if_nothing_usable


class OwnError(BertError):
    """A module's own subclass, as squad.SquadError or glue.GlueError."""


def test_nothing_usable_is_one_error_naming_the_source_and_why():
    refuse_if_nothing_usable(1, "a.json", "questions", "unused")  # one item is enough
    with pytest.raises(BertError) as caught:
        refuse_if_nothing_usable(0, "a.json", "questions", "the file holds none")
    assert str(caught.value) == "a.json: no usable questions (the file holds none)"
    assert caught.value.exit_code == 1
    with pytest.raises(OwnError, match=r"^--question 'x': no usable text \(why\)$"):
        refuse_if_nothing_usable(0, "--question 'x'", "text", "why", OwnError)
    with pytest.raises(UsageError) as caught:
        refuse_if_nothing_usable(0, "--context", "text", "why", UsageError)
    assert caught.value.exit_code == 2
