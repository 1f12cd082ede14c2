"""One multi-pattern pass over a text, with Hyperscan when it is installed.

Hyperscan scans for every expression at once at several hundred MB/s; the
guard engines use it as a prefilter and run their precise Python regexes only
where it reports something. Without it (``import hyperscan`` fails, or an
engine is built with ``engine="re"``) the engines skip the prefilter and scan
with ``re`` alone: same results, slower.

Hyperscan works on bytes. Texts are encoded as Latin-1 with every other
character replaced by ``?``: one byte per character, so offsets are the
string's offsets, and no prefilter expression mentions ``?`` or non-ASCII.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

# The C extension has no type information: Any, checked at its use sites.
_hs: Any
try:  # pragma: no cover - exercised by the fallback test reloading this module
    if os.environ.get("EXTPROC_GUARD_ENGINE", "").lower() == "re":
        raise ImportError("disabled by EXTPROC_GUARD_ENGINE=re")
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None

HAVE_HYPERSCAN = _hs is not None

if _hs is not None:
    SOM_LEFTMOST = _hs.HS_FLAG_SOM_LEFTMOST
    CASELESS = _hs.HS_FLAG_CASELESS
    SINGLEMATCH = _hs.HS_FLAG_SINGLEMATCH
    DOTALL = _hs.HS_FLAG_DOTALL
else:  # the values only need to be distinct bits
    SOM_LEFTMOST, CASELESS, SINGLEMATCH, DOTALL = 256, 1, 8, 2


def resolve_engine(engine: str | None) -> str:
    if engine in (None, "auto"):
        return "hyperscan" if HAVE_HYPERSCAN else "re"
    if engine == "hyperscan" and not HAVE_HYPERSCAN:
        raise RuntimeError("the hyperscan engine was requested but hyperscan cannot be imported")
    if engine not in ("hyperscan", "re"):
        raise ValueError(f"unknown engine {engine!r}: use 'auto', 'hyperscan' or 're'")
    return engine


def as_bytes(text: str) -> bytes:
    return text.encode("latin-1", "replace")


class TooManyMatches(Exception):
    """The scan reported more matches than the caller's budget."""


class MultiPattern:
    """A Hyperscan block-mode database with one scratch space per thread.

    Hyperscan releases the GIL while scanning and a scratch space must not be
    shared by two concurrent scans, hence the thread-local scratch.
    """

    def __init__(self, expressions: Sequence[bytes], ids: Sequence[int], flags: Sequence[int]):
        if _hs is None:  # pragma: no cover
            raise RuntimeError("hyperscan is not available")
        self._db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        self._db.compile(expressions=list(expressions), ids=list(ids), elements=len(expressions), flags=list(flags))
        self._local = threading.local()

    def _scratch(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = _hs.Scratch(self._db)
        return scratch

    def scan(self, data: bytes, limit: int | None = None) -> list[tuple[int, int, int]]:
        """(id, start, end) for every match; ``TooManyMatches`` past ``limit``."""
        hits: list[tuple[int, int, int]] = []
        append = hits.append
        if limit is None:

            def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> bool | None:
                append((id_, start, end))
                return None
        else:

            def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> bool | None:
                append((id_, start, end))
                return len(hits) > limit

        try:
            self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        except _hs.ScanTerminated:
            raise TooManyMatches from None
        return hits

    def ids(self, data: bytes) -> set[int]:
        """The ids that match at least once (use with SINGLEMATCH)."""
        found: set[int] = set()
        add = found.add

        def on_match(id_: int, start: int, end: int, flags: int, context: Any) -> None:
            add(id_)

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        return found


def compile_check(expression: bytes, flags: int) -> str | None:
    """Why Hyperscan rejects ``expression``, or None."""
    if _hs is None:
        return None
    try:
        MultiPattern([expression], [0], [flags])
    except _hs.error as exc:
        return str(exc)
    return None
