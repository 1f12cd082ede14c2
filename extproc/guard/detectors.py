"""The built-in PII and secret detectors.

A detector is a precise Python regex plus a validator, and the metadata the
scanner needs to run it fast and to stream it exactly:

* ``prefilter``: a Hyperscan expression (matched with SOM_LEFTMOST) that
  fires on every text where the precise regex can produce a detection. The
  regex then runs only for starts in ``[prefilter start - before, prefilter
  end + after]``. Every accepted match must start in such a window; the
  property tests check this by comparing the Hyperscan and pure-``re``
  engines (the latter finds the same windows with ``re_prefilter``).
* ``width``: the furthest the regex and validator read past an attempt's
  start (match plus lookahead). Every quantifier is bounded, so that an
  attempt's outcome is decided by ``text[start - context : start + width]``.
* ``context``: how far before the start lookbehinds and validators look.
* ``lead``: how far after the attempt start the reported value may begin
  (``password=`` is matched, only the value after it is reported).
* ``head`` / ``head_len``: a regex every match begins with, reading at most
  ``head_len`` characters. A stream holds back a position only while the
  head matches there (or cannot be decided yet).
* ``alphabet``: the characters a match consists of (and the first one after
  it that a lookahead looks at), when that set is narrow: a stream need not
  hold a position whose run of such characters has already ended.
* ``decided``: the same idea for patterns with a keyword and a free-form
  tail (``Bearer <token>``, ``password=<value>``, PEM blocks).

Attempts are independent ("all starts" semantics: after an attempt at ``s``
the scan resumes at ``s + 1``, whatever it found); the scanner resolves
overlaps afterwards. That makes every detection a function of a bounded
neighbourhood, which is what lets a stream reproduce a one-shot scan exactly.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from extproc.guard import validators as v
from extproc.guard._multi import CASELESS

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    ignore_version_like_ips: bool = True


Validator = Callable[[str, "re.Match[str]", ScanOptions], Span | None]


# JSON escapes end a word: in a serialized body "\\njane@x.com" the email
# starts after "\\n", not at the "n". Lookbehinds that refuse a letter
# before a value accept one that closes such an escape; the scanner then
# trims the escape letters off any value starting on them.
_ESCAPED = r"(?<=\\[nrtbf])|(?<=\\u[0-9A-Fa-f]{4})"


def _not_after(chars: str) -> str:
    """A lookbehind: not preceded by ``chars`` (a class body), unless they
    close a JSON escape."""
    return f"(?:(?<![{chars}])|{_ESCAPED})"


def _whole(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    return m.span()


@dataclass(frozen=True, eq=False, slots=True)
class Detector:
    key: str
    entity: str
    pattern: re.Pattern[str]
    validate: Validator
    width: int
    head: re.Pattern[str] | None
    head_len: int
    prefilter: bytes | None = None
    prefilter_flags: int = 0
    before: int = 0
    after: int = 0
    context: int = 6  # lookbehinds: one character, or a JSON escape
    lead: int = 0
    min_tail: int = 0
    alphabet: str | None = None
    priority: int = 50
    # Compiled "[^alphabet]", searched on a reversed tail by streams.
    nonalpha: re.Pattern[str] | None = None
    # Where scans look for attempt starts: the head, or a cheaper necessary
    # condition when the head is expensive to search for (EMAIL's head
    # reads a whole local part at every position).
    scan_head: re.Pattern[str] | None = None
    # The prefilter for the pure-re engine, on the same Latin-1 bytes. The
    # Hyperscan expression works too, but a leading "(?:^|[^...])" stops re
    # from skipping ahead to the first possible character.
    re_prefilter: re.Pattern[bytes] | None = None
    # For streams: whether the attempt at ``start`` is final given
    # ``text[:end]``, for patterns whose match ends long before ``width``
    # (a PEM block once its END line is in, a token once a space follows).
    # Without it an attempt is final only once ``width`` characters are in.
    decided: Callable[[Detector, str, int, int], bool] | None = None

    def __repr__(self) -> str:
        return f"<Detector {self.key}>"


def _detector(
    key: str,
    entity: str,
    pattern: str,
    validate: Validator = _whole,
    *,
    head: str | None,
    head_len: int,
    width: int,
    alphabet: str | None = None,
    prefilter: str | None = None,
    prefilter_flags: int = 0,
    flags: int = 0,
    scan_head: str | None = None,
    re_prefilter: str | None = None,
    **kw,
) -> Detector:
    compiled_head = re.compile(head, flags) if head is not None else None
    re_source = re_prefilter if re_prefilter is not None else prefilter
    return Detector(
        key=key,
        entity=entity,
        pattern=re.compile(pattern, flags),
        validate=validate,
        width=width,
        head=compiled_head,
        head_len=head_len,
        scan_head=re.compile(scan_head, flags) if scan_head is not None else compiled_head,
        prefilter=prefilter.encode("ascii") if prefilter is not None else None,
        prefilter_flags=prefilter_flags,
        # Caseless prefilters run on a lower-cased copy: re's IGNORECASE
        # disables its fast skipping to the first possible character.
        re_prefilter=re.compile(re_source.encode("ascii")) if re_source is not None else None,
        alphabet=alphabet,
        nonalpha=re.compile(f"[^{alphabet}]") if alphabet is not None else None,
        **kw,
    )


# --- EMAIL -------------------------------------------------------------------


def _email(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    local, _, domain = value.rpartition("@")
    if local[0] == "." or local[-1] == "." or ".." in local or len(domain) > 253:
        return None
    return m.span()


EMAIL = _detector(
    "EMAIL",
    "EMAIL",
    _not_after(r"\w.%+\-") + r"[\w.%+\-]{1,64}@(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}"
    r"(?![^\W_]|-|\.[^\W_])",
    _email,
    head=_not_after(r"\w.%+\-") + r"[\w.%+\-]{1,64}@",
    head_len=65,
    scan_head=_not_after(r"\w.%+\-") + r"[\w.%+\-]",
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

_PHONE_BEFORE = _not_after(r"\w+.\-/")
_PHONE_AFTER = r"(?![\w\-]|[./][0-9])"
_PHONE_ALPHABET = r"0-9 .()\-+/"


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _balanced(value: str) -> bool:
    return value.count("(") == value.count(")") <= 2


def _phone_intl(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    if not _balanced(value):
        return None
    # "+44 (0)20 ..." : the bracketed trunk zero is not dialled from abroad.
    digits = _digits(value.replace("(0)", "", 1))
    return m.span() if v.intl_phone_ok(digits) else None


def _phone_nanp(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    digits = _digits(m.group())
    if len(digits) == 11:
        digits = digits[1:]
    # N11 codes (211..911) are service numbers, not area codes.
    return None if digits[1:3] == "11" else m.span()


_IBAN_GROUPS_BEFORE = re.compile(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){1,3} $")


def _phone_trunk(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    value = m.group()
    if not (10 <= len(_digits(value)) <= 12 and _balanced(value)):
        return None
    # The tail of an IBAN that failed its checksum is not a phone number.
    if _IBAN_GROUPS_BEFORE.search(text, max(0, m.start() - 20), m.start()):
        return None
    return m.span()


PHONE_INTL = _detector(
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

PHONE_NANP = _detector(
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

PHONE_FR = _detector(
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

PHONE_TRUNK = _detector(
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


# --- CREDIT_CARD -------------------------------------------------------------


def _card(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
    return m.span() if v.card_ok(_digits(m.group())) else None


CREDIT_CARD = _detector(
    "CREDIT_CARD",
    "CREDIT_CARD",
    r"(?<![0-9.\-])(?:[0-9]{13,19}"
    r"|[0-9]{4}(?P<cs>[ .\-])[0-9]{4}(?P=cs)[0-9]{4}(?P=cs)[0-9]{1,4}(?:(?P=cs)[0-9]{3})?"
    r"|[0-9]{4}(?P<as>[ .\-])[0-9]{6}(?P=as)[0-9]{4,5})"
    r"(?![0-9]|[.\-][0-9])",
    _card,
    head=r"(?<![0-9.\-])[0-9]",
    head_len=1,
    width=26,
    alphabet=r"0-9 .\-",
    prefilter=r"(?:^|[^0-9.\-])[0-9]{4}[ .\-]?[0-9]{4}[ .\-]?[0-9]{2}",
    re_prefilter=r"[0-9]{4}[ .\-]?[0-9]{4}[ .\-]?[0-9]{2}",
    priority=7,
)


# --- US_SSN ------------------------------------------------------------------
# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.

_SSN_AREA = r"(?<![0-9.\-])(?!000|666|9)[0-9]{3}"

US_SSN = _detector(
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

US_SSN_PLAIN = _detector(
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


IBAN = _detector(
    "IBAN",
    "IBAN",
    _not_after("A-Za-z0-9") + r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])",
    _iban,
    head=_not_after("A-Za-z0-9") + r"[A-Z]{2}[0-9]{2}",
    head_len=4,
    width=46,
    alphabet=r"A-Za-z0-9 ",
    prefilter=r"[A-Z]{2}[0-9]{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}",
    priority=8,
)


# --- IPV4 / IPV6 ---------------------------------------------------------------

_VERSION_WORD = re.compile(
    r"(?i)(?:\b(?:version|ver|release|rel|build|firmware|fw|revision|rev|v)\.?[ \t]*[:=#]?[ \t]*)$"
)
_VERSION_CONTEXT = 24
_AFTER_ESCAPE = re.compile(_ESCAPED)


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


IPV4 = _detector(
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


IPV6 = _detector(
    "IPV6",
    "IPV6",
    _not_after("0-9A-Za-z:.") + r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![0-9A-Za-z:]|\.[0-9])",
    _ipv6,
    head=_not_after("0-9A-Za-z:.") + r"[0-9A-Fa-f:]",
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


# --- Cloud and API credentials -----------------------------------------------

AWS_ACCESS_KEY = _detector(
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY",
    _not_after("A-Za-z0-9") + r"A[KS]IA[A-Z0-9]{16}(?![A-Za-z0-9])",
    head=_not_after("A-Za-z0-9") + r"A[KS]IA",
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
_AWS_SECRET = _not_after("A-Za-z0-9/+") + r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"


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
AWS_SECRET_KEY = _detector(
    "AWS_SECRET_KEY",
    "AWS_SECRET_KEY",
    _AWS_SECRET,
    _aws_secret,
    head=_not_after("A-Za-z0-9/+") + r"[A-Za-z0-9/+]",
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
AWS_SECRET_KEY_ENTROPY = _detector(
    "AWS_SECRET_KEY/entropy",
    "AWS_SECRET_KEY",
    _AWS_SECRET,
    _aws_secret_entropy,
    head=_not_after("A-Za-z0-9/+") + r"[A-Za-z0-9/+]",
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
    memo = getattr(_pem_memo, "last", None)
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
    if sum(ch.isalnum() for ch in lines.group()) >= 16:
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
PRIVATE_KEY = _detector(
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


JWT = _detector(
    "JWT",
    "JWT",
    _not_after(r"A-Za-z0-9_\-") + r"e[wy][A-Za-z0-9_\-]{8,1024}\.e[wy][A-Za-z0-9_\-]{2,8192}\.[A-Za-z0-9_\-]{0,1024}"
    r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9_\-])",
    _jwt,
    head=_not_after(r"A-Za-z0-9_\-") + r"e[wy]",
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


BEARER_TOKEN = _detector(
    "BEARER_TOKEN",
    "BEARER_TOKEN",
    _not_after("A-Za-z0-9") + r"(?i:bearer)[ \t]{1,8}(?P<tok>[A-Za-z0-9\-._~+/]{8,4096}={0,2})(?![A-Za-z0-9\-._~+/=])",
    _bearer,
    head=_not_after("A-Za-z0-9") + r"(?i:bearer)",
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
GENERIC_SECRET_PREFIXED = _detector(
    "GENERIC_SECRET/prefixed",
    "GENERIC_SECRET",
    _not_after(r"A-Za-z0-9_\-") + r"(?:"
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
    head=_not_after(r"A-Za-z0-9_\-")
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
GENERIC_SECRET_KEYED = _detector(
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


BUILTIN_ENTITIES: tuple[str, ...] = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "US_SSN",
    "IBAN",
    "IPV4",
    "IPV6",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "PRIVATE_KEY",
    "JWT",
    "BEARER_TOKEN",
    "GENERIC_SECRET",
)

_BY_ENTITY: dict[str, tuple[Detector, ...]] = {
    "EMAIL": (EMAIL,),
    "PHONE": (PHONE_INTL, PHONE_NANP, PHONE_FR, PHONE_TRUNK),
    "CREDIT_CARD": (CREDIT_CARD,),
    "US_SSN": (US_SSN,),
    "IBAN": (IBAN,),
    "IPV4": (IPV4,),
    "IPV6": (IPV6,),
    "AWS_ACCESS_KEY": (AWS_ACCESS_KEY,),
    "AWS_SECRET_KEY": (AWS_SECRET_KEY,),
    "PRIVATE_KEY": (PRIVATE_KEY,),
    "JWT": (JWT,),
    "BEARER_TOKEN": (BEARER_TOKEN,),
    "GENERIC_SECRET": (GENERIC_SECRET_PREFIXED, GENERIC_SECRET_KEYED),
}


def builtin_detectors(
    entities: frozenset[str], ssn_unformatted: bool = False, aws_secret_entropy: bool = False
) -> list[Detector]:
    out = [det for entity in BUILTIN_ENTITIES if entity in entities for det in _BY_ENTITY[entity]]
    if ssn_unformatted and "US_SSN" in entities:
        out.append(US_SSN_PLAIN)
    if aws_secret_entropy and "AWS_SECRET_KEY" in entities:
        out.append(AWS_SECRET_KEY_ENTROPY)
    return out


# --- Custom patterns ---------------------------------------------------------

CUSTOM_MAX_WIDTH = 1024


def _class_source(items) -> str | None:
    """Rebuild a character class from sre's IN items."""
    parts = []
    negate = ""
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = "^"
        elif name == "LITERAL":
            parts.append(re.escape(chr(av)))
        elif name == "RANGE":
            parts.append(f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}")
        elif name == "CATEGORY":
            cat = {
                "CATEGORY_DIGIT": r"\d",
                "CATEGORY_NOT_DIGIT": r"\D",
                "CATEGORY_SPACE": r"\s",
                "CATEGORY_NOT_SPACE": r"\S",
                "CATEGORY_WORD": r"\w",
                "CATEGORY_NOT_WORD": r"\W",
            }.get(str(av))
            if cat is None:
                return None
            parts.append(cat)
        else:
            return None
    return f"[{negate}{''.join(parts)}]"


