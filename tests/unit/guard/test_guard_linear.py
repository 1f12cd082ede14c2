"""Every detector's work grows linearly with its input, whatever the input.

Each hostile text repeats what makes one detector start an attempt (its
prefix, separator or keyword) so that a pattern with overlapping
quantifiers or an unbounded scan per attempt turns quadratic. The time for
a 4x larger text must stay near 4x: CPU time (not wall clock), best of a
few runs, with a generous bound. This is the one timing assertion the guard
tests make: a super-linear detector is how one request stalls the gateway.
"""

from __future__ import annotations

import time

import pytest

from extproc.guard.injection import InjectionDetector
from extproc.guard.pii import BUILTIN_ENTITIES, PiiConfig, PiiScanner

ZW = "\u200b"

# (name, unit): the text is the unit repeated up to the size.
HOSTILE = [
    ("pem headers", "-----BEGIN PRIVATE KEY-----AAAA"),
    ("pem headers with lines", "-----BEGIN RSA PRIVATE KEY-----\nQUJD\n"),
    ("pem long dashes", "-------------BEGIN PRIVATE KEY"),
    ("pem end lines", "-----END PRIVATE KEY-----"),
    ("begin words", "BEGIN PRIVATE KEY "),
    ("lower armor", "-----begin private key-----\n"),
    ("at signs", "@"),
    ("emails glued", "a@b."),
    ("local parts", "a.b%c+d-e_f"),
    ("dotted letters", "a."),
    ("digits", "4"),
    ("digit groups", "4111 "),
    ("dashed digits", "123-"),
    ("dotted digits", "1."),
    ("phone plus", "+1 (0)"),
    ("ipv6 colons", "0:"),
    ("double colons", "::a"),
    ("iban heads", "DE89 "),
    ("aws keys", "AKIA"),
    ("aws words", "aws secret key "),
    ("aws secret run", "aws A"),
    ("jwt heads", "eyJ."),
    ("jwt segments", "eyJhbGciOi."),
    ("bearer", "Bearer "),
    ("bearer token run", "bearer a"),
    ("keyed secrets", "password="),
    ("keyed secret values", "token=ab1"),
    ("vendor prefixes", "sk-"),
    ("github prefixes", "ghp_"),
    ("json escapes", "\\n"),
    ("zero width digits", "4" + ZW),
    ("fullwidth digits", "\uff14\uff11 "),
    ("arabic digits", "\u0664\u0661\u0661-"),
    ("fullwidth at", "a\uff20"),
    ("soft hyphens", "a\u00ad"),
    ("cjk", "\u4f60\u597d"),
    ("injection words", "ignore previous instructions "),
    ("spaced letters", "i g n o r e "),
    ("leet", "1gn0r3 "),
    ("base64", "QUFBQUFB"),
    ("tags", "\U000e0069\U000e0067"),
]

SMALL = 40_000

# CPU-time ratios want a quiet machine and take a minute: the full suite runs them.
pytestmark = pytest.mark.integration


def cpu_time(fn, text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return best


def text_of(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


@pytest.fixture(scope="module")
def scanners():
    every = PiiConfig(entities=dict.fromkeys(BUILTIN_ENTITIES, "redact"), ssn_unformatted=True, aws_secret_entropy=True)
    return {
        "pii": PiiScanner(every).find,
        "pii/re": PiiScanner(every, engine="re").find,
        "injection": InjectionDetector().scan,
    }


@pytest.mark.parametrize("name,unit", HOSTILE, ids=[n for n, _ in HOSTILE])
def test_work_grows_linearly(scanners, name, unit):
    small, large = text_of(unit, SMALL), text_of(unit, 4 * SMALL)
    for label, fn in scanners.items():
        fn(small)  # warm caches (fold table, scratch spaces)
        t_small, t_large = cpu_time(fn, small), cpu_time(fn, large)
        ratio = t_large / max(t_small, 1e-3)
        print(f"{name:>24} {label:>9}: {t_small * 1000:7.1f} ms -> {t_large * 1000:7.1f} ms (x{ratio:.1f})")
        assert ratio < 8, f"{label} on {name!r}: 4x the text took {ratio:.1f}x the time"
        # And no absurd constant either (the worst, keyed secrets, re-read a
        # 256-character value per keyword: about 1 s here on a shared CI core).
        assert t_large < 3, f"{label} on {name!r}: {t_large:.2f} s for {len(large)} characters"


def test_the_reported_pem_body_costs_little_per_character(scanners):
    # The finding: ~380 KB of "-----BEGIN PRIVATE KEY-----AAAA..." held the
    # event loop 1.5 s (a lazy regex re-read up to 8 KB after every header).
    # Linear either way; the per-character cost is what stalled the gateway.
    text = text_of("-----BEGIN PRIVATE KEY-----AAAA", 380_000)
    for label in ("pii", "pii/re"):
        elapsed = cpu_time(scanners[label], text)
        print(f"380 KB of PEM headers, {label}: {elapsed * 1000:.0f} ms")
        assert elapsed < 0.8
