"""Hashed text features shared by the classifier and its training script.

Word unigrams and bigrams plus character 4-grams inside words, over the
canonical text (``normalize.canonical``: look-alikes folded) lower-cased,
each hashed (CRC-32, stable across processes and platforms) into ``dim``
buckets. Presence, not counts, and an L2-normalized vector: a long prompt
does not score higher for being long.

Training (``bench/efficacy/train.py``) and inference must compute exactly
the same indexes; the weights file records ``FEATURES_VERSION`` and the
classifier refuses a file built for another version.
"""

from __future__ import annotations

import re
import zlib

from extproc.guard import normalize

FEATURES_VERSION = "words1-2+char4.v1"
# Only the head of a very long prompt is featurized: the persona set-up a
# jailbreak needs comes first, and the cost stays bounded.
MAX_CHARS = 16_384
_WORDS = re.compile(r"\w+|[^\w\s]")


def indexes(text: str, dim: int) -> list[int]:
    """Sorted distinct feature buckets of ``text``."""
    canon = normalize.canonical(text[:MAX_CHARS]).text.lower()
    tokens = _WORDS.findall(canon)
    crc = zlib.crc32
    mask = dim - 1
    seen = {crc(f"{a} {b}".encode()) & mask for a, b in zip(["^", *tokens], tokens, strict=False)}
    for token in set(tokens):
        seen.add(crc(token.encode()) & mask)
        if len(token) > 4:
            padded = f"<{token}>".encode()
            seen.update(crc(b"#" + padded[i : i + 4]) & mask for i in range(len(padded) - 3))
    return sorted(seen)