def _first_char(data) -> str | None:
    """A regex for the first character any match of ``data`` begins with."""
    for op, av in data:
        name = str(op)
        if name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # zero-width: the next item gives the first character
        if name == "LITERAL":
            return re.escape(chr(av))
        if name == "NOT_LITERAL":
            return f"[^{re.escape(chr(av))}]"
        if name == "IN":
            return _class_source(av)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, item = av
            return _first_char(item.data if hasattr(item, "data") else item) if low >= 1 else None
        if name == "SUBPATTERN":
            inner = _first_char(av[-1].data)
            if inner is None:
                return None
            add, delete = av[1], av[2]
            if add & re.IGNORECASE:
                return f"(?i:{inner})"
            if delete & re.IGNORECASE:
                return f"(?-i:{inner})"
            return inner
        if name == "ATOMIC_GROUP":
            return _first_char(av.data)
        if name == "BRANCH":
            heads = [_first_char(branch.data) for branch in av[1]]
            return None if None in heads else "(?:" + "|".join(heads) + ")"
        return None
    return None


def _lookaround_widths(data) -> tuple[int, int]:
    """Max widths of lookaheads and lookbehinds anywhere in the pattern."""
    ahead = behind = 0
    for op, av in data:
        name = str(op)
        if name in ("ASSERT", "ASSERT_NOT"):
            direction, sub = av
            width = sub.getwidth()[1]
            if direction == 1:
                ahead = max(ahead, width)
            else:
                behind = max(behind, width)
            children = [sub.data]
        elif name == "SUBPATTERN":
            children = [av[-1].data]
        elif name == "ATOMIC_GROUP":
            children = [av.data]
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            children = [av[2].data]
        elif name == "BRANCH":
            children = [b.data for b in av[1]]
        elif name == "GROUPREF_EXISTS":
            children = [b.data for b in av[1:] if b is not None]
        else:
            children = []
        for child in children:
            a, b = _lookaround_widths(child)
            ahead, behind = max(ahead, a), max(behind, b)
    return ahead, behind


