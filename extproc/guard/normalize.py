"""Undo the usual disguises of text before matching signatures against it.

Attackers write ``ｉｇｎｏｒｅ`` (fullwidth), ``іgnоrе`` (Cyrillic і, о, е),
``ig\u200bnore`` (zero-width space), ``1gn0r3`` (leetspeak), ``i g n o r e``
or hide a whole sentence in invisible Unicode tag characters. ``canonical``
folds the first three (NFKC, format characters removed, confusables mapped to
Latin) and reports what it saw; ``leet`` and ``squeeze_spaced`` give the other
views. ASCII text, the common case, goes through untouched.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass


def _format_chars() -> str:
    """Every character of category Cf (format: zero-width, bidi controls,
    soft hyphen...), as a regex class body. Tag characters are excluded:
    they are decoded, not just dropped."""
    ranges: list[tuple[int, int]] = []
    for cp in list(range(0x10000)) + list(range(0x10000, 0x20000)):
        if unicodedata.category(chr(cp)) == "Cf":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}" for lo, hi in ranges
    )


_FORMAT = _format_chars()
_TAGS = "\U000e0000-\U000e007f"
_STRIP = re.compile(f"[{_FORMAT}{_TAGS}\u180e\u034f]+")
# Format characters between two Latin letters hide a word from a matcher;
# elsewhere (emoji ZWJ sequences, bidi marks in RTL text) they are normal.
_INVISIBLE_IN_WORD = re.compile(f"[A-Za-z][{_FORMAT}\u180e\u034f]+[A-Za-z]")
_TAG_RUN = re.compile(f"(\U0001f3f4?)([{_TAGS}]+)")

# Letters that render like Latin ones (Unicode confusables, the Cyrillic and
# Greek ones that matter in practice, plus a few Latin variants NFKC keeps).
_CONFUSABLES = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ү": "y",
    "ӏ": "l",
    "ɡ": "g",
    "ո": "n",
    "ս": "u",
    "А": "A",
    "В": "B",
    "Е": "E",
    "К": "K",
    "М": "M",
    "Н": "H",
    "О": "O",
    "Р": "P",
    "С": "C",
    "Т": "T",
    "Х": "X",
    "У": "Y",
    "І": "I",
    "Ј": "J",
    "Ѕ": "S",
    "Ԁ": "D",
    "Ԛ": "Q",
    "Ԝ": "W",
    "Һ": "H",
    "Ү": "Y",
    "Ӏ": "I",
    # Greek
    "α": "a",
    "β": "b",
    "ε": "e",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    "η": "n",
    "ω": "w",
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
    # Latin variants
    "ı": "i",
    "ȷ": "j",
    "ł": "l",
    "ø": "o",
    "đ": "d",
    "ħ": "h",
    "ſ": "s",
}
_CONFUSABLE = re.compile("[" + "".join(_CONFUSABLES) + "]")
CONFUSABLES = _CONFUSABLES  # shared with the PII fold

# Typographic punctuation, so that signatures can say ' and " (don’t, “DAN”).
# Not a disguise: mapping it does not count as folding.
_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
    }
)
_HAS_PUNCTUATION = re.compile("[\u2018\u2019\u201a\u201b\u2032\u201c-\u201f\u2033\u00ab\u00bb\u2013\u2014\u2212]")

# Leetspeak digits and symbols back to letters (bytes, for translate()).
LEET = bytes.maketrans(b"0134578@$", b"oieastbas")


@dataclass(frozen=True, slots=True)
class Canonical:
    text: str  # what signatures are matched against
    hidden: str  # text smuggled in Unicode tag characters, decoded
    invisible: bool  # format characters inside words were removed
    folded: bool  # NFKC or the confusables map changed letters

    @property
    def changed(self) -> bool:
        return self.invisible or self.folded or bool(self.hidden)


def _decode_tags(text: str) -> str:
    hidden = []
    for m in _TAG_RUN.finditer(text):
        if m.group(1):
            continue  # an emoji flag sequence (black flag + region tags)
        hidden.append("".join(chr(ord(ch) - 0xE0000) for ch in m.group(2) if 0xE0020 <= ord(ch) <= 0xE007E))
    return " ".join(h for h in hidden if h)


_SLICE = 32_768


def in_slices(fn: Callable[[str], str], text: str) -> str:
    """``fn(text)`` for a per-character transformation, applied slice by
    slice: one C-level pass (regex, translate, NFKC) over a megabyte holds
    the GIL for tens of milliseconds, and a scan in a worker thread must
    leave the event loop its turns. Cuts never separate a combining mark
    from its base."""
    n = len(text)
    if n <= _SLICE:
        return fn(text)
    parts = []
    start = 0
    while start < n:
        end = min(start + _SLICE, n)
        while end < n and unicodedata.combining(text[end]):
            end += 1
        parts.append(fn(text[start:end]))
        start = end
    return "".join(parts)


def _nfkc(text: str) -> str:
    return text if unicodedata.is_normalized("NFKC", text) else unicodedata.normalize("NFKC", text)


_TAG_ANY = re.compile(f"[{_TAGS}]")


def canonical(text: str) -> Canonical:
    if text.isascii():
        return Canonical(text, "", False, False)
    hidden = _decode_tags(text) if _TAG_ANY.search(text) else ""
    invisible = _INVISIBLE_IN_WORD.search(text) is not None
    stripped = in_slices(lambda part: _STRIP.sub("", part), text)
    if _HAS_PUNCTUATION.search(stripped):
        stripped = in_slices(lambda part: part.translate(_PUNCTUATION), stripped)
    out = in_slices(_nfkc, stripped)
    if _CONFUSABLE.search(out):
        out = _CONFUSABLE.sub(lambda m: _CONFUSABLES[m.group()], out)
    return Canonical(out, hidden, invisible, out != stripped)


def as_bytes(text: str) -> bytes:
    return text.encode("latin-1", "replace")


# Runs of single letters separated by spaces or punctuation: "i g n o r e",
# "i.g.n.o.r.e", "i-g-n-o-r-e". Words of several letters end a run.
_SPACED = re.compile(rb"(?<![A-Za-z0-9])[A-Za-z](?:[ ._\-*|/]{1,3}[A-Za-z](?![A-Za-z0-9])){3,}")
_NOT_LETTER = re.compile(rb"[^A-Za-z]+")


def squeeze_spaced(data: bytes) -> bytes:
    """The letter-spaced runs of ``data`` with their separators removed,
    joined by spaces."""
    return b" ".join(_NOT_LETTER.sub(b"", m.group()) for m in _SPACED.finditer(data))
