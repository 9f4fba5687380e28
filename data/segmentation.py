"""Rule-based English sentence splitting for the sharding stage, with nothing to download.

NVIDIA's `TextSharding.py` calls NLTK's `sent_tokenize`, whose punkt model `nltk.download`
fetches at import time: that broke users behind firewalls, and NLTK >= 3.9 renamed the resource
(`punkt_tab`), breaking it again. `split_sentences` is a handful of fixed rules over one
compiled regular expression: no data files, no network, no state, the same output on every
machine, linear time; its docstring gives the rules and their known limits. This module owns
only the splitting of one text; reading articles and writing shards are `data/sharding.py`'s.
"""

from __future__ import annotations

import re

__all__ = ["split_sentences"]

# Always abbreviations: the period after them never ends a sentence (case-sensitive).
# fmt: off
_ABBREVIATIONS = frozenset({
    "Mr", "Mrs", "Ms", "Mx", "Messrs", "Mmes", "Dr", "Drs", "Prof", "Sr", "Jr", "Snr", "Jnr",
    "St", "Ste", "Mt", "Ft", "Rev", "Fr", "Hon", "Pres", "Gov", "Sen", "Rep", "Amb", "Atty",
    "Gen", "Col", "Lt", "Maj", "Capt", "Cmdr", "Cdr", "Adm", "Brig", "Sgt", "Cpl", "Pvt", "Supt",
    "Insp", "Inc", "Ltd", "Co", "Corp", "Bros", "Assn", "Dept", "Univ", "Est", "est", "Ave", "Blvd",
    "vs", "etc", "cf", "al", "approx", "viz", "esp", "incl",
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
})

# Abbreviations only before a number: "No. 5", "Vol. 2", "Fig. 3", "p. 12", "c. 1500".
_NUMBER_ABBREVIATIONS = frozenset({
    "No", "Nos", "no", "Vol", "Vols", "vol", "Fig", "Figs", "fig", "p", "pp", "Art", "Ch", "Sec",
    "Op", "ca", "c",
})
# fmt: on

_OPENERS = "\"'“‘«([{"

# A candidate boundary: a whole run of terminal punctuation (the lookbehind keeps the scan linear
# on long runs), closing quotes/brackets, whitespace; the next character must be ASCII uppercase,
# a digit, an opener, or non-ASCII (then checked with str.isupper).
_BOUNDARY = re.compile(
    r"""(?<![.!?])([.!?]+)["'”’»)\]}]*\s+(?=[A-Z0-9"'“‘«(\[{\u0080-\U0010ffff])"""
)
# One- or two-letter parts joined by periods, the last period being the boundary's: U.S, e.g, Ph.D.
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
_INITIAL_AHEAD = re.compile(r"[A-Z]\.")
_WORD_WINDOW = 64  # longest word looked at before a period; longer ones are never abbreviations


def _word_before(text: str, end: int) -> str:
    """The whitespace-delimited word ending at `end`, without leading quotes or brackets."""
    window = text[max(0, end - _WORD_WINDOW) : end]
    if not window or window[-1].isspace():
        return ""
    return window.rsplit(None, 1)[-1].lstrip(_OPENERS)


def _period_ends_sentence(text: str, period: int, next_start: int) -> bool:
    """Whether the single `.` at `period` ends a sentence whose successor starts at `next_start`."""
    word = _word_before(text, period)
    if not word:
        return True
    if word in _ABBREVIATIONS or _DOTTED.fullmatch(word):
        return False
    if word in _NUMBER_ABBREVIATIONS and text[next_start].isdigit():
        return False
    if len(word) == 1 and word.isupper():
        return word == "I" and not _INITIAL_AHEAD.match(text, next_start)
    return True


def split_sentences(text: str) -> list[str]:
    """Split English `text` into sentences, stripped of surrounding whitespace, none empty.

    A sentence ends after a run of `.`, `!` or `?`, optionally followed by closing quotes or
    brackets, when whitespace follows and the next character is an uppercase letter, a digit, or
    an opening quote or bracket. A run that ends in `!` or `?` always ends the sentence there. A
    run that is a single `.` does not end it when the word before the period is

    - a common abbreviation (`_ABBREVIATIONS`: titles such as Mr, Dr, Prof, Gen, Sen; Inc, Ltd,
      Co, Corp; vs, etc, cf, al; the month abbreviations Jan..Dec), compared case-sensitively;
    - an abbreviation that is only one before a number (`_NUMBER_ABBREVIATIONS`: No, Vol, Fig,
      p, pp, ...) and the next character is a digit ("No. 5" stays together, "He said No. Then"
      splits);
    - a dotted abbreviation of one- or two-letter parts (U.S, U.K, e.g, i.e, a.m, Ph.D);
    - a single capital letter, an initial as in "J. R. R. Tolkien" or "H. americanus"; the
      letter `I` counts as an initial only when another initial follows ("I. M. Pei"), since
      "World War I." usually ends a sentence.

    Periods inside tokens (decimals "3.14", URLs "en.wikipedia.org", "e.g.") never split because
    no whitespace follows them, and an ellipsis "..." is one run, so it is never split inside. A
    period with a space before it (WikiText's tokenised " . ") has no word before it and ends the
    sentence.

    Known limits, all shared with or worse in punkt: a sentence that really ends with a listed
    abbreviation, a dotted abbreviation or an initial ("... moved to the U.S. He", "... Apple
    Inc. The", "... Plan B. Then") is not split; "Yahoo! Japan" is split; a sentence that starts
    with a lowercase letter after a period ("... the end. iPhones ...") is not split; non-English
    text and text without spaces after periods are left as they are.

    Time is linear in the text length: one regex scan, then constant work per candidate
    boundary.
    """
    sentences = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        next_start = match.end()
        following = text[next_start]
        if not (following.isupper() or following.isdigit() or following in _OPENERS):
            continue  # a non-ASCII character that is not an uppercase letter
        punctuation = match.group(1)
        if punctuation == "." and not _period_ends_sentence(text, match.start(1), next_start):
            continue
        sentence = text[start:next_start].strip()
        if sentence:
            sentences.append(sentence)
        start = next_start
    last = text[start:].strip()
    if last:
        sentences.append(last)
    return sentences
