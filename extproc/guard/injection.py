"""Prompt-injection scoring: curated signatures plus de-obfuscation.

``InjectionDetector.scan(text, role)`` returns a score in 0..1 with the ids
and categories of the rules that fired. The rules live in
``rules/injection.yaml`` (versioned; see the header of that file). Matching
runs on several views of the text, each only when it can differ from the
others:

* the canonical text (NFKC, invisible characters removed, Cyrillic/Greek
  look-alikes mapped to Latin) and, when that changed anything, the raw text:
  a rule matching only the canonical text adds ``obfuscation.homoglyph``
  and/or ``obfuscation.zero_width``;
* a leetspeak-decoded copy (``1gn0r3`` → ``ignore``): rules matching only
  there add ``obfuscation.leetspeak``;
* letter-spaced runs squeezed together (``i g n o r e`` → ``ignore``),
  against the rules with their whitespace made optional: adds
  ``obfuscation.spaced_letters``;
* text hidden in Unicode tag characters, decoded (``obfuscation.unicode_tags``
  fires on any such hidden text);
* base64 blobs that decode to text: scanned like the rest, one level deep;
  a match inside adds ``obfuscation.base64``.

All rule patterns go into one Hyperscan database (case-insensitive,
single-match: the scan only says which rules matched); without Hyperscan
each is a compiled ``re`` pattern.

Weights combine as independent evidence, ``score = 1 - prod(1 - w)``: one
strong signature (0.75 to 0.9) crosses a 0.5 threshold alone, weak ones
(0.2 to 0.45) need company.

Policy lists come on top (``PromptGuardConfig``): a ``deny`` regex that
matches (raw or canonical text) scores 1.0 with rule id ``policy.deny[i]``;
a text that fully matches an ``allow`` regex skips the signatures (deny
still applies, as for ``header_match``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator

from extproc.config import CapabilityConfig
from extproc.guard import _multi, normalize, regex_analysis

RULES_PATH = Path(__file__).with_name("rules") / "injection.yaml"

Role = Literal["user", "system", "tool", "assistant"]
ROLES: tuple[str, ...] = ("user", "system", "tool", "assistant")
BUILTINS = ("base64", "leetspeak", "spaced_letters", "homoglyph", "zero_width", "unicode_tags")

# Base64 decoding budget per text: runs looked at, longest run decoded, and
# bytes decoded in all. Past it the rest is not decoded (a 10 MB image must
# not be; a payload hidden behind a thousand decoys is not either).
_B64_MAX_RUNS = 1024
_B64_MAX_CHARS = 65536
_B64_BUDGET = 512 * 1024
# Leetspeak is decoded around the words that contain it, this far each side
# (snapped to whitespace): a signature is shorter than that.
_LEET_REACH = 160


@dataclass(frozen=True, slots=True)
class InjectionResult:
    score: float
    rule_ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def _clean() -> InjectionResult:
    return InjectionResult(0.0, [], [])


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    category: str
    weight: float
    patterns: tuple[str, ...]
    roles: frozenset[str] | None
    role_weights: dict[str, float]
    builtin: str | None
    examples: tuple[str, ...]
    near_misses: tuple[str, ...]
    ends_only: bool = False

    def weight_for(self, role: str) -> float:
        if self.roles is not None and role not in self.roles:
            return 0.0
        return self.role_weights.get(role, self.weight)


# A run of filler words, ``(?:\S+\s+){m,n}`` (lazy or not). Squeezed, its
# words have no spaces left between them, and ``(?:\S+){0,n}`` over one long
# run of letters splits it every possible way: seconds for a few hundred
# characters of "i g n o r e ". Squeezed, it becomes a bounded run of
# letters, which ``re`` reads in linear time.
_FILLER_WORDS = re.compile(r"\(\?:\\S\+\\s\+\)\{(\d+),(\d+)\}\??")
_FILLER_WORD_CHARS = 24
_OPEN_WORD = re.compile(r"(?<!\\)(\\[wS])([*+])(?![?+*{])")


def _squeezed(pattern: str) -> str:
    """The pattern for letter-spaced text squeezed together: whitespace
    optional, no word boundaries (there are no words left), filler-word runs
    as bounded letter runs."""
    out = pattern.replace(r"\b", "")
    out = _FILLER_WORDS.sub(lambda m: rf"\S{{0,{int(m.group(2)) * _FILLER_WORD_CHARS}}}?", out)
    # Likewise a word's open-ended rest (``ignor\w*``): over squeezed text it
    # would read to the end of the run from every start.
    out = _OPEN_WORD.sub(lambda m: rf"{m.group(1)}{{{0 if m.group(2) == '*' else 1},{_FILLER_WORD_CHARS}}}", out)
    return re.sub(r"(\\s|\[\\s[^\]]*\])\+", r"\1*", out)


class RuleError(ValueError):
    pass


def load_rules(path: Path) -> tuple[str, tuple[Rule, ...]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RuleError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or "version" not in data or not isinstance(data.get("rules"), list):
        raise RuleError(f"{path}: expected a mapping with version and rules")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["rules"]):
        where = f"{path}: rules[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise RuleError(f"{where}: a rule needs an id")
        rid = raw["id"]
        if rid in seen:
            raise RuleError(f"{where}: duplicate id {rid}")
        seen.add(rid)
        unknown = set(raw) - {
            "id",
            "category",
            "weight",
            "patterns",
            "roles",
            "role_weights",
            "builtin",
            "examples",
            "near_misses",
            "scope",
        }
        if unknown:
            raise RuleError(f"{where} ({rid}): unknown keys {sorted(unknown)}")
        weight = raw.get("weight")
        if not isinstance(weight, (int, float)) or not 0 < weight <= 1:
            raise RuleError(f"{where} ({rid}): weight must be in (0, 1]")
        patterns = tuple("".join(p) if isinstance(p, list) else p for p in raw.get("patterns") or ())
        builtin = raw.get("builtin")
        if builtin is not None and builtin not in BUILTINS:
            raise RuleError(f"{where} ({rid}): unknown builtin {builtin!r}")
        if not patterns and builtin is None:
            raise RuleError(f"{where} ({rid}): give patterns or a builtin")
        for p in patterns:
            try:
                re.compile(p)
                p.encode("latin-1")
            except (re.error, TypeError, UnicodeEncodeError) as exc:
                raise RuleError(f"{where} ({rid}): invalid pattern: {exc}") from None
        roles = raw.get("roles")
        if roles is not None and (not isinstance(roles, list) or set(roles) - set(ROLES)):
            raise RuleError(f"{where} ({rid}): roles must be a list of {ROLES}")
        role_weights = raw.get("role_weights") or {}
        if set(role_weights) - set(ROLES) or not all(0 <= w <= 1 for w in role_weights.values()):
            raise RuleError(f"{where} ({rid}): role_weights maps roles to weights in [0, 1]")
        scope = raw.get("scope", "full")
        if scope not in ("full", "ends"):
            raise RuleError(f"{where} ({rid}): scope must be full or ends")
        rules.append(
            Rule(
                id=rid,
                category=str(raw.get("category") or rid.split(".")[0]),
                weight=float(weight),
                patterns=patterns,
                roles=frozenset(roles) if roles is not None else None,
                role_weights={k: float(v) for k, v in role_weights.items()},
                builtin=builtin,
                examples=tuple(raw.get("examples") or ()),
                near_misses=tuple(raw.get("near_misses") or ()),
                ends_only=scope == "ends",
            )
        )
    return str(data["version"]), tuple(rules)


class _Matcher:
    """Which rules match a byte string: Hyperscan or a list of re patterns."""

    def __init__(self, expressions: Sequence[tuple[int, str, int]], engine: str):
        # expressions: (id, pattern, hyperscan flags)
        self._engine = engine
        if engine == "hyperscan":
            try:
                self._db = _multi.MultiPattern(
                    [p.encode("latin-1") for _, p, _ in expressions],
                    [i for i, _, _ in expressions],
                    [f for _, _, f in expressions],
                )
            except Exception:
                # Name the pattern Hyperscan refuses (lookarounds and
                # backreferences are the usual suspects).
                for _, p, f in expressions:
                    reason = _multi.compile_check(p.encode("latin-1"), f)
                    if reason:
                        raise RuleError(f"pattern rejected by Hyperscan ({reason}): {p}") from None
                raise
        else:
            # re tries every pattern at every position, which is slow for
            # these: a pattern runs only when one of the literals any match
            # must start with is in the text (a C-speed substring test).
            # Caseless patterns search a lower-cased copy without IGNORECASE,
            # and a leading \b is checked by hand: both let re skip ahead to
            # the possible first characters instead of trying every position.
            self._res: list[tuple[int, re.Pattern[bytes], bool, bool, tuple[bytes, ...] | None]] = []
            for i, p, f in expressions:
                caseless = bool(f & _multi.CASELESS)
                bounded = caseless and p.startswith("\\b") and regex_analysis.leads_with_boundary(p)
                source = p[2:] if bounded else p
                anchors = regex_analysis.anchors(p) if caseless else None
                self._res.append((i, re.compile(source.encode("latin-1")), caseless, bounded, anchors))

    def ids(self, data: bytes) -> set[int]:
        if self._engine == "hyperscan":
            return self._db.ids(data)
        lowered = data.lower()
        found: set[int] = set()
        for i, pattern, caseless, bounded, anchors in self._res:
            if anchors is not None and not any(a in lowered for a in anchors):
                continue
            if _search(pattern, lowered if caseless else data, bounded):
                found.add(i)
        return found


_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _search(pattern: re.Pattern[bytes], data: bytes, bounded: bool) -> bool:
    """pattern.search, with the \\b the pattern lost in front when bounded."""
    pos = 0
    while (m := pattern.search(data, pos)) is not None:
        start = m.start()
        if (
            not bounded
            or start == m.end()
            or ((start == 0 or data[start - 1] not in _WORD) != (data[start] not in _WORD))
        ):
            return True
        pos = start + 1
    return False


# Four single letters in a row, separated: "i g n o", "i.g.n.o".
_SPACED_TRIGGER = r"(?:^|[^a-z0-9])[a-z][ ._\-*|/]{1,3}[a-z][ ._\-*|/]{1,3}[a-z][ ._\-*|/]{1,3}[a-z](?:[^a-z0-9]|$)"
_WHITESPACE = re.compile(rb"\s")
_UP_TO_LAST_WHITESPACE = re.compile(rb".*\s", re.DOTALL)
_MAX_WORD = 256


def _mask(classes: dict[bytes, bytes]) -> bytes:
    """A translate() table mapping each byte class to one byte, others to space."""
    table = bytearray(b" " * 256)
    for members, to in classes.items():
        for byte in members:
            table[byte] = to[0]
    return bytes(table)


_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B64_MASK = _mask({_LETTERS + b"0123456789+/_-": b"A", b"=": b"="})
_LEET_MASK = _mask({_LETTERS: b"a", b"0134578@$": b"1"})
_NOT_A = re.compile(rb"[^A]")
_NOT_1 = re.compile(rb"[^1]")


_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"'})


class _Views:
    """Where the costlier views are needed, from translate() masks of the text
    (a C-speed pass each; no regex runs over ordinary text). Engine
    independent, so both engines build exactly the same views."""

    @staticmethod
    def base64_runs(data: bytes) -> list[tuple[int, int]]:
        """Runs of 24+ base64 characters (with up to two '=' of padding)."""
        mask = data.translate(_B64_MASK)
        runs: list[tuple[int, int]] = []
        pos = 0
        while len(runs) < _B64_MAX_RUNS and (start := mask.find(b"A" * 24, pos)) >= 0:
            m = _NOT_A.search(mask, start + 24)
            end = m.start() if m else len(mask)
            pad = end
            while pad < len(mask) and pad - end < 2 and mask[pad] == 61:  # "="
                pad += 1
            runs.append((start, pad))
            pos = pad + 1
        return runs

    @staticmethod
    def leet_positions(data: bytes) -> list[int]:
        """One position in each word where a leet character sits between letters."""
        mask = data.translate(_LEET_MASK)
        out: list[int] = []
        pos = 0
        # Look for the rare "1" (memchr) and check the letter before it:
        # searching "a1" directly stops at every letter of the text.
        while (k := mask.find(b"1", pos)) >= 0:
            if k == 0 or mask[k - 1] != 97:  # no letter before this run
                m = _NOT_1.search(mask, k + 1)
                pos = m.start() if m else len(mask)
                continue
            i = k - 1
            m = _NOT_1.search(mask, k + 1)
            j = m.start() if m else len(mask)
            if j < len(mask) and mask[j] == 97:  # "a": letters on both sides
                out.append(i)
                m = _WHITESPACE.search(data, j)  # one position per word is enough
                j = m.start() if m else len(mask)
            pos = j
        return out


def _word_start(data: bytes, pos: int) -> int:
    """Where the whitespace-delimited word containing ``pos`` starts (looking
    back at most _MAX_WORD bytes)."""
    lo = max(0, pos - _MAX_WORD)
    m = _UP_TO_LAST_WHITESPACE.match(data, lo, pos)
    return m.end() if m else lo


def _word_end(data: bytes, pos: int) -> int:
    m = _WHITESPACE.search(data, pos, pos + _MAX_WORD)
    return m.start() if m else min(len(data), pos + _MAX_WORD)


def _word(data: bytes, pos: int) -> tuple[int, int]:
    """The whitespace-delimited word around ``pos``."""
    return _word_start(data, pos), _word_end(data, pos)


def _windows(data: bytes, positions: Iterable[int], reach: int) -> list[tuple[int, int]]:
    """Merged windows reaching ``reach`` bytes around the words at
    ``positions``, widened to whitespace so no word is cut."""
    spans = sorted({_word(data, pos) for pos in positions})
    out: list[tuple[int, int]] = []
    for start, end in spans:
        lo = max(0, start - reach)
        hi = min(len(data), end + reach)
        if lo:
            lo = _word_start(data, lo)
        hi = _word_end(data, hi)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


# Rules with ``scope: ends`` read this many bytes at each end of a longer
# text: persona set-ups (weak signals that only count stacked) sit at the
# start or the end of a prompt, and a megabyte document need not pay for
# them in full; the other rules read everything.
ENDS_WINDOW = 32_768


class _Tiered:
    """Every rule in one database for a text up to twice the window (one
    pass, the common case); a longer text gets the full-scope rules over all
    of it and every rule over its two ends."""

    def __init__(self, every: _Matcher, full: _Matcher | None) -> None:
        self._every = every
        self._full = full

    def ids(self, data: bytes) -> set[int]:
        if self._full is None or len(data) <= 2 * ENDS_WINDOW:
            return self._every.ids(data)
        found = self._full.ids(data)
        found |= self._every.ids(data[:ENDS_WINDOW] + b"\0\n\0" + data[-ENDS_WINDOW:])
        return found


@functools.lru_cache(maxsize=8)
def _compiled(digest: str, path: str, engine: str) -> tuple[str, tuple[Rule, ...], tuple[int, ...], _Tiered, _Matcher]:
    """Rules and matchers for one rules file content (reloads that do not
    change the file reuse the compiled databases)."""
    version, rules = load_rules(Path(path))
    flags = _multi.CASELESS | _multi.SINGLEMATCH
    expressions: list[tuple[int, str, int]] = []
    ends: list[tuple[int, str, int]] = []
    squeezed: list[tuple[int, str, int]] = []
    owners: list[int] = []  # expression id -> rule index
    for index, rule in enumerate(rules):
        for p in rule.patterns:
            (ends if rule.ends_only else expressions).append((len(owners), p, flags))
            squeezed.append((len(owners), _squeezed(p), flags))
            owners.append(index)
    # Not a rule: says whether letter-spaced runs are worth extracting.
    expressions.append((len(owners), _SPACED_TRIGGER, flags))
    # Squeezed runs are a few dozen bytes when they exist at all: re is fast
    # enough there, and a second Hyperscan database would double start-up.
    every = _Matcher(expressions + ends, engine)
    matcher = _Tiered(every, _Matcher(expressions, engine) if ends else None)
    return version, rules, tuple(owners), matcher, _Matcher(squeezed, "re")


class InjectionDetector:
    """Compiled signatures; immutable and thread-safe."""

    def __init__(
        self,
        rules_path: str | Path | None = None,
        extra_deny: Iterable[str] = (),
        extra_allow: Iterable[str] = (),
        *,
        builtin_rules: bool = True,
        engine: str | None = None,
    ):
        self.engine = _multi.resolve_engine(engine)
        self._deny = [re.compile(p) for p in extra_deny]
        self._allow = [re.compile(p) for p in extra_allow]
        self._builtin_rules = builtin_rules
        path = Path(rules_path) if rules_path is not None else RULES_PATH
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (self.version, self.rules, self._owners, self._matcher, self._squeezed) = _compiled(
            digest, str(path.resolve()), self.engine
        )
        self._builtin_index = {rule.builtin: i for i, rule in enumerate(self.rules) if rule.builtin}
        self._order = {rule.id: i for i, rule in enumerate(self.rules)}

    def __repr__(self) -> str:
        return f"<InjectionDetector rules={len(self.rules)} version={self.version} engine={self.engine}>"

    def scan(self, text: str, role: str = "user") -> InjectionResult:
        fired: dict[str, float] = {}  # rule id -> weight
        for i, pattern in enumerate(self._deny):
            if pattern.search(text):
                fired[f"policy.deny[{i}]"] = 1.0
        canon = None
        if self._deny and not text.isascii():
            canon = normalize.canonical(text)
            for i, pattern in enumerate(self._deny):
                if f"policy.deny[{i}]" not in fired and pattern.search(canon.text):
                    fired[f"policy.deny[{i}]"] = 1.0
        if self._builtin_rules and text and not any(p.fullmatch(text) for p in self._allow):
            for index in self._match(text, canon, depth=0):
                rule = self.rules[index]
                weight = rule.weight_for(role)
                if weight > 0:
                    fired[rule.id] = weight
        if not fired:
            return _clean()
        return self._result(fired)

    def _result(self, fired: dict[str, float]) -> InjectionResult:
        miss = 1.0
        for weight in fired.values():
            miss *= 1.0 - weight
        order = self._order
        ids = sorted(fired, key=lambda rid: (order.get(rid, len(order)), rid))
        categories: list[str] = []
        for rid in ids:
            category = self.rules[order[rid]].category if rid in order else "policy"
            if category not in categories:
                categories.append(category)
        return InjectionResult(round(1.0 - miss, 4), ids, categories)

    def _match(self, text: str, canon: normalize.Canonical | None, depth: int) -> set[int]:
        """Indexes of the rules that match any view of ``text``."""
        if canon is None:
            canon = normalize.canonical(text)
        owners = self._owners
        # Typographic quotes are outside Latin-1: as ASCII ones, "you’ve"
        # still reads as "you've" to the signatures.
        data = normalize.as_bytes(canon.text if canon.text.isascii() else canon.text.translate(_QUOTES))
        ids = self._matcher.ids(data)
        spaced = len(owners) in ids
        ids.discard(len(owners))
        found = {owners[i] for i in ids}
        extra: set[str] = set()
        if canon.invisible or canon.folded:
            plain = {owners[i] for i in self._matcher.ids(normalize.as_bytes(text)) if i < len(owners)}
            if found - plain:
                # Rules visible only once disguises are undone.
                if canon.invisible:
                    extra.add("zero_width")
                if canon.folded:
                    extra.add("homoglyph")
        leet = _Views.leet_positions(data)
        if leet:
            # One scan over all windows, NUL-separated: no signature spans a
            # NUL (no \s, no letter), and one call beats one per window.
            # Only the windows are decoded.
            joined = b"\0\n\0".join(
                data[lo:hi].translate(normalize.LEET) for lo, hi in _windows(data, leet, _LEET_REACH)
            )
            leet_ids = self._matcher.ids(joined)
            only = {owners[i] for i in leet_ids if i < len(owners)} - found
            if only:
                found |= only
                extra.add("leetspeak")
        if spaced:
            squeezed = normalize.squeeze_spaced(data)
            if squeezed:
                only = {owners[i] for i in self._squeezed.ids(squeezed)} - found
                if only:
                    found |= only
                    extra.add("spaced_letters")
        if canon.hidden:
            extra.add("unicode_tags")
            found |= self._match(canon.hidden, None, depth + 1)
        if depth == 0:
            runs = _Views.base64_runs(data)
            if runs:
                decoded_rules: set[int] = set()
                for decoded_text in _base64_texts(data, runs):
                    decoded_rules |= self._match(decoded_text, None, depth + 1)
                if decoded_rules:
                    found |= decoded_rules
                    extra.add("base64")
        for name in extra:
            index = self._builtin_index.get(name)
            if index is not None:
                found.add(index)
        return found


def _base64_texts(data: bytes, runs: list[tuple[int, int]]) -> list[str]:
    """Texts that base64 runs decode to (printable UTF-8 only)."""
    out = []
    budget = _B64_BUDGET
    for start, end in runs:
        if end - start > _B64_MAX_CHARS:
            continue
        budget -= end - start
        if budget < 0:
            break
        body = data[start:end].rstrip(b"=")
        altchars = b"-_" if (b"-" in body or b"_" in body) else None
        if len(body) % 4 == 1:
            body = body[:-1]
        try:
            raw = base64.b64decode(body + b"=" * (-len(body) % 4), altchars=altchars, validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, ValueError):
            continue
        if len(decoded) >= 8 and sum(ch.isprintable() or ch in "\n\r\t" for ch in decoded) >= 0.95 * len(decoded):
            out.append(decoded)
    return out


_DEFAULT_ROLES: tuple[Role, ...] = ("user", "tool")


class PromptGuardConfig(CapabilityConfig):
    deny: list[str] = Field(default_factory=list, description="Regexes: a match scores 1.0 (rule policy.deny[i]).")
    allow: list[str] = Field(
        default_factory=list, description="Regexes: a message matching one entirely skips the built-in signatures."
    )
    roles: list[Role] = Field(default_factory=lambda: list(_DEFAULT_ROLES), description="Message roles inspected.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Score from which a message is an injection.")
    detector: bool = Field(True, description="Use the built-in signatures (false: deny/allow lists only).")

    @field_validator("deny", "allow")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        for i, value in enumerate(values):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"[{i}]: invalid regex: {exc}") from None
        return values


class PromptGuard:
    """A ``PromptGuardConfig`` compiled: which roles, which lists, what threshold."""

    def __init__(self, config: PromptGuardConfig, *, rules_path: str | Path | None = None, engine: str | None = None):
        self.config = config
        self.detector = InjectionDetector(
            rules_path, config.deny, config.allow, builtin_rules=config.detector, engine=engine
        )
        self._roles = frozenset(config.roles)

    def inspects(self, role: str) -> bool:
        return role in self._roles

    def scan(self, text: str, role: str = "user") -> InjectionResult:
        """The detector's result; a clean result for roles not inspected."""
        if role not in self._roles:
            return _clean()
        return self.detector.scan(text, role)

    def verdict(self, text: str, role: str = "user") -> InjectionResult | None:
        """The result when it reaches the threshold, else None."""
        result = self.scan(text, role)
        return result if result.score >= self.config.threshold and result.rule_ids else None

    def __repr__(self) -> str:
        return f"<PromptGuard roles={sorted(self._roles)} threshold={self.config.threshold}>"
