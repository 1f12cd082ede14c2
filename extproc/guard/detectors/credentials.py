"""Secrets: cloud and API credentials, private keys, tokens."""

from __future__ import annotations

import re
import threading

from extproc.guard import validators as v
from extproc.guard._multi import CASELESS
from extproc.guard.detectors.base import Detector, ScanOptions, Span, make, not_after

# --- Cloud and API credentials -----------------------------------------------

AWS_ACCESS_KEY = make(
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY",
    not_after("A-Za-z0-9") + r"A[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])",
    head=not_after("A-Za-z0-9") + r"A[KS]IA",
    head_len=4,
    width=21,
    alphabet=r"A-Za-z0-9",
    prefilter=r"A[KS]IA[A-Z0-9]{16}",
    priority=2,
)

_AWS_CONTEXT = 96
_AWS_WORDS = re.compile(r"(?i)aws|amazon|secret|access.?key")
_HEX = re.compile(r"[0-9a-fA-F]+")
_PLACEHOLDERS = re.compile(r"^[A-Z0-9_]*\]|\[[A-Z][A-Z0-9_]*_[0-9]+\]")
_AWS_SECRET = not_after("A-Za-z0-9/+") + r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"


def _aws_secret(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    if _HEX.fullmatch(value) or v.alnum_classes(value) < 2 or v.shannon_entropy(value) < 3.5:
        return None  # a SHA-1 or a word run, not a key
    context = text[max(0, m.start() - _AWS_CONTEXT) : m.start()]
    if "[" in context or "]" in context:
        # Our own placeholders ([AWS_SECRET_KEY_1], [GENERIC_SECRET_2]) are
        # not evidence: sanitized text would otherwise grow new findings.
        context = _PLACEHOLDERS.sub(" ", context)
    if not _AWS_WORDS.search(context):
        return None
    return m.span()


# A 40-character base64 string with an AWS word ("aws", "secret", "access
# key"...) in the 96 characters before it. The prefilter looks for the word,
# which is cheap; the string itself is found by the precise regex after it.
AWS_SECRET_KEY = make(
    "AWS_SECRET_KEY",
    "AWS_SECRET_KEY",
    _AWS_SECRET,
    _aws_secret,
    head=not_after("A-Za-z0-9/+") + r"[A-Za-z0-9/+]",
    head_len=1,
    width=41,
    alphabet=r"A-Za-z0-9/+=",
    prefilter=r"aws|amazon|secret|access.?key",
    prefilter_flags=CASELESS,
    after=_AWS_CONTEXT,
    context=_AWS_CONTEXT + 1,
    priority=4,
)


def _aws_secret_entropy(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    # AWS secrets are 30 random bytes in base64: 4.8 bits a character over 40
    # characters (99% above 4.45) and about six digits. CamelCase names and
    # paths stay near 4.3 bits with few digits.
    if (
        value.count("/") >= 3
        or v.alnum_classes(value) < 3
        or sum(ch.isdigit() for ch in value) < 2
        or v.shannon_entropy(value) < 4.4
    ):
        return None
    return m.span()


# The same strings without context, on entropy alone (opt-in: counting runs of
# 40 letters and digits roughly halves the prefilter's throughput on prose).
AWS_SECRET_KEY_ENTROPY = make(
    "AWS_SECRET_KEY/entropy",
    "AWS_SECRET_KEY",
    _AWS_SECRET,
    _aws_secret_entropy,
    head=not_after("A-Za-z0-9/+") + r"[A-Za-z0-9/+]",
    head_len=1,
    width=41,
    alphabet=r"A-Za-z0-9/+=",
    prefilter=r"(?:^|[^A-Za-z0-9/+]|\\[nrtbf]|\\u[0-9A-Fa-f]{4})[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)",
    re_prefilter=r"[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)",
    priority=4,
)


# PEM armor as written by tools (five dashes, upper case) or by someone
# dodging a signature: three to eight dashes, any case, stray spaces.
_PEM_HEADER_MAX = 96
_PEM_BODY_MAX = 8192
_PEM_END_MAX = 96
_PEM_LINE = 163  # a line break and the longest line
_PEM_LINES = re.compile(
    r"(?:[A-Za-z0-9+/=]{1,80})?"
    r"(?:(?:\r?\n|\\n)(?:[A-Za-z0-9+/=]{1,80}|[A-Za-z\-]{1,32}:[^\r\n\"\\]{0,128})?){0,64}"
)
_PEM_END = re.compile(r"(?i)-{3,8} {0,2}END {1,2}(?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)? {0,2}-{3,8}")
# Where a block's body stops: an END line of any kind, or a string delimiter
# (redacting in serialized JSON must not swallow a '"').
_PEM_STOP = re.compile(r'(?i)"|-{3,8} {0,2}END\b')
_PEM_HEADER_PREFIX = re.compile(
    r"(?i)-{1,8}(?: {1,2}| {0,2}b(?:e(?:g(?:i(?:n(?: {1,2}[a-z0-9 ]{0,70}-{0,8})?)?)?)?)?)?\Z"
)
_pem_memo = threading.local()


_PEM_STOP_WINDOW = _PEM_BODY_MAX + 64
_PEM_STOP_OVERLAP = 16  # longer than a stop: one cut by a window's end is found by the next


def _next_pem_stop(text: str, pos: int) -> re.Match[str] | None:
    """The first body stop in ``[pos, pos + _PEM_STOP_WINDOW)``, or None.

    A text with thousands of headers and no END line would cost a search to
    the end per header. The memo (per thread: scans run in worker threads)
    remembers how far the text is known to hold no stop, so a scan, whose
    positions only grow, reads the text about once; and every search is
    bounded, so none holds the GIL for long."""
    memo: tuple[str, int, int, re.Match[str] | None] | None = getattr(_pem_memo, "last", None)
    if memo is not None and memo[0] is text and memo[1] <= pos:
        _, _, clear_to, stop = memo
        if stop is not None and pos <= stop.start():
            return stop
        if stop is None and pos < clear_to:
            if pos + _PEM_STOP_WINDOW <= clear_to:
                return None
            stop = _PEM_STOP.search(text, max(pos, clear_to - _PEM_STOP_OVERLAP), pos + _PEM_STOP_WINDOW)
            _pem_memo.last = (text, memo[1], pos + _PEM_STOP_WINDOW - _PEM_STOP_OVERLAP, stop)
            return stop
    stop = _PEM_STOP.search(text, pos, pos + _PEM_STOP_WINDOW)
    _pem_memo.last = (text, pos, pos + _PEM_STOP_WINDOW - _PEM_STOP_OVERLAP, stop)
    return stop


def _private_key_span(text: str, start: int, header_end: int, limit: int) -> tuple[int, bool] | None:
    """(end, complete) of the block whose header ends at ``header_end``,
    reading no further than ``limit``; None for a header alone."""
    stop = _next_pem_stop(text, header_end)
    if stop is not None and stop.group() != '"' and stop.start() - header_end <= _PEM_BODY_MAX:
        end_line = _PEM_END.match(text, stop.start(), limit)
        if end_line is not None:
            return end_line.end(), True
    # Truncated block: a header alone ("files start with -----BEGIN ...") is
    # not a secret; a header followed by key material is.
    lines = _PEM_LINES.match(text, header_end, limit)
    if lines is not None and sum(ch.isalnum() for ch in lines.group()) >= 16:
        return lines.end(), False
    return None


def _private_key(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    found = _private_key_span(text, m.start(), m.end(), m.start() + PRIVATE_KEY.width)
    return (m.start(), found[0]) if found is not None else None


def _private_key_decided(det: Detector, text: str, start: int, end: int) -> bool:
    if start + det.width <= end:
        return True
    m = det.pattern.match(text, start, end)
    if m is None:
        # Undecided only while the text so far could still grow into a header.
        return _PEM_HEADER_PREFIX.match(text, start, end) is None
    if m.end() >= end:
        return False  # its dashes may go on
    stop = _next_pem_stop(text, m.end())
    if stop is None or stop.end() >= end:
        return False  # key lines may still come, or the END line is not in yet
    if stop.group() == '"':
        return True
    end_line = _PEM_END.match(text, stop.start(), end)
    if end_line is None:
        return end - stop.start() >= _PEM_END_MAX  # another kind of END line
    return end_line.end() < end


# The header is matched by the regex; the body, up to the first END line or
# key lines alone, is found by a linear scan in the validator (a lazy regex
# across the body re-read up to 8 KB per header: one request with thousands
# of headers stalled the gateway).
PRIVATE_KEY = make(
    "PRIVATE_KEY",
    "PRIVATE_KEY",
    # Attempts start where a dash run starts (or 8 dashes into a longer
    # one): not three overlapping attempts per header.
    r"(?:(?<!-)|(?<=--------))-{3,8} {0,2}BEGIN {1,2}(?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)? {0,2}-{3,8}",
    _private_key,
    flags=re.IGNORECASE,
    head=r"---",
    head_len=3,
    width=_PEM_HEADER_MAX + 80 + 64 * _PEM_LINE + 16,
    decided=_private_key_decided,
    prefilter=r"--- {0,2}begin {1,2}[a-z0-9 ]{0,60}private key",
    prefilter_flags=CASELESS,
    before=5,
    context=8,
    priority=0,
)


def _jwt(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    return m.span() if v.jwt_ok(m.group()) else None


JWT = make(
    "JWT",
    "JWT",
    not_after(r"A-Za-z0-9_\-") + r"e[wy][A-Za-z0-9_\-]{8,1024}\.e[wy][A-Za-z0-9_\-]{2,8192}\.[A-Za-z0-9_\-]{0,1024}"
    r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9_\-])",
    _jwt,
    head=not_after(r"A-Za-z0-9_\-") + r"e[wy]",
    head_len=2,
    width=2 + 1024 + 3 + 8192 + 1 + 1024 + 3,
    alphabet=r"A-Za-z0-9_\-.",
    prefilter=r"e[wy][A-Za-z0-9_\-]{8,}\.e[wy]",
    priority=1,
)


def _decided_when_terminated(det: Detector, text: str, start: int, end: int) -> bool:
    """For patterns ending in a greedy run: a match followed by a character
    is final (the run cannot grow); no match once the keyword, separator and
    shortest value would all fit is final too."""
    m = det.pattern.match(text, start, min(end, start + det.width))
    if m is None:
        return end - start >= det.lead + det.min_tail
    return m.end() < end


def _bearer(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    start, end = m.span("tok")
    while end > start and text[end - 1] == ".":  # sentence punctuation
        end -= 1
    token = text[start:end]
    if len(token) < 8 or v.alnum_classes(token) < 2 or v.looks_like_placeholder(token):
        return None
    return start, end


BEARER_TOKEN = make(
    "BEARER_TOKEN",
    "BEARER_TOKEN",
    not_after("A-Za-z0-9") + r"(?i:bearer)[ \t]{1,8}(?P<tok>[A-Za-z0-9\-._~+/]{8,4096}={0,2})(?![A-Za-z0-9\-._~+/=])",
    _bearer,
    head=not_after("A-Za-z0-9") + r"(?i:bearer)",
    head_len=6,
    width=6 + 8 + 4098 + 1,
    prefilter=r"bearer[ \t]{1,8}[A-Za-z0-9\-._~+/]{8}",
    prefilter_flags=CASELESS,
    lead=14,
    min_tail=8 + 1,
    decided=_decided_when_terminated,
    priority=5,
)


def _prefixed_secret(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    if v.alnum_classes(value) < 2 or v.looks_like_placeholder(value.split("_")[-1]):
        return None
    return m.span()


# Vendor token formats with a fixed, documented prefix.
GENERIC_SECRET_PREFIXED = make(
    "GENERIC_SECRET/prefixed",
    "GENERIC_SECRET",
    not_after(r"A-Za-z0-9_\-") + r"(?:"
    r"sk-(?:proj-|ant-(?:api|admin)[0-9]{2}-|svcacct-|None-)?[A-Za-z0-9_\-]{20,200}"
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|xox[abposr]-[A-Za-z0-9\-]{10,200}"
    r"|xapp-[0-9]-[A-Za-z0-9\-]{10,200}"
    r"|glpat-[A-Za-z0-9_\-]{20,64}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|[sr]k_(?:live|test)_[0-9A-Za-z]{16,247}"
    r"|whsec_[A-Za-z0-9+/=]{32,128}"
    r"|SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|hf_[A-Za-z0-9]{30,40}"
    r"|pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,300}"
    r"|dop_v1_[a-f0-9]{64}"
    r"|shp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}"
    r"|glsa_[A-Za-z0-9_]{32}_[A-Fa-f0-9]{8}"
    r"|xai-[A-Za-z0-9]{60,100}"
    r"|gsk_[A-Za-z0-9]{48,60}"
    r")(?![A-Za-z0-9_\-])",
    _prefixed_secret,
    head=not_after(r"A-Za-z0-9_\-")
    + r"(?:sk|gh|github_|xox|xapp|glpat|AIza|[sr]k_|whsec|SG\.|npm_|hf_|pypi-|dop_|shp|glsa|xai-|gsk_)",
    head_len=7,
    width=330,
    alphabet=r"A-Za-z0-9_\-.+/=",
    prefilter=(
        r"sk-[A-Za-z0-9_\-]{20}|gh[pousr]_[A-Za-z0-9]{36}|github_pat_|xox[abposr]-|xapp-|glpat-"
        r"|AIza[0-9A-Za-z_\-]{35}|[sr]k_(?:live|test)_|whsec_|SG\.|npm_|hf_|pypi-AgEIcHlwaS5vcmc|dop_v1_"
        r"|shp(?:at|ss|ca|pa)_|glsa_|xai-|gsk_"
    ),
    priority=3,
)

_PASSWORD_KEYS = ("pass", "pwd")


def _keyed_secret(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    start, end = m.span("val")
    while end > start and text[end - 1] in ".,":
        end -= 1
    value = text[start:end]
    if v.looks_like_placeholder(value):
        return None
    if text[m.start() : m.start() + 4].lower().startswith(_PASSWORD_KEYS):
        ok = len(value) >= 6 and (v.char_classes(value) >= 2 or len(value) >= 12) and v.shannon_entropy(value) >= 2.0
    else:
        ok = len(value) >= 8 and v.alnum_classes(value) >= 2 and v.shannon_entropy(value) >= 3.0
    return (start, end) if ok else None


# "password = hunter42", "api_key: ...", '"client_secret": "..."': the value
# after a credential-like key, if it looks like one.
GENERIC_SECRET_KEYED = make(
    "GENERIC_SECRET/keyed",
    "GENERIC_SECRET",
    r"(?:secret|password|passwd|passphrase|pwd|api[_\-.]?key|apikey|access[_\-.]?token|auth[_\-.]?token"
    r"|refresh[_\-.]?token|token|client[_\-.]?secret|private[_\-.]?key|credentials?)"
    r"[A-Za-z0-9_\-.]{0,24}[\"']?\s{0,3}(?:=>|:=|[:=])\s{0,3}[\"']?"
    r"(?P<val>[^\s\"'`,;<>{}()\[\]\\]{6,256})",
    _keyed_secret,
    flags=re.IGNORECASE,
    head=r"(?:secret|passw|passphrase|pwd|api|access|auth|refresh|token|client|private|credential)",
    head_len=10,
    width=16 + 24 + 1 + 3 + 2 + 3 + 1 + 256 + 1,
    prefilter=(
        r"(?:secret|passw|passphrase|pwd|api[_\-.]?key|apikey|token|private[_\-.]?key|credential)"
        r"[A-Za-z0-9_\-.]{0,24}[\"']?\s{0,3}[:=]"
    ),
    prefilter_flags=CASELESS,
    before=10,
    context=0,
    lead=16 + 24 + 1 + 3 + 2 + 3 + 1,
    min_tail=6 + 1,
    decided=_decided_when_terminated,
    priority=6,
)
