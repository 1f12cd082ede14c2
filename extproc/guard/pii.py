"""PII and secret detection, redaction and pseudonymization of text.

``PiiScanner`` finds values (``find``) and rewrites text (``sanitize``) per
entity action:

* ``redact``: a typed placeholder, ``[EMAIL_1]``; numbered per entity type,
  the same value getting the same placeholder within one vault (request);
* ``mask``: every letter and digit but the last four replaced by ``*``
  (``**** **** **** 1111``); for an email, its local part (``****@x.com``);
* ``pseudonymize``: a placeholder as for redact, recorded in the
  ``PseudonymVault`` so that ``vault.restore`` can put the value back (in the
  model's answer, for instance);
* ``block``: the text is left as is and the entity listed in
  ``Redaction.blocked``: the caller refuses the request.

Overlapping detections merge into one finding labelled with the longest,
then most specific of them (private keys and vendor tokens before generic
secrets, cards before phone numbers): a value nested in a longer one is
never reported on its own, and a partial overlap never leaves part of a
value in clear.

Streaming (``StreamSanitizer``) reproduces ``sanitize`` exactly on text that
arrives in pieces; see its docstring for how much it holds back.

Raw values never go into exceptions, logs or reprs: ``Finding`` holds
offsets only, ``Redaction`` and ``PseudonymVault`` reprs show counts.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from extproc.config import CapabilityConfig
from extproc.guard import _multi
from extproc.guard.detectors import (
    BUILTIN_ENTITIES,
    NATIONAL_ENTITIES,
    Detector,
    ScanOptions,
    analyze_custom,
    builtin_detectors,
    custom_detector,
)
from extproc.guard.fold import fold, prefilter_bytes

Action = Literal["block", "redact", "mask", "pseudonymize"]
Entity = Literal[
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
    "US_ITIN",
    "UK_NINO",
    "UK_NHS",
    "DE_TAX_ID",
    "FR_NIR",
    "ES_NIF",
    "ES_NIE",
    "IT_FISCAL_CODE",
    "NL_BSN",
    "BR_CPF",
    "PASSPORT",
]

assert set(get_args(Entity)) == set(BUILTIN_ENTITIES)

_CUSTOM_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


def _default_entities() -> dict[Entity, Action]:
    return {entity: "redact" for entity in get_args(Entity) if entity not in NATIONAL_ENTITIES}


class CustomPattern(CapabilityConfig):
    name: str = Field(description="Entity name, upper case (placeholders read [NAME_1]).")
    pattern: str = Field(description="Python regex; repeats must be bounded (at most 1024 characters a match).")
    action: Action = "redact"

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _CUSTOM_NAME.fullmatch(value):
            raise ValueError("use upper-case letters, digits and _, starting with a letter (at most 40)")
        if value in BUILTIN_ENTITIES:
            raise ValueError(f"{value} is a built-in entity; configure it under entities")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern_ok(cls, value: str) -> str:
        analyze_custom(value)  # raises ValueError with the reason
        return value


class PiiConfig(CapabilityConfig):
    entities: dict[Entity, Action] = Field(
        default_factory=_default_entities,
        description="Built-in entities to detect and what to do with each; unlisted ones are not detected. "
        "The default lists every built-in entity but the national identifiers (US_ITIN, UK_NINO, UK_NHS, "
        "DE_TAX_ID, FR_NIR, ES_NIF, ES_NIE, IT_FISCAL_CODE, NL_BSN, BR_CPF, PASSPORT): list those you need.",
    )
    custom: list[CustomPattern] = Field(default_factory=list)
    ignore_version_like_ips: bool = Field(
        True, description='Do not report "v1.2.3.4" or "version 1.2.3.4" as an IPv4 address.'
    )
    aws_secret_entropy: bool = Field(
        False,
        description="Also report 40-character base64 strings with no AWS word nearby when they look random "
        "(>= 4.4 bits/char, mixed case and digits); roughly halves prefilter throughput on prose.",
    )
    ssn_unformatted: bool = Field(
        False, description="Also report 9 bare digits as a US SSN (otherwise dashes or spaces are required)."
    )
    allow: list[str] = Field(
        default_factory=list, description="Values never reported (compared case-insensitively), e.g. a support address."
    )

    @model_validator(mode="after")
    def _unique_custom(self) -> PiiConfig:
        names = [c.name for c in self.custom]
        if len(names) != len(set(names)):
            raise ValueError("custom pattern names must be unique")
        return self


@dataclass(frozen=True, slots=True)
class Finding:
    entity: str
    start: int
    end: int


@dataclass(slots=True)
class Redaction:
    text: str = field(repr=False)
    counts: dict[str, int] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)


Candidate = tuple[int, int, Detector]


def _holds_one_of(candidates: list[Candidate], starts: list[int], start: int, end: int, entity: str) -> bool:
    """Whether a candidate of ``candidates`` (sorted by start) of ``entity``
    lies within [start, end). A join glues neighbouring parts ("to" +
    "alice@x.com" reads as "toalice@x.com"): a value found whole in one part
    is that value, not one spanning parts."""
    i = bisect.bisect_left(starts, start)
    while i < len(candidates) and candidates[i][0] < end:
        if candidates[i][1] <= end and candidates[i][2].entity == entity:
            return True
        i += 1
    return False


@dataclass(slots=True)
class PartsRedaction:
    texts: list[str] = field(repr=False)
    counts: dict[str, int] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)


_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]{0,39}_[0-9]{1,9}\]")
_PLACEHOLDER_PREFIX = re.compile(r"\[[A-Z0-9_]{0,50}")
_PLACEHOLDER_MAX = 1 + 40 + 1 + 9 + 1


class PseudonymVault:
    """Per-request placeholder numbering and the pseudonyms to restore.

    Placeholders are numbered per entity in order of first appearance. Only
    pseudonymized values are kept; redacted ones are remembered by a keyed
    hash (to reuse their number), so the vault holds no more raw PII than
    restoring needs.

    A placeholder-shaped string that was already in the input (a literal
    ``[EMAIL_1]``) is indistinguishable from one we issued and is restored
    too; the values it can be replaced by are the same request's own.
    """

    __slots__ = ("_counters", "_key", "_numbers", "_originals")

    def __init__(self) -> None:
        self._key = os.urandom(16)
        self._numbers: dict[bytes, str] = {}
        self._originals: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    def placeholder(self, entity: str, value: str, restorable: bool = False) -> str:
        digest = hashlib.blake2b(
            f"{entity}\0{value}".encode("utf-8", "surrogatepass"), key=self._key, digest_size=16
        ).digest()
        placeholder = self._numbers.get(digest)
        if placeholder is None:
            number = self._counters.get(entity, 0) + 1
            self._counters[entity] = number
            placeholder = self._numbers[digest] = f"[{entity}_{number}]"
        if restorable:
            self._originals[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        """``text`` with every pseudonym placeholder replaced by its value."""
        originals = self._originals
        if not originals or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: originals.get(m.group(), m.group()), text)

    def __len__(self) -> int:
        return len(self._originals)

    def __repr__(self) -> str:
        return f"<PseudonymVault {len(self._originals)} pseudonyms, {len(self._numbers)} placeholders>"


def mask(value: str, entity: str) -> str:
    """Keep the last four letters or digits (all are hidden in a value of
    four or fewer; an email's local part is hidden whole). Separators and
    the character after a backslash (JSON escapes) keep their place, so the
    shape and any escaping survive."""
    if entity == "EMAIL":
        local, _, domain = value.rpartition("@")
        return "*" * len(local) + "@" + domain
    hideable = [i for i, ch in enumerate(value) if ch.isalnum() and not (i and value[i - 1] == "\\")]
    hidden = set(hideable[:-4]) if len(hideable) > 4 else set(hideable)
    return "".join("*" if i in hidden else ch for i, ch in enumerate(value))


# Hits allowed per character before the prefilter gives up and every
# detector scans the whole text: digit-heavy or hex-heavy bodies can make a
# prefilter fire at most positions, and one Python callback per hit would
# then cost more than a plain regex pass.
_HITS_PER_CHAR = 0.25


@functools.lru_cache(maxsize=64)
def _prefilter_db(detectors: tuple[Detector, ...]) -> _multi.MultiPattern:
    return _multi.MultiPattern(
        [d.prefilter for d in detectors if d.prefilter is not None],
        list(range(len(detectors))),
        [(_multi.SOM_LEFTMOST if d.som else 0) | d.prefilter_flags for d in detectors],
    )


_JSON_ESCAPE = re.compile(r"u[0-9A-Fa-f]{4}|[nrtbf]")


def _trim_escapes(text: str, candidates: list[Candidate]) -> list[Candidate]:
    """Values starting on the letters of a JSON escape ("\\n", "\\u00e9")
    start after it: replacing them would otherwise split the escape and
    break a serialized body."""
    out: list[Candidate] = []
    for begin, end, det in candidates:
        start = begin
        if start and text[start - 1] == "\\" and (m := _JSON_ESCAPE.match(text, start, end)):
            start = m.end()
            if start >= end:
                continue
        out.append((start, end, det))
    return out


def _scan_region(det: Detector, text: str, lo: int, hi: int, n: int, opts: ScanOptions, out: list[Candidate]) -> None:
    """Validated matches of ``det`` starting in [lo, hi), every start tried.

    Start positions come from the detector's cheap head regex (a match can
    only start where it matches); the precise regex is then anchored there.
    Searching with the precise regex itself would also try every start
    between ``hi`` and ``hi + width``, which for a 300-character pattern is
    most of the work.
    """
    validate = det.validate
    width = det.width
    head = det.scan_head
    pos = lo
    if head is None or hi >= n:
        # Whole-text scans: no bytes past hi to waste, and one C-level search
        # beats a Python step per head match.
        search = det.pattern.search
        endpos = hi + width
        if endpos > n:
            endpos = n
        while pos < hi:
            m = search(text, pos, endpos)
            if m is None or m.start() >= hi:
                return
            span = validate(text, m, opts)
            if span is not None:
                out.append((span[0], span[1], det))
            pos = m.start() + 1
        return
    hsearch = head.search
    match = det.pattern.match
    hend = hi + det.head_len - 1
    if hend > n:
        hend = n
    while True:
        h = hsearch(text, pos, hend)
        if h is None:
            return
        start = h.start()
        if start >= hi:
            return
        end = start + width
        m = match(text, start, end if end < n else n)
        if m is not None:
            span = validate(text, m, opts)
            if span is not None:
                out.append((span[0], span[1], det))
        pos = start + 1


class PiiScanner:
    """Compiled detectors for one ``PiiConfig``; immutable and thread-safe."""

    def __init__(self, config: PiiConfig, *, engine: str | None = None):
        self.config = config
        self.engine = _multi.resolve_engine(engine)
        detectors = builtin_detectors(frozenset(config.entities), config.ssn_unformatted, config.aws_secret_entropy)
        detectors += [custom_detector(c.name, c.pattern) for c in config.custom]
        self._detectors: tuple[Detector, ...] = tuple(detectors)
        self._actions: dict[str, str] = {str(e): a for e, a in config.entities.items()}
        self._actions.update((c.name, c.action) for c in config.custom)
        self._opts = ScanOptions(ignore_version_like_ips=config.ignore_version_like_ips)
        self._allow = frozenset(value.casefold() for value in config.allow)
        self._prefiltered = tuple(d for d in detectors if d.prefilter is not None)
        self._unfiltered = tuple(d for d in detectors if d.prefilter is None)
        self._db = _prefilter_db(self._prefiltered) if self._prefiltered and self.engine == "hyperscan" else None
        # The frontier is cheapest when the detectors likely to hold the most
        # go first: the others then only look at what is left.
        self._stream_order = tuple(sorted(detectors, key=lambda d: -d.head_len))
        # Streams keep this much already-emitted text as left context: what
        # lookbehinds and validators read, plus the gap between where a
        # match starts and where its reported value starts (a key, or a JSON
        # escape trimmed off, at most 6 characters).
        self.lookback = max((d.context + d.lead for d in detectors), default=0) + 6
        # The longest a detection can be: a stream holds at most this much
        # (unless values overlap one another in a chain, which merges them).
        self.max_hold = max((d.width for d in detectors), default=0)
        # What a stream needs to hold when no candidate straddles its end.
        # (A custom pattern whose first character cannot be worked out, one
        # starting with "." or an optional part, is a candidate anywhere: it
        # always holds its width and is not counted here.)
        self.min_holdback = max((d.head_len - 1 for d in detectors if d.head is not None), default=0)

    @property
    def entities(self) -> dict[str, str]:
        """Entity → action, built-in and custom."""
        return dict(self._actions)

    def __repr__(self) -> str:
        return f"<PiiScanner {len(self._actions)} entities engine={self.engine}>"

    # -- detection ---------------------------------------------------------

    def find(self, text: str) -> list[Finding]:
        """Sorted, non-overlapping findings."""
        return self._resolve(self._candidates(text), 0, len(text))

    def _candidates(self, text: str, clipped: bool = False) -> list[tuple[int, int, Detector]]:
        """Every validated match, overlapping, as spans of ``text``. With
        ``clipped`` (a stream window that does not start at the beginning of
        the text), attempts without their full left context are skipped.

        Detection runs on the folded text (see ``fold``): fullwidth or
        other-script digits, invisible characters and odd separators do not
        hide a value, and each span maps back to every original character
        the value was made of."""
        folded = fold(text)
        out = self._folded_candidates(folded.text, clipped)
        if folded.identity:
            return out
        span = folded.span
        return [(*span(start, end), det) for start, end, det in out]

    def _folded_candidates(self, text: str, clipped: bool) -> list[tuple[int, int, Detector]]:
        n = len(text)
        out: list[tuple[int, int, Detector]] = []
        if not n:
            return out
        opts = self._opts
        full = self._unfiltered
        if self._db is not None:
            try:
                hits = self._db.scan(prefilter_bytes(text), limit=64 + int(n * _HITS_PER_CHAR))
            except _multi.TooManyMatches:
                full = self._detectors
            else:
                self._scan_hits(text, hits, clipped, opts, out)
        elif self._prefiltered:
            self._scan_hits(text, self._re_hits(prefilter_bytes(text)), clipped, opts, out)
        for det in full:
            _scan_region(det, text, det.context if clipped else 0, n, n, opts, out)
        if "\\" in text:
            out = _trim_escapes(text, out)
        if self._allow:
            allow = self._allow
            out = [c for c in out if text[c[0] : c[1]].casefold() not in allow]
        return out

    def _re_hits(self, data: bytes) -> list[tuple[int, int, int]]:
        """What the Hyperscan prefilter reports, found with re: for every
        start position a match can begin at (one end per start, which is all
        the windows need)."""
        hits: list[tuple[int, int, int]] = []
        lowered = None
        for id_, det in enumerate(self._prefiltered):
            if det.re_prefilter is None:  # a prefiltered detector always has both
                continue
            search = det.re_prefilter.search
            if det.prefilter_flags & _multi.CASELESS:
                if lowered is None:
                    lowered = data.lower()
                view = lowered
            else:
                view = data
            pos = 0
            while (m := search(view, pos)) is not None:
                start = m.start()
                hits.append((id_, start, m.end()))
                pos = start + 1
        return hits

    def _scan_hits(
        self, text: str, hits: list[tuple[int, int, int]], clipped: bool, opts: ScanOptions, out: list[Candidate]
    ) -> None:
        if not hits:
            return
        n = len(text)
        detectors = self._prefiltered
        by_id: dict[int, list[tuple[int, int]]] = {}
        for id_, start, end in hits:
            spans = by_id.get(id_)
            if spans is None:
                by_id[id_] = [(start, end)]
            else:
                spans.append((start, end))
        for id_, spans in by_id.items():
            det = detectors[id_]
            before = det.before
            after = det.after + 1
            som = det.som
            floor = det.context if clipped else 0
            spans.sort()
            lo = hi = -1
            for start, end in spans:
                s = (start if som else end) - before
                if s < floor:
                    s = floor
                if s > hi:
                    if hi > lo:
                        _scan_region(det, text, lo, min(hi, n), n, opts, out)
                    lo = s
                if end + after > hi:
                    hi = end + after
            if hi > lo:
                _scan_region(det, text, lo, min(hi, n), n, opts, out)

    @staticmethod
    def _resolve(candidates: Iterable[tuple[int, int, Detector]], lo: int, hi: int) -> list[Finding]:
        """Findings from the candidates starting in [lo, hi).

        Overlapping candidates merge into one finding covering all of them
        (a partial overlap must not leave the rest of a value in clear: in
        "4111 1111 1111 11112jane@x.com" both the card and the email
        "1111jane@x.com" are candidates), labelled with the longest, then
        most specific, then leftmost of them.
        """
        chosen = sorted((c for c in candidates if lo <= c[0] < hi), key=lambda c: (c[0], c[0] - c[1]))
        out: list[Finding] = []
        group_start = group_end = -1
        best: Candidate | None = None
        for c in chosen:
            if c[0] >= group_end:
                if best is not None:
                    out.append(Finding(best[2].entity, group_start, group_end))
                group_start, group_end, best = c[0], c[1], c
                continue
            if c[1] > group_end:
                group_end = c[1]
            assert best is not None  # set by the group's first candidate
            if (c[1] - c[0], -c[2].priority) > (best[1] - best[0], -best[2].priority):
                best = c
        if best is not None:
            out.append(Finding(best[2].entity, group_start, group_end))
        return out

    # -- rewriting ---------------------------------------------------------

    def sanitize(self, text: str, vault: PseudonymVault | None = None) -> Redaction:
        counts: dict[str, int] = {}
        blocked: list[str] = []
        findings = self.find(text)
        if not findings:
            return Redaction(text, counts, blocked)
        # "is not None": an empty vault is falsy (it has a length).
        vault = vault if vault is not None else PseudonymVault()
        out = self._render(text, 0, len(text), findings, vault, counts, blocked)
        return Redaction(out, counts, blocked)

    def sanitize_parts(
        self, texts: list[str], vault: PseudonymVault | None = None, alone: list[bool] | None = None
    ) -> PartsRedaction:
        """``sanitize`` for the strings of one request, read as one text too.

        A value split across content parts or messages ("jane" + "@x.com",
        a PEM header and its body) is only visible in their concatenation;
        a value inside one part must still be found however its neighbours
        end (a digit glued on by the join would hide a card). So each part
        is scanned alone and the parts joined; overlapping findings merge,
        and a value spanning parts is replaced in each part it touches. A
        value found whole in one part is that value: the join glued a
        neighbour onto it ("to" + "alice@x.com"), it does not span them.
        Parts flagged in ``alone`` (object keys: structure, not prose) are
        not joined with their neighbours.
        """
        if len(texts) <= 1:
            one = self.sanitize(texts[0], vault) if texts else Redaction("")
            return PartsRedaction([one.text] if texts else [], one.counts, one.blocked)
        offsets = [0]
        for text in texts:
            offsets.append(offsets[-1] + len(text))
        joined = "".join(texts)
        candidates = []
        for text, base in zip(texts, offsets, strict=False):  # offsets has one more: the end
            candidates += [(start + base, end + base, det) for start, end, det in self._candidates(text)]
        candidates.sort(key=lambda c: c[0])
        starts = [c[0] for c in candidates]
        joined_only = []
        if alone is not None and any(alone):
            scanned = "".join(
                "\0" * len(text) if by_itself else text for text, by_itself in zip(texts, alone, strict=True)
            )
        else:
            scanned = joined
        for c in self._candidates(scanned):
            if bisect.bisect_right(offsets, c[0]) == bisect.bisect_left(offsets, c[1]):
                joined_only.append(c)  # inside one part, seen with its neighbours as context
            elif not _holds_one_of(candidates, starts, c[0], c[1], c[2].entity):
                joined_only.append(c)  # a value only the join shows: split across parts
        candidates += joined_only
        counts: dict[str, int] = {}
        blocked: list[str] = []
        findings = self._resolve(candidates, 0, len(joined))
        if not findings:
            return PartsRedaction(list(texts), counts, blocked)
        vault = vault if vault is not None else PseudonymVault()
        pieces: list[list[str]] = [[] for _ in texts]
        positions = offsets[:-1]  # per part: how far it has been copied (joined offsets)
        part = 0
        for f in findings:
            entity = f.entity
            counts[entity] = counts.get(entity, 0) + 1
            action = self._actions[entity]
            if action == "block":
                if entity not in blocked:
                    blocked.append(entity)
                continue
            value = joined[f.start : f.end]
            placeholder = (
                None if action == "mask" else vault.placeholder(entity, value, restorable=action == "pseudonymize")
            )
            while offsets[part + 1] <= f.start:
                part += 1
            i = part
            while i < len(texts) and offsets[i] < f.end:
                lo, hi = max(f.start, offsets[i]), min(f.end, offsets[i + 1])
                if lo < hi:
                    pieces[i].append(joined[positions[i] : lo])
                    pieces[i].append(mask(joined[lo:hi], entity) if placeholder is None else placeholder)
                    positions[i] = hi
                i += 1
        out = []
        for i, text in enumerate(texts):
            if not pieces[i]:
                out.append(text)
            else:
                pieces[i].append(joined[positions[i] : offsets[i + 1]])
                out.append("".join(pieces[i]))
        return PartsRedaction(out, counts, blocked)

    def _render(
        self,
        text: str,
        start: int,
        end: int,
        findings: list[Finding],
        vault: PseudonymVault,
        counts: dict[str, int],
        blocked: list[str],
    ) -> str:
        parts = []
        pos = start
        actions = self._actions
        for f in findings:
            entity = f.entity
            counts[entity] = counts.get(entity, 0) + 1
            action = actions[entity]
            if action == "block":
                if entity not in blocked:
                    blocked.append(entity)
                continue
            parts.append(text[pos : f.start])
            value = text[f.start : f.end]
            if action == "mask":
                parts.append(mask(value, entity))
            else:
                parts.append(vault.placeholder(entity, value, restorable=action == "pseudonymize"))
            pos = f.end
        parts.append(text[pos:end])
        return "".join(parts)

    # -- streaming support -------------------------------------------------

    def _frontier(self, buf: str, clipped: bool) -> int:
        """The first position of ``buf`` where an attempt could still change
        with more text; everything before it is decided. (Folding is per
        character, so the folded buffer is a prefix of the folded stream.)"""
        folded = fold(buf)
        return folded.start(self._folded_frontier(folded.text, clipped))

    def _folded_frontier(self, buf: str, clipped: bool) -> int:
        n = len(buf)
        frontier = n
        for det in self._stream_order:
            lo = n - det.width + 1
            floor = det.context if clipped else 0
            if lo < floor:
                lo = floor
            if lo >= frontier:
                continue
            nonalpha = det.nonalpha
            if nonalpha is not None:
                # Only the trailing run of the detector's characters can
                # still grow into a match: none can start before the
                # frontier if the run is already broken after it.
                if nonalpha.search(buf, frontier, n) is not None:
                    continue
                m = nonalpha.search(buf[lo:frontier][::-1])
                if m is not None:
                    lo = frontier - m.start()
                    if lo >= frontier:
                        continue
            head = det.head
            if head is None:
                frontier = lo
                continue
            # Positions whose head is complete and does not match are
            # decided; the last head_len - 1 positions are not yet.
            undecided = n - det.head_len + 1
            if undecided < lo:
                undecided = lo
            decided = det.decided
            pos = lo
            while (m := head.search(buf, pos, min(n, frontier + det.head_len))) is not None:
                start = m.start()
                if start >= undecided:
                    break
                if decided is None or not decided(det, buf, start, n):
                    undecided = start
                    break
                pos = start + 1
            if undecided < frontier:
                frontier = undecided
        return frontier


class StreamSanitizer:
    """``sanitize`` for text that arrives in pieces (SSE deltas).

    ``feed`` returns the sanitized text that can no longer change, ``flush``
    the rest at the end of the stream. The concatenation of all outputs
    equals ``scanner.sanitize(full_text)`` (same placeholders, counts and
    blocked list), however the text is split.

    How much is held back: a position is held only while a detection could
    still start there. When no candidate straddles the end that is at most
    ``scanner.min_holdback`` characters (64 with the built-in detectors: an
    email's local part before its ``@``; usually much less, such as the
    current word). While a candidate straddles the end (a ``-----BEGIN``
    without its ``END``, a JWT still growing, ``password=`` without its
    value) the hold extends until the candidate is decided, at most
    ``scanner.max_hold`` characters (about 10 KB, for a PEM private key or a
    JWT); after that the text is released whatever comes next. Two ways
    past that bound: values overlapping one another in a chain (they merge
    into one finding), and custom patterns whose first character cannot be
    worked out (starting with "." or an optional part), which hold their
    width at all times.

    ``holdback`` is the bound promised to the caller for the first case; it
    must be at least ``scanner.min_holdback``. Every delta releases what lies
    before the frontier, so text flows token by token (time to first token
    matters more than the ~25 µs a delta costs to rescan the held tail).
    """

    def __init__(self, scanner: PiiScanner, vault: PseudonymVault | None = None, holdback: int = 64):
        if holdback < scanner.min_holdback:
            raise ValueError(f"holdback must be at least {scanner.min_holdback} for this scanner")
        self.scanner = scanner
        self.vault = vault if vault is not None else PseudonymVault()
        self.holdback = holdback
        self.counts: dict[str, int] = {}
        self.blocked: list[str] = []
        self._buf = ""  # the text from absolute offset _base on
        self._base = 0
        self._done = 0  # absolute offset up to which output was produced
        self._closed = False

    def feed(self, delta: str) -> str:
        if self._closed:
            raise RuntimeError("feed after flush")
        if not delta:
            return ""
        self._buf += delta
        return self._advance(final=False)

    def flush(self) -> str:
        if self._closed:
            return ""
        out = self._advance(final=True)
        self._closed = True
        return out

    @property
    def pending(self) -> int:
        """Characters received but not yet returned."""
        return self._base + len(self._buf) - self._done

    def _advance(self, final: bool) -> str:
        scanner = self.scanner
        buf = self._buf
        base = self._base
        done = self._done - base
        n = len(buf)
        clipped = base > 0
        if final:
            frontier = n
        else:
            # Release everything before the frontier on every delta, so text
            # flows token by token; holding back is only for what could still
            # become a detected value (the current word, an open candidate).
            frontier = scanner._frontier(buf, clipped)
            if frontier <= done:
                return ""
        findings = scanner._resolve(scanner._candidates(buf, clipped), done, frontier)
        cut = frontier
        if findings and findings[-1].end > frontier:
            # Undecided candidates may still join the last finding: hold it.
            cut = findings.pop().start
        out = scanner._render(buf, done, cut, findings, self.vault, self.counts, self.blocked)
        self._done = base + cut
        new_base = max(0, self._done - scanner.lookback)
        if new_base > base:
            self._buf = buf[new_base - base :]
            self._base = new_base
        return out

    def __repr__(self) -> str:
        return f"<StreamSanitizer pending={self.pending} counts={self.counts}>"


class StreamRestorer:
    """``vault.restore`` for text that arrives in pieces.

    Holds back a trailing ``[`` and what follows it while it can still grow
    into a placeholder (``[EMA`` + ``IL_1]``); the concatenation of the
    outputs equals ``vault.restore(full_text)``.
    """

    def __init__(self, vault: PseudonymVault):
        self.vault = vault
        self._pending = ""

    def feed(self, delta: str) -> str:
        text = self._pending + delta
        i = text.rfind("[")
        if i != -1 and len(text) - i < _PLACEHOLDER_MAX and _PLACEHOLDER_PREFIX.fullmatch(text, i):
            self._pending = text[i:]
            text = text[:i]
        else:
            self._pending = ""
        return self.vault.restore(text)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self.vault.restore(text)

    def __repr__(self) -> str:
        return f"<StreamRestorer pending={len(self._pending)}>"