def analyze_custom(pattern: str) -> tuple[int, int, int, str | None]:
    """(max width, lookahead, lookbehind, first-char head) of a policy regex.

    Raises ValueError for patterns that can match empty or unboundedly long
    text: a stream must know how far a value can reach, and an unbounded
    pattern (``\\d+``) is also how one regex turns a large body into
    quadratic work. Bound it instead (``\\d{6,12}``).
    """
    from re import _parser as sre  # stdlib internals: widths and first characters of a regex

    try:
        tree = sre.parse(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex: {exc}") from None
    low, high = tree.getwidth()
    if high > CUSTOM_MAX_WIDTH:
        raise ValueError(
            f"pattern can match more than {CUSTOM_MAX_WIDTH} characters; bound its repeats "
            "(e.g. {1,64} instead of + or *)"
        )
    if low == 0:
        raise ValueError("pattern can match the empty string")
    ahead, behind = _lookaround_widths(tree.data)
    head = _first_char(tree.data)
    if head is not None:
        try:
            re.compile(head, tree.state.flags & ~re.UNICODE)
        except re.error:
            head = None
    return high, ahead, behind, head


def custom_detector(name: str, pattern: str) -> Detector:
    high, ahead, behind, head = analyze_custom(pattern)
    compiled = re.compile(pattern)
    flags = compiled.flags & (re.IGNORECASE | re.ASCII | re.DOTALL | re.MULTILINE)
    compiled_head = re.compile(head, flags) if head is not None else None
    return Detector(
        key=f"custom:{name}",
        entity=name,
        pattern=compiled,
        validate=_whole,
        width=high + ahead + 1,
        head=compiled_head,
        head_len=1,
        scan_head=compiled_head,
        context=behind + 1,
        priority=-1,
    )
