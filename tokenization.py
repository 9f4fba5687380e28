"""BERT WordPiece tokenization with Google's algorithm, as NVIDIA's BERT for PyTorch ships it.

Owns the vocabulary loader and its checks (a token listed twice refused, a casing that does not
fit lower-casing warned, ``warn_if_mostly_unknown`` for the data readers), ``BasicTokenizer``
(cleaning, CJK splitting, lower-casing with accent stripping, punctuation splitting),
``WordpieceTokenizer`` (greedy longest-match-first) and ``BertTokenizer``, which chains the two,
in Python with a per-word cache or, chosen explicitly with ``backend="fast"``, in Hugging Face
``tokenizers`` built from this module's character classes. Vocabularies are local files only.
Building model inputs ([CLS]/[SEP], padding, masking) is left to the task modules; the README
lists how this differs from NVIDIA's ``tokenization.py``.
"""

from __future__ import annotations

import collections
import logging
import operator
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from errors import BertError, MissingDependency
from fileio import check_regular_file

logger = logging.getLogger(__name__)

DEFAULT_NEVER_SPLIT = ("[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
BACKENDS = ("python", "fast")

# Bounds BertTokenizer's per-word cache (about 50 MB when full); frequent words refill it fast.
_MAX_CACHE_ENTRIES = 1 << 18


class VocabError(BertError, ValueError):
    """The vocabulary file cannot be used: empty, not UTF-8 text, a directory, a token listed
    twice, or a special token that is needed missing."""


#: Share of [UNK] among a data set's tokens above which it is warned about. Text tokenized with
#: its own vocabulary and casing has 0.00-0.09% [UNK] (SQuAD v1.1 dev, MRPC, SST-2, WikiText-2,
#: both BERT vocabularies); an uncased vocabulary without lower-casing gives 15-18% on the same
#: text. 5% sits about 50x above the first and 3x below the second.
UNKNOWN_SHARE_WARNING = 0.05


def _read_vocab_tokens(vocab_file: str | os.PathLike[str]) -> list[str]:
    """Tokens of a vocabulary file in line order, read as Google's ``load_vocab`` reads them.

    Lines end at line feeds only, each is stripped of surrounding whitespace, and a
    whitespace-only line stays an entry (the empty token, never produced by tokenizing), so the
    ids of the lines after it are their line indices. A leading UTF-8 byte-order mark is
    dropped (Google's would keep it as part of the first token, usually [PAD]).
    """
    path = os.fspath(vocab_file)
    if os.path.isdir(path):
        raise VocabError(f"vocab file {path} is a directory; expected a file with one token a line")
    check_regular_file(path)
    try:
        with open(path, "rb") as reader:
            data = reader.read(1 << 16)  # a binary file (a checkpoint?) is refused unread
            if b"\0" not in data:
                data += reader.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"vocab file not found: {path}") from None
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise VocabError(
            f"vocab file {path} is not a text file (a NUL byte on line {line}); expected UTF-8 "
            "text with one token a line"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise VocabError(
            f"vocab file {path} is not UTF-8 text: byte 0x{data[err.start]:02x} on line {line} "
            "cannot be decoded"
        ) from None
    tokens = _tokens_of_text(text)
    if not any(tokens):
        raise VocabError(f"vocab file {path} holds no tokens")
    return tokens


def _tokens_of_text(text: str) -> list[str]:
    """The entries of a vocabulary file's decoded text, one a line (see `_read_vocab_tokens`)."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":  # the end of the last line, not a line of its own
        lines.pop()
    return [line.strip() for line in lines]


def _vocab_from_tokens(tokens: Sequence[str], path: str) -> collections.OrderedDict[str, int]:
    """Token -> id (its line index); a token on two lines is refused.

    Google's loader keeps the later line's id for a repeated token, so the earlier id can never
    be produced, and loaders that keep the first one (or count distinct tokens) disagree with it
    on every id: the same file would mean different ids to different tools. Blank lines are not
    tokens and may repeat.
    """
    vocab: collections.OrderedDict[str, int] = collections.OrderedDict()
    for index, token in enumerate(tokens):
        if token in vocab and token:
            shown = repr(token) if len(token) <= 60 else f"{token[:60]!r}..."
            raise VocabError(
                f"vocab file {path} lists the token {shown} twice, on lines "
                f"{vocab[token] + 1} and {index + 1}; each token must have one id"
            )
        vocab[token] = index
    return vocab


def load_vocab(vocab_file: str | os.PathLike[str]) -> collections.OrderedDict[str, int]:
    """Read a vocabulary with one token per line; a token's id is its line index.

    Lines are stripped of surrounding whitespace, as Google's loader does. Raises
    ``FileNotFoundError`` for a missing file and ``VocabError`` for an unusable one (not UTF-8
    text, no tokens, a token on two lines).
    """
    return _vocab_from_tokens(_read_vocab_tokens(vocab_file), os.fspath(vocab_file))


def vocab_from_text(text: str, vocab_file: str | os.PathLike[str]) -> dict[str, int]:
    """What `load_vocab` would read from a file `vocab_file` holding `text`, for a writer to
    check its output before writing it; ``VocabError`` where the reader would refuse it."""
    return _vocab_from_tokens(_tokens_of_text(text), os.fspath(vocab_file))


def require_tokens(
    vocab: Mapping[str, int], tokens: Iterable[str], vocab_file: str | os.PathLike[str], use: str
) -> None:
    """Raise ``VocabError`` naming the file unless every one of ``tokens`` is in ``vocab``.

    ``use`` says what needs them ("SQuAD features"), because a missing [CLS] or [SEP] would
    otherwise become [UNK] ids without a word.
    """
    missing = [token for token in tokens if token not in vocab]
    if missing:
        raise VocabError(
            f"vocab file {os.fspath(vocab_file)} has no {', '.join(missing)} token, needed by "
            f"{use}; is it a BERT vocabulary?"
        )


def vocab_casing(tokens: Iterable[str]) -> str | None:
    """ "cased" or "uncased" when the vocabulary clearly is one, else None.

    Counts the tokens holding a letter that has case, special tokens like [CLS] aside: none of
    the 26,930 in Google's uncased vocabulary has a capital, 8,366 of the 26,955 in the cased one
    do. A vocabulary of scripts without case (CJK) gives None.
    """
    with_case = upper = 0
    for token in tokens:
        if token.startswith("[") and token.endswith("]"):
            continue
        if token.lower() != token.upper():
            with_case += 1
            upper += token != token.lower()
    if with_case < 100:
        return None
    if upper > 0.05 * with_case:
        return "cased"
    if upper < 0.01 * with_case:
        return "uncased"
    return None


def warn_if_mostly_unknown(
    where: str,
    unknown: int,
    total: int,
    vocab_file: str | None = None,
    do_lower_case: bool | None = None,
    advice: str | None = None,
) -> bool:
    """Log one warning when more than ``UNKNOWN_SHARE_WARNING`` of ``total`` tokens are [UNK].

    ``where`` names the data (a file); returns whether it warned. Such data was tokenized with
    another vocabulary or casing than the model's: it trains and scores on [UNK]s, silently.
    ``advice`` replaces the default advice (check --vocab_file and --do_lower_case).
    """
    if total <= 0 or unknown <= UNKNOWN_SHARE_WARNING * total:
        return False
    if advice is None:
        casing = ""
        if do_lower_case is not None:
            casing = f" with lower-casing {'on' if do_lower_case else 'off'}"
        advice = (
            f"the text does not fit the vocabulary{f' {vocab_file}' if vocab_file else ''}"
            f"{casing}: check --vocab_file and --do_lower_case (an uncased vocabulary needs "
            "--do_lower_case, a cased one needs it off)"
        )
    logger.warning(
        "%s: %.0f%% of the tokens are [UNK] (%d of %d); %s",
        where,
        100 * unknown / total,
        unknown,
        total,
        advice,
    )
    return True


def _warn_on_casing(vocab_file: str, casing: str | None, do_lower_case: bool) -> None:
    """The users' top trap: a cased vocabulary lower-cased, or an uncased one left as it is."""
    if casing == "cased" and do_lower_case:
        logger.warning(
            "vocab file %s is cased (it holds capitalised tokens) but lower-casing is on, so "
            "those tokens are never used: pass --do_lower_case only with an uncased vocabulary",
            vocab_file,
        )
    elif casing == "uncased" and not do_lower_case:
        logger.warning(
            "vocab file %s is uncased (no token has a capital) but lower-casing is off, so "
            "capitalised words become [UNK]: pass --do_lower_case with an uncased vocabulary",
            vocab_file,
        )


def _is_whitespace(char: str) -> bool:
    # \t, \n and \r are Cc but count as whitespace, as in Google's code.
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    """Every Unicode category starting with "C", as in NVIDIA's copy and in Hugging Face's
    Python tokenizer; Google's original drops only Cc and Cf. The two differ on private-use,
    surrogate and unassigned code points only."""
    if char in "\t\n\r":
        return False
    return unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    # All non-alphanumeric ASCII counts as punctuation, e.g. "$", "^" and "`" (Google's rule).
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """Whether code point ``cp`` is a CJK ideograph (Google's blocks; not Hangul or kana)."""
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class _CleanTable(dict):
    """``str.translate`` table for Google's ``_clean_text`` plus CJK padding, filled on demand."""

    def __missing__(self, cp: int) -> str | None:
        char = chr(cp)
        value: str | None
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            value = None
        elif _is_whitespace(char):
            value = " "
        elif _is_chinese_char(cp):
            value = f" {char} "
        else:
            value = char
        self[cp] = value
        return value


_CLEAN_TABLE = _CleanTable()


def _clean_and_split(text: str) -> list[str]:
    """Drop NUL, U+FFFD and control characters, pad CJK ideographs, split on whitespace."""
    return text.translate(_CLEAN_TABLE).split()


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_on_punctuation(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for i, char in enumerate(text):
        if _is_punctuation(char):
            if start < i:
                pieces.append(text[start:i])
            pieces.append(char)
            start = i + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


class BasicTokenizer:
    """Cleans text and splits it on whitespace, CJK ideographs and punctuation.

    With ``do_lower_case`` it also lower-cases and strips accents (NFD, then drops combining
    marks). A token in ``never_split`` that stands alone between whitespace is kept as it is.
    """

    def __init__(
        self, do_lower_case: bool = True, never_split: Iterable[str] = DEFAULT_NEVER_SPLIT
    ) -> None:
        self.do_lower_case = do_lower_case
        self.never_split = frozenset(never_split)

    def tokenize(self, text: str) -> list[str]:
        """Basic tokens (words and single punctuation characters) of ``text``."""
        return [token for word in _clean_and_split(text) for token in self.tokenize_word(word)]

    def tokenize_word(self, word: str) -> list[str]:
        """Basic tokens of one whitespace-delimited word of cleaned text."""
        if word in self.never_split:
            return [word]
        if self.do_lower_case:
            word = _strip_accents(word.lower())
            # NVIDIA's copy checks never_split again after lower-casing.
            if word in self.never_split:
                return [word]
        return _split_on_punctuation(word)


class WordpieceTokenizer:
    """Greedy longest-match-first WordPiece; continuation pieces carry a ``##`` prefix.

    A word longer than ``max_input_chars_per_word`` characters, or one that vocabulary pieces
    cannot cover, becomes a single ``unk_token``.
    """

    def __init__(
        self,
        vocab: Mapping[str, int],
        unk_token: str = "[UNK]",
        max_input_chars_per_word: int = 100,
    ) -> None:
        self.vocab = vocab
        self.unk_token = unk_token
        self.max_input_chars_per_word = max_input_chars_per_word
        # No piece is longer than the longest vocabulary entry, so longer candidates are skipped.
        self._max_piece_chars = max((len(token) for token in vocab), default=0)

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of whitespace-separated, already basic-tokenized ``text``."""
        return [piece for word in text.split() for piece in self.tokenize_word(word)]

    def tokenize_word(self, word: str) -> list[str]:
        """WordPiece tokens of a single word without whitespace."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        vocab = self.vocab
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._max_piece_chars)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    pieces.append(piece)
                    break
                end -= 1
            else:
                return [self.unk_token]
            start = end
        return pieces


def fast_backend_available() -> bool:
    """Whether Hugging Face ``tokenizers`` can be imported (needed for ``backend="fast"``)."""
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        return False
    return True


class BertTokenizer:
    """End-to-end BERT tokenizer: ``BasicTokenizer`` then ``WordpieceTokenizer``.

    Args:
        vocab_file: one token per line, id = line index.
        do_lower_case: lower-case and strip accents (uncased models).
        max_len: longest id sequence ``convert_tokens_to_ids`` takes without a warning.
        never_split: tokens kept whole, not lower-cased, when they stand between whitespace.
        backend: ``"python"`` (pure Python) or ``"fast"`` (Hugging Face ``tokenizers``, the same
            tokens; its speed comes through ``tokenize_batch``).
    """

    unk_token = "[UNK]"

    def __init__(
        self,
        vocab_file: str | os.PathLike[str],
        do_lower_case: bool = True,
        max_len: int | None = None,
        never_split: Iterable[str] = DEFAULT_NEVER_SPLIT,
        backend: str = "python",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.vocab_file = os.fspath(vocab_file)
        tokens = _read_vocab_tokens(self.vocab_file)
        self.vocab = _vocab_from_tokens(tokens, self.vocab_file)
        require_tokens(self.vocab, [self.unk_token], self.vocab_file, "the tokenizer")
        # Every line index is an id, blank lines included.
        self.ids_to_tokens: collections.OrderedDict[int, str] = collections.OrderedDict(
            enumerate(tokens)
        )
        _warn_on_casing(self.vocab_file, vocab_casing(tokens), do_lower_case)
        self.do_lower_case = do_lower_case
        self.max_len = max_len
        self.never_split = tuple(never_split)
        self.backend = backend
        self.basic_tokenizer = BasicTokenizer(do_lower_case, self.never_split)
        self.wordpiece_tokenizer = WordpieceTokenizer(self.vocab, self.unk_token)
        self._word_cache: dict[str, list[str]] = {}
        self._fast: Any = None
        self._never_split_re: re.Pattern[str] | None = None
        if backend == "fast":
            self._fast = self._build_fast_tokenizer()
            self._never_split_re = self._build_never_split_re()

    def __len__(self) -> int:
        return len(self.ids_to_tokens)

    @property
    def vocab_size(self) -> int:
        """Number of ids: the number of lines in the vocabulary file."""
        return len(self.ids_to_tokens)

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text``, without [CLS]/[SEP]."""
        if self._fast is not None:
            return self.tokenize_batch([text])[0]
        return self._tokenize_python(text)

    def tokenize_batch(self, texts: Sequence[str]) -> list[list[str]]:
        """``[self.tokenize(t) for t in texts]``; the fast backend encodes in parallel."""
        if self._fast is None:
            return [self._tokenize_python(text) for text in texts]
        outputs: list[list[str]] = [[] for _ in texts]
        fast_indices: list[int] = []
        for i, text in enumerate(texts):
            if self._fast_is_exact(text):
                fast_indices.append(i)
            else:
                outputs[i] = self._tokenize_python(text)
        encodings = self._fast.encode_batch(
            [texts[i] for i in fast_indices], add_special_tokens=False
        )
        for i, encoding in zip(fast_indices, encodings, strict=True):
            outputs[i] = encoding.tokens
        return outputs

    def _tokenize_python(self, text: str) -> list[str]:
        output: list[str] = []
        cache = self._word_cache
        for word in _clean_and_split(text):
            pieces = cache.get(word)
            if pieces is None:
                pieces = self._tokenize_word(word)
            output.extend(pieces)
        return output

    def _tokenize_word(self, word: str) -> list[str]:
        pieces = [
            piece
            for basic in self.basic_tokenizer.tokenize_word(word)
            for piece in self.wordpiece_tokenizer.tokenize_word(basic)
        ]
        if len(self._word_cache) >= _MAX_CACHE_ENTRIES:
            self._word_cache.clear()
        self._word_cache[word] = pieces
        return pieces

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Vocabulary ids of ``tokens``; a token missing from the vocabulary maps to [UNK]."""
        unk_id = self.vocab[self.unk_token]
        ids = [self.vocab.get(token, unk_id) for token in tokens]
        if self.max_len is not None and len(ids) > self.max_len:
            logger.warning(
                "Token indices sequence length is longer than the specified maximum sequence "
                "length for this BERT model (%d > %d). Running this sequence through BERT will "
                "result in indexing errors",
                len(ids),
                self.max_len,
            )
        return ids

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Tokens of vocabulary ``ids``; an id outside the vocabulary raises ``ValueError``."""
        tokens = []
        for index in ids:
            try:
                token = self.ids_to_tokens.get(operator.index(index))  # also numpy/torch ints
            except TypeError:
                token = None
            if token is None:
                raise ValueError(
                    f"token id {index!r} is outside the vocabulary of size {len(self)} "
                    f"({self.vocab_file})"
                )
            tokens.append(token)
        return tokens

    def _build_fast_tokenizer(self) -> Any:
        try:
            from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers
        except ImportError as err:
            raise MissingDependency(
                "BertTokenizer(backend='fast') needs Hugging Face tokenizers: "
                "pip install tokenizers"
            ) from err
        if self.do_lower_case:
            # Python also keeps a word whose lower-cased form is in never_split; Rust cannot.
            lowercase = [t for t in self.never_split if _strip_accents(t.lower()) == t]
            if lowercase:
                raise ValueError(
                    f"backend='fast' with do_lower_case needs never_split tokens that lower-casing "
                    f"changes, like '[CLS]'; got {lowercase}"
                )
        classes = _character_classes()
        fast = Tokenizer(
            models.WordPiece(
                vocab=dict(self.vocab),
                unk_token=self.unk_token,
                continuing_subword_prefix="##",
                max_input_chars_per_word=self.wordpiece_tokenizer.max_input_chars_per_word,
            )
        )
        # Not BertNormalizer/BertPreTokenizer: they keep unassigned code points, miss CJK
        # U+2B820-U+2B91F and use older Unicode tables, so they differ from Google's rules.
        steps = [
            normalizers.Replace(Regex(classes["control"]), ""),
            normalizers.Replace(Regex(classes["whitespace"]), " "),
        ]
        if self.do_lower_case:
            steps += [
                normalizers.Lowercase(),
                normalizers.NFD(),
                normalizers.Replace(Regex(classes["nonspacing_mark"]), ""),
            ]
        fast.normalizer = normalizers.Sequence(steps)
        fast.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Split(Regex(classes["punctuation_or_cjk"]), "isolated"),
            ]
        )
        fast.add_special_tokens(
            [AddedToken(t, normalized=False) for t in self.never_split if t in self.vocab]
        )
        return fast

    def _build_never_split_re(self) -> re.Pattern[str] | None:
        if not self.never_split:
            return None
        # Longest first, so the regex finds the same leftmost-longest matches as the Rust trie.
        alternatives = sorted(self.never_split, key=len, reverse=True)
        return re.compile("|".join(re.escape(token) for token in alternatives))

    def _fast_is_exact(self, text: str) -> bool:
        """Whether the Rust pipeline tokenizes ``text`` exactly as Google's algorithm does.

        Two rare cases take the Python path: Python's ``str.lower`` maps a word-final capital
        sigma to "ς" where Rust gives "σ", and Rust cuts a never-split token out of any context
        ("x[SEP]y") where Google keeps it whole only between whitespace.
        """
        if self.do_lower_case and "\u03a3" in text:
            return False
        if self._never_split_re is None:
            return True
        for match in self._never_split_re.finditer(text):
            start, end = match.span()
            if match.group() not in self.vocab:
                return False
            if start > 0 and not _is_whitespace(text[start - 1]):
                return False
            if end < len(text) and not _is_whitespace(text[end]):
                return False
        return True


def _regex_class(code_points: Sequence[int]) -> str:
    """An Oniguruma character class matching exactly ``code_points`` (sorted)."""
    ranges: list[list[int]] = []
    for cp in code_points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(
        f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in ranges
    )
    return f"[{body}]"


@lru_cache(maxsize=1)
def _character_classes() -> dict[str, str]:
    """Regex classes of Google's character kinds under this Python's Unicode tables."""
    control, whitespace, punctuation_or_cjk, marks = [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # surrogates cannot reach Rust (UTF-8 strings)
        char = chr(cp)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            control.append(cp)
        elif _is_whitespace(char):
            if char != " ":
                whitespace.append(cp)
        elif _is_chinese_char(cp) or _is_punctuation(char):
            punctuation_or_cjk.append(cp)
        elif unicodedata.category(char) == "Mn":
            marks.append(cp)
    return {
        "control": _regex_class(control),
        "whitespace": _regex_class(whitespace),
        "punctuation_or_cjk": _regex_class(punctuation_or_cjk),
        "nonspacing_mark": _regex_class(marks),
    }
