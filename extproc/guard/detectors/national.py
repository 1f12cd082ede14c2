"""National identifiers: each with its own checksum or issuance rules."""

from __future__ import annotations

from extproc.guard.detectors.base import make

# --- US_SSN ------------------------------------------------------------------
# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.

_SSN_AREA = r"(?<![0-9.\-])(?!000|666|9)[0-9]{3}"

US_SSN = make(
    "US_SSN",
    "US_SSN",
    _SSN_AREA + r"(?P<ss>[\- .])(?!00)[0-9]{2}(?P=ss)(?!0000)[0-9]{4}(?![0-9]|[.\-][0-9])",
    head=r"(?<![0-9.\-])[0-8]",
    head_len=1,
    width=14,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])[0-8][0-9]{2}[\- .][0-9]{2}[\- .][0-9]{4}",
    re_prefilter=r"[0-8][0-9]{2}[\- .][0-9]{2}[\- .][0-9]{4}",
    priority=9,
)

US_SSN_PLAIN = make(
    "US_SSN/plain",
    "US_SSN",
    _SSN_AREA + r"(?!00)[0-9]{2}(?!0000)[0-9]{4}(?![0-9]|[.\-][0-9])",
    head=r"(?<![0-9.\-])[0-8]",
    head_len=1,
    width=12,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])[0-8][0-9]{8}",
    re_prefilter=r"[0-8][0-9]{8}",
    priority=9,
)
