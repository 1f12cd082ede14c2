"""Contact data: email addresses and phone numbers."""

from __future__ import annotations

import re

from extproc.guard import validators as v
from extproc.guard.detectors.base import ScanOptions, Span, digits, make, not_after

# --- EMAIL -------------------------------------------------------------------


def _email(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    local, _, domain = value.rpartition("@")
    if local[0] == "." or local[-1] == "." or ".." in local or len(domain) > 253:
        return None
    return m.span()


EMAIL = make(
    "EMAIL",
    "EMAIL",
    not_after(r"\w.%+\-") + r"[\w.%+\-]{1,64}@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}"
    r"(?![^\W_]|-|\.[^\W_])",
    _email,
    head=not_after(r"\w.%+\-") + r"[\w.%+\-]{1,64}@",
    head_len=65,
    scan_head=not_after(r"\w.%+\-") + r"[\w.%+\-]",
    width=64 + 1 + 8 * 64 + 24 + 2,
    alphabet=r"\w.%+\-@",
    prefilter=r"@[A-Za-z0-9][A-Za-z0-9.\-]*\.[A-Za-z]{2}",
    before=64,
    priority=10,
)


# --- PHONE -------------------------------------------------------------------
# Four shapes, all reported as PHONE: international (+CC ...), North American
# (NANP), French (0X XX XX XX XX) and trunk-prefixed national numbers (UK,
# DE and most of Europe: 0AAA[A] SSS SSSS). National numbers must be grouped:
# a bare run of digits is an order id as often as a phone number.

_PHONE_BEFORE = not_after(r"\w+.\-/")
_PHONE_AFTER = r"(?![\w\-]|[./][0-9])"
_PHONE_ALPHABET = r"0-9 .()\-+/"


def _balanced(value: str) -> bool:
    return value.count("(") == value.count(")") <= 2


def _phone_intl(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    if not _balanced(value):
        return None
    # "+44 (0)20 ..." : the bracketed trunk zero is not dialled from abroad.
    nums = digits(value.replace("(0)", "", 1))
    return m.span() if v.intl_phone_ok(nums) else None


def _phone_nanp(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    nums = digits(m.group())
    if len(nums) == 11:
        nums = nums[1:]
    # N11 codes (211..911) are service numbers, not area codes.
    return None if nums[1:3] == "11" else m.span()


_IBAN_GROUPS_BEFORE = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){1,3} $")


def _phone_trunk(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    if not (10 <= len(digits(value)) <= 12 and _balanced(value)):
        return None
    # The tail of an IBAN that failed its checksum is not a phone number.
    if _IBAN_GROUPS_BEFORE.search(text, max(0, m.start() - 20), m.start()):
        return None
    return m.span()


PHONE_INTL = make(
    "PHONE/intl",
    "PHONE",
    _PHONE_BEFORE + r"\+[1-9][0-9]{0,14}"
    r"(?:(?:[ .\-]?\(0\)[ .\-]?|[ .\-])\(?[0-9]{1,14}\)?|\([0-9]{1,4}\)[ .\-]?[0-9]{1,14}){0,7}" + _PHONE_AFTER,
    _phone_intl,
    head=_PHONE_BEFORE + r"\+[1-9]",
    head_len=2,
    width=16 + 7 * 22 + 2,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"\+[1-9][0-9 ().\-]{6}",
    priority=13,
)

PHONE_NANP = make(
    "PHONE/nanp",
    "PHONE",
    _PHONE_BEFORE + r"(?:\+?1[ .\-]?)?"
    r"(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .\-][0-9]{4}|[2-9][0-9]{2}(?P<sep>[ .\-])[2-9][0-9]{2}(?P=sep)[0-9]{4})"
    + _PHONE_AFTER,
    _phone_nanp,
    head=_PHONE_BEFORE + r"[+(1-9]",
    head_len=1,
    width=24,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"[2-9][0-9]{2}[ .\-][2-9][0-9]{2}[ .\-][0-9]{4}|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .\-][0-9]{4}",
    before=3,
    priority=14,
)

PHONE_FR = make(
    "PHONE/fr",
    "PHONE",
    _PHONE_BEFORE + r"0[1-9](?P<fs>[ .\-])[0-9]{2}(?P=fs)[0-9]{2}(?P=fs)[0-9]{2}(?P=fs)[0-9]{2}" + _PHONE_AFTER,
    head=_PHONE_BEFORE + r"0[1-9]",
    head_len=2,
    width=16,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"0[1-9][ .\-][0-9]{2}[ .\-][0-9]{2}[ .\-][0-9]{2}[ .\-][0-9]{2}",
    priority=15,
)

PHONE_TRUNK = make(
    "PHONE/national",
    "PHONE",
    _PHONE_BEFORE
    + r"(?:\(0[1-9][0-9]{1,4}\) ?|0[1-9][0-9]{1,4}[ \-/])[0-9]{2,8}(?:[ \-][0-9]{2,8}){0,2}"
    + _PHONE_AFTER,
    _phone_trunk,
    head=_PHONE_BEFORE + r"[(0]",
    head_len=1,
    width=40,
    alphabet=_PHONE_ALPHABET,
    prefilter=r"(?:^|[^0-9_+.\-/])\(?0[1-9][0-9]{1,4}(?:\) ?|[ \-/])[0-9]{2}",
    re_prefilter=r"0[1-9][0-9]{1,4}(?:\) ?|[ \-/])[0-9]{2}",
    before=1,
    context=21,
    priority=16,
)
