"""Network addresses: IPv4 and IPv6."""

from __future__ import annotations

import re

from extproc.guard import validators as v
from extproc.guard.detectors.base import ESCAPED, ScanOptions, Span, make, not_after

# --- IPV4 / IPV6 ---------------------------------------------------------------

_VERSION_WORD = re.compile(
    r"(?i)(?:\b(?:version|ver|release|rel|build|firmware|fw|revision|rev|v)\.?[ \t]*[:=#]?[ \t]*)$"
)
_VERSION_CONTEXT = 24
_AFTER_ESCAPE = re.compile(ESCAPED)


def _ipv4(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    start = m.start()
    version_like = False
    if start and (text[start - 1].isalnum() or text[start - 1] == "_") and not _AFTER_ESCAPE.match(text, start):
        # Glued to a word: only "v1.2.3.4" passes as a (version-like) IP.
        if text[start - 1] not in "vV" or (start > 1 and (text[start - 2].isalnum() or text[start - 2] == "_")):
            return None
        version_like = True
    elif _VERSION_WORD.search(text, max(0, start - _VERSION_CONTEXT), start):
        version_like = True
    if version_like and opts.ignore_version_like_ips:
        return None
    return m.span() if v.ipv4_ok(m.group()) else None


IPV4 = make(
    "IPV4",
    "IPV4",
    r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9]|\.[0-9])",
    _ipv4,
    head=r"(?<![0-9.])[0-9]",
    head_len=1,
    width=18,
    alphabet=r"0-9.",
    prefilter=r"(?:^|[^0-9.])[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?:[^0-9]|$)",
    re_prefilter=r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?:[^0-9]|$)",
    context=_VERSION_CONTEXT + 1,
    priority=12,
)


def _ipv6(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    return m.span() if v.ipv6_ok(m.group()) else None


IPV6 = make(
    "IPV6",
    "IPV6",
    not_after("0-9A-Za-z:.") + r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![0-9A-Za-z:]|\.[0-9])",
    _ipv6,
    head=not_after("0-9A-Za-z:.") + r"[0-9A-Fa-f:]",
    head_len=1,
    width=35 + 15 + 4,
    alphabet=r"0-9A-Fa-f:.",
    # Every address the validator accepts (two groups or more, a decimal
    # digit) contains one of these; "std::vector" and "14:30" do not.
    prefilter=(
        r"[0-9A-Fa-f]:[0-9A-Fa-f]{1,4}:|::[0-9A-Fa-f]{1,4}:"
        r"|[0-9A-Fa-f]::[0-9A-Fa-f]{0,3}[0-9]|[0-9][0-9A-Fa-f]{0,3}::[0-9A-Fa-f]"
    ),
    re_prefilter=r"::|:[0-9A-Fa-f]{1,4}:",
    before=50,
    priority=11,
)
