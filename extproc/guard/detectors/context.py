"""Keywords that must come shortly before a value.

A bare run of nine digits is an order id as often as a Dutch BSN; after
"BSN:" it is not. Detectors for values without a distinctive shape find
their keyword with the prefilter (cheap, one Hyperscan pass) and accept a
value only when the keyword ends at most ``gap`` characters before it, with
no digit or line break in between (the keyword belongs to the value, not to
another number in the sentence) and none of the ``blockers`` ("order",
"invoice": the number is something else).

Detection runs on folded text, accents stripped: the words are ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Numbers that are something else, whatever keyword came first.
OTHER_NUMBERS = (
    r"order",
    r"invoice",
    r"ticket",
    r"tracking",
    r"ref\b",
    r"referen",
    r"bestell",
    r"rechnung",
    r"commande",
    r"facture",
    r"pedido",
    r"factura",
    r"ordine",
    r"fattura",
    r"bestelling",
    r"factuur",
    r"nota fiscal",
)


class Keywords:
    __slots__ = ("_blocked", "_near", "after", "context", "gap", "prefilter")

    def __init__(self, words: Sequence[str], *, gap: int = 32, blockers: Sequence[str] = ()) -> None:
        """``words``: ASCII regex fragments without groups or anchors
        (``tel\\.?``), matched case-insensitively from a word start."""
        alternation = "|".join(words)
        longest = max(len(w) for w in words) + 8  # fragments are longer than their matches
        # Matched on a lower-cased copy of the window: re skips to candidate
        # first letters only without IGNORECASE (three times faster here).
        self._near = re.compile(rf"\b(?:{alternation})[^0-9\r\n]{{0,{gap}}}\Z")
        self._blocked = re.compile(rf"\b(?:{'|'.join(blockers)})") if blockers else None
        # For the detector: the prefilter fires on the keyword; a value may
        # start up to ``after`` past its end; validators read ``context``
        # characters before a value.
        self.prefilter = alternation.lower()
        self.gap = gap
        self.after = gap + 1
        self.context = gap + longest + 2

    def before(self, text: str, start: int) -> bool:
        """Whether a keyword ends shortly before ``start``."""
        # One character more than a keyword and its gap: "\b" sees what
        # precedes the keyword.
        window = text[max(0, start - self.context + 1) : start].lower()
        m = self._near.search(window)
        if m is None:
            return False
        return self._blocked is None or self._blocked.search(window, m.start() + 1) is None
