"""Benchmark the text-inspection engines of extproc.guard.

    python bench/scan_bench.py            # both engines when hyperscan is installed
    python bench/scan_bench.py --engine re

Prints, per engine:

* µs per 4 KB chat-like request: every PII detector (find + sanitize) plus
  the prompt-injection detector, the work done per LLM request body;
* MB/s on a 1 MB body of ordinary text, for PII alone and PII + injection;
* µs per streamed delta (StreamSanitizer, 4-character deltas).

The texts are synthetic but shaped like LLM traffic: prose, code, numbers,
dates, times, versions and URLs, with a few PII values per request (they are
what makes the precise detectors run). Generation is seeded: figures from two
runs on the same machine compare.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extproc.guard import _multi
from extproc.guard.injection import InjectionDetector
from extproc.guard.pii import PiiConfig, PiiScanner, StreamSanitizer

# Common English words and the domain's own: filler that looks like chat text.
_VOCABULARY = """
the of and to in is you that it he was for on are as with his they at be this have from or one had
by word but not what all were we when your can said there use an each which she do how their if will
up other about out many then them these so some her would make like him into time has look two more
write go see number no way could people my than first water been call who oil its now find long down
day did get come made may part model request response latency budget deploy cluster service gateway
policy token user data table query index cache error retry timeout config value summary analysis
report draft
"""
WORDS = _VOCABULARY.split()

SNIPPETS = (
    "```python\ndef handler(event, context):\n    items = event.get('items', [])\n"
    "    return {'count': len(items)}\n```",
    "Use `std::vector<int>` and `std::map<std::string, int>` here; `Foo::bar()` is static.",
    "See https://docs.example.com/guide/intro?lang=en#setup for details.",
    "Release 2.14.1 fixed it; we ran 3.5.0 before. Build 1.2.3.4567 is older.",
    "The meeting is on 2024-05-12 at 14:30, or 12/05/2024 15:00 CET.",
    "Revenue grew 12.5% to $1,299,450.75 in Q3; order #48213907 shipped.",
    "SELECT id, name FROM users WHERE created_at > '2024-01-01' LIMIT 50;",
    "Error: connection refused (code 111) after 3 retries, timeout=30s.",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "I think the answer is 42, but the ratio 3:2 matters more than 16:9 here.",
)

PII = (
    "email me at jane.doe@example.org",
    "my phone is (415) 555-0123",
    "call +44 20 7946 0958 tomorrow",
    "card 4111 1111 1111 1111 exp 12/29",
    "server at 10.20.30.40 is down",
    "my SSN is 123-45-6789",
    "IBAN DE89 3704 0044 0532 0130 00",
    "api_key = 'Zx81kPq0LmN3vB7tR2yW5'",
)


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    words[0] = words[0].capitalize()
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(2, 2030)))
    return " ".join(words) + rng.choice(".?.!.")


def chat_text(rng: random.Random, size: int, pii_per_kb: float) -> str:
    parts: list[str] = []
    length = 0
    while length < size:
        r = rng.random()
        if r < 0.12:
            piece = rng.choice(SNIPPETS)
        elif r < 0.12 + pii_per_kb * 0.012:
            piece = rng.choice(PII) + "."
        else:
            piece = sentence(rng)
        parts.append(piece)
        length += len(piece) + 1
    return " ".join(parts)[:size]


def timed(fn, repeat: int, median: bool) -> float:
    """Seconds per call: the best of 7 batches of ``repeat`` calls. The best
    batch is the one least disturbed by other processes (the figures are for
    the code, not for a noisy shared machine); ``--median`` reports medians."""
    batches = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        batches.append((time.perf_counter() - t) / repeat)
    return statistics.median(batches) if median else min(batches)


def run(engine: str, median: bool) -> None:
    rng = random.Random(2026)
    scanner = PiiScanner(PiiConfig(), engine=engine)
    detector = InjectionDetector(engine=engine)
    requests = [chat_text(rng, 4096, pii_per_kb=1.0) for _ in range(50)]
    big = chat_text(rng, 1 << 20, pii_per_kb=0.05)
    findings = sum(len(scanner.find(t)) for t in requests) / len(requests)

    def per_request():
        for t in requests:
            scanner.sanitize(t)
            detector.scan(t)

    def pii_only():
        for t in requests:
            scanner.sanitize(t)

    def inj_only():
        for t in requests:
            detector.scan(t)

    us_req = timed(per_request, 3, median) / len(requests) * 1e6
    us_pii = timed(pii_only, 3, median) / len(requests) * 1e6
    us_inj = timed(inj_only, 3, median) / len(requests) * 1e6
    mb = len(big) / 1e6
    pii_big = timed(lambda: scanner.sanitize(big), 1, median)
    inj_big = timed(lambda: detector.scan(big), 1, median)

    stream_text = "".join(requests[:5])

    def stream():
        s = StreamSanitizer(scanner)
        for i in range(0, len(stream_text), 4):
            s.feed(stream_text[i : i + 4])
        s.flush()

    us_delta = timed(stream, 1, median) / (len(stream_text) / 4) * 1e6

    print(f"engine: {engine}")
    print(
        f"  4 KB chat request ({findings:.1f} PII findings avg): {us_req:7.1f} µs "
        f"(PII {us_pii:.1f} µs + injection {us_inj:.1f} µs)"
    )
    print(
        f"  1 MB ordinary text: PII {mb / pii_big:6.0f} MB/s, injection {mb / inj_big:6.0f} MB/s, "
        f"both {mb / (pii_big + inj_big):6.0f} MB/s"
    )
    print(f"  stream: {us_delta:.1f} µs per 4-char delta")


def model_tier(median: bool) -> None:
    """The prompt guard's model tier: latency per 4 KB prompt (not part of
    the fast path: it runs off the event loop, only when enabled)."""
    from extproc.guard.model.classifier import LinearModel

    model = LinearModel()
    rng = random.Random(7)
    prompts = [chat_text(rng, 4096, pii_per_kb=0.5) for _ in range(40)]
    for prompt in prompts[:3]:
        model.predict(prompt)
    samples = []
    for _ in range(5):
        for prompt in prompts:
            started = time.perf_counter()
            model.predict(prompt)
            samples.append(time.perf_counter() - started)
    samples.sort()
    p50 = samples[len(samples) // 2] * 1e3
    p99 = samples[int(len(samples) * 0.99) - 1] * 1e3
    print(f"model tier: {model.size // 1024} KB of weights, 4 KB prompt p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=["hyperscan", "re", "all"], default="all")
    parser.add_argument("--median", action="store_true", help="report medians instead of best batches")
    args = parser.parse_args()
    engines = ["hyperscan", "re"] if args.engine == "all" else [args.engine]
    if "hyperscan" in engines and not _multi.HAVE_HYPERSCAN:
        print("hyperscan is not installed: measuring the re engine only")
        engines = ["re"]
    for engine in engines:
        run(engine, args.median)
    model_tier(args.median)


if __name__ == "__main__":
    main()
