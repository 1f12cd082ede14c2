"""Fold text for PII detection, keeping a map back to the original offsets.

Detectors are ASCII patterns; attackers write ``４１１１ １１１１``, ``٤١١١``,
``jane＠example．com``, ``jane﹫example。com``, ``41\u200b11``, ``4111–1111``
(en dash) or ``123\u00a045\u00a06789`` (NBSP). ``fold`` maps each character on
its own (so a stream's folded prefix is the prefix of the folded whole):

* format characters (category Cf: zero-width, soft hyphen, bidi controls),
  Unicode tags, variation selectors and combining marks are dropped;
* every space separator (NBSP, thin and ideographic spaces...) becomes " ",
  every dash "-", every dot-like separator ".";
* decimal digits of any script become ASCII digits;
* NFKC (fullwidth forms, ``﹫``, superscripts...), then accents stripped
  and Cyrillic/Greek look-alikes mapped to Latin (``normalize``'s map).

What is left (a Cyrillic word, CJK) stays as is. ``Folded.span`` maps a
folded span back to the original characters it came from, dropped
characters inside it included, so redaction removes every one of them.
"""

from __future__ import annotations

import bisect
import codecs
import re
import unicodedata

from extproc.guard import normalize

# Dot-like characters used as separators in addresses and numbers (IDNA
# treats the first three as dots in domain names).
_DOTS = "\u3002\uff0e\uff61\u2024\u00b7\u2027\u30fb\uff65\u2219\u22c5\u0701\u0702\u2e33\u2e31"
_DASHES = "\u2212\u2043\ufe63\uff0d\u2010\u2011\u02d7\u2796\u2e3a\u2e3b"
# Invisible in rendering but not category Cf.
_INVISIBLE = "\u034f\u180e\u115f\u1160\u3164\uffa0\u2800"


def _fold_char(ch: str, depth: int = 0) -> str:
    if ch.isascii():
        return ch
    cp = ord(ch)
    category = unicodedata.category(ch)
    if (
        category in ("Cf", "Mn", "Me")
        or ch in _INVISIBLE
        or 0xFE00 <= cp <= 0xFE0F
        or 0xE0100 <= cp <= 0xE01EF
        or 0xE0000 <= cp <= 0xE007F
    ):
        return ""
    if category == "Zs" or ch in "\u2028\u2029\x85":
        return " "
    if category == "Pd" or ch in _DASHES:
        return "-"
    if ch in _DOTS:
        return "."
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit)
    compat = unicodedata.normalize("NFKC", ch)
    if compat != ch and depth < 2:
        return "".join(_fold_char(c, depth + 1) for c in compat)
    bare = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if bare and bare.isascii():
        return bare
    return normalize.CONFUSABLES.get(ch, ch)


class _Table(dict[int, str]):
    """``str.translate`` table filled on first sight of each character."""

    def __missing__(self, cp: int) -> str:
        folded = self[cp] = _fold_char(chr(cp))
        return folded


_TABLE = _Table()


class Folded:
    """A folded text and the way back to the original's offsets.

    ``_marks`` lists (folded offset, original offset) at every point where
    the correspondence is not "one character for one": after a dropped
    character and at each character of an expansion.
    """

    __slots__ = ("_fpos", "_opos", "original_length", "text")

    def __init__(self, text: str, original_length: int, marks: list[tuple[int, int]] | None):
        self.text = text
        self.original_length = original_length
        self._fpos = [f for f, _ in marks] if marks else None
        self._opos = [o for _, o in marks] if marks else None

    @property
    def identity(self) -> bool:
        return self._fpos is None

    def start(self, pos: int) -> int:
        """The original offset of the character folded to position ``pos``
        (the original length at the end)."""
        if self._fpos is None or self._opos is None:
            return pos
        if pos >= len(self.text):
            return self.original_length
        i = bisect.bisect_right(self._fpos, pos) - 1
        if i < 0:
            return pos
        return self._opos[i] + (pos - self._fpos[i])

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span covering folded ``[start, end)``."""
        if self._fpos is None or start >= end:
            return start, end
        return self.start(start), self.start(end - 1) + 1


def _translate(text: str) -> str:
    return text.translate(_TABLE)


def fold(text: str) -> Folded:
    if text.isascii():
        return Folded(text, len(text), None)
    irregular = [ch for ch in set(text) if not ch.isascii() and len(_TABLE[ord(ch)]) != 1]
    folded = normalize.in_slices(_translate, text)
    if not irregular:
        return Folded(folded, len(text), None)
    marks: list[tuple[int, int]] = []
    finder = re.compile("[" + "".join(re.escape(ch) for ch in irregular) + "]")
    shift = 0  # folded offset minus original offset, before the current character
    for m in finder.finditer(text):
        o = m.start()
        out = _TABLE[ord(text[o])]
        f = o + shift
        for k in range(len(out)):
            marks.append((f + k, o))
        shift += len(out) - 1
        marks.append((o + 1 + shift, o + 1))
    return Folded(folded, len(text), marks)


def _prefilter_errors(exc: UnicodeError) -> tuple[str, int]:
    # Letters left after folding (Cyrillic, CJK: IDN domains) must look like
    # letters to the ASCII prefilters; anything else must not match them.
    if not isinstance(exc, UnicodeEncodeError):  # registered for encoding only
        raise exc
    chunk = exc.object[exc.start : exc.end]
    return "".join("x" if ch.isalnum() else "?" for ch in chunk), exc.end


codecs.register_error("extproc-fold-prefilter", _prefilter_errors)


def prefilter_bytes(folded: str) -> bytes:
    """One byte per character of a folded text, for the ASCII prefilters."""
    return folded.encode("ascii", "extproc-fold-prefilter")
