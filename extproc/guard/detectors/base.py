"""What a detector is, and how one is built.

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
from collections.abc import Callable
from dataclasses import dataclass

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class ScanOptions:
    ignore_version_like_ips: bool = True


Validator = Callable[[str, "re.Match[str]", ScanOptions], Span | None]


# JSON escapes end a word: in a serialized body "\\njane@x.com" the email
# starts after "\\n", not at the "n". Lookbehinds that refuse a letter
# before a value accept one that closes such an escape; the scanner then
# trims the escape letters off any value starting on them.
ESCAPED = r"(?<=\\[nrtbf])|(?<=\\u[0-9A-Fa-f]{4})"


def not_after(chars: str) -> str:
    """A lookbehind: not preceded by ``chars`` (a class body), unless they
    close a JSON escape."""
    return f"(?:(?<![{chars}])|{ESCAPED})"


def whole(text: str, m: re.Match[str], opts: ScanOptions) -> Span | None:
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
    # Whether windows start from the prefilter match's start (Hyperscan's
    # SOM_LEFTMOST, costly for a long pattern with bounded repeats) or, when
    # False, from its end: ``before`` then counts back from the end.
    som: bool = True
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


def make(
    key: str,
    entity: str,
    pattern: str,
    validate: Validator = whole,
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
    before: int = 0,
    after: int = 0,
    context: int = 6,
    lead: int = 0,
    min_tail: int = 0,
    priority: int = 50,
    som: bool = True,
    decided: Callable[[Detector, str, int, int], bool] | None = None,
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
        before=before,
        after=after,
        context=context,
        lead=lead,
        min_tail=min_tail,
        priority=priority,
        som=som,
        decided=decided,
    )


_NOT_DIGITS = re.compile(r"[^0-9]+")


def digits(value: str) -> str:
    """The ASCII digits of ``value`` (detection runs on folded text: other
    scripts' digits are ASCII by then)."""
    return _NOT_DIGITS.sub("", value)
