"""Payment data: card numbers and IBANs."""

from __future__ import annotations

import re

from extproc.guard import validators as v
from extproc.guard.detectors.base import ScanOptions, Span, digits, make, not_after

# --- CREDIT_CARD -------------------------------------------------------------


# The middle of an IBAN failing its checksum can pass Luhn: not a card.
_IBAN_HEAD_BEFORE = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){0,6} \Z")
_IBAN_HEAD_REACH = 4 + 6 * 5 + 1


def _card(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    if not v.card_ok(digits(m.group())):
        return None
    start = m.start()
    if start and text[start - 1] == " " and _IBAN_HEAD_BEFORE.search(text, max(0, start - _IBAN_HEAD_REACH), start):
        return None
    return m.span()


CREDIT_CARD = make(
    "CREDIT_CARD",
    "CREDIT_CARD",
    # Not glued to letters: a run of digits inside a hex hash is no card.
    not_after(r"0-9A-Za-z.\-") + r"(?:[0-9]{12,19}"
    r"|[0-9]{4}(?P<cs>[ .\-])[0-9]{4}(?P=cs)[0-9]{4}(?:(?P=cs)[0-9]{1,4}(?:(?P=cs)[0-9]{3})?)?"
    r"|[0-9]{4}(?P<as>[ .\-])[0-9]{6}(?P=as)[0-9]{4,5})"
    r"(?![0-9A-Za-z]|[.\-][0-9])",
    _card,
    head=not_after(r"0-9A-Za-z.\-") + r"[0-9]",
    head_len=1,
    width=26,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])[0-9]{4}[ .\-]?[0-9]{4}[ .\-]?[0-9]{2}",
    re_prefilter=r"[0-9]{4}[ .\-]?[0-9]{4}[ .\-]?[0-9]{2}",
    context=_IBAN_HEAD_REACH + 1,
    priority=7,
)


# --- IBAN --------------------------------------------------------------------


def _iban(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    start, end = m.span()
    expected = v.IBAN_LENGTHS.get(text[start : start + 2])
    if expected is None:
        return None
    seen = 0
    for i in range(start, end):
        if text[i] != " ":
            seen += 1
            if seen == expected:
                # A longer match may be an IBAN followed by more groups: cut
                # it at the country's length, but only at a group boundary.
                if i + 1 < end and text[i + 1] != " ":
                    return None
                compact = text[start : i + 1].replace(" ", "")
                return (start, i + 1) if v.iban_ok(compact) else None
    return None


IBAN = make(
    "IBAN",
    "IBAN",
    not_after("A-Za-z0-9") + r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])",
    _iban,
    head=not_after("A-Za-z0-9") + r"[A-Z]{2}[0-9]{2}",
    head_len=4,
    width=46,
    alphabet=r"A-Za-z0-9 ",
    prefilter=r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
    priority=8,
)
