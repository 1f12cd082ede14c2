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

import hashlib
import logging
import os
import platform
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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
        self._db = _compiled(list(expressions), list(ids), list(flags))
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


# -- compiled databases, cached -------------------------------------------------
#
# Compiling the injection rules takes seconds, and every process compiles them
# at start (the supervisor validating, then each worker, each a fresh
# interpreter) and again at each reload. A compiled database is a pure function
# of its expressions, ids and flags, so it is kept in memory for the process
# and serialized to a private on-disk cache for the next one.

_memory: dict[str, Any] = {}
_memory_lock = threading.Lock()
CACHE_ENV = "EXTPROC_CACHE_DIR"  # a directory, or "off"


def _cache_key(expressions: list[bytes], ids: list[int], flags: list[int]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{getattr(_hs, '__version__', '?')}|{platform.machine()}|block\0".encode())
    for expression, id_, flag in zip(expressions, ids, flags, strict=True):
        digest.update(b"%d\0%d\0%b\0" % (id_, flag, expression))
    return digest.hexdigest()


def cache_dir() -> Path | None:
    configured = os.environ.get(CACHE_ENV, "")
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "extproc"


def _private(path: Path) -> bool:
    """Only a file this user owns and nobody else may write is trusted: a
    planted database could otherwise turn the guard off."""
    try:
        info = path.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def _load_cached(path: Path) -> Any:
    if not (_private(path.parent) and _private(path)):
        return None
    try:
        return _hs.loadb(path.read_bytes(), _hs.HS_MODE_BLOCK)
    except (OSError, _hs.error):  # unreadable, truncated, another CPU's build: compile instead
        return None


def _store_cached(path: Path, db: Any) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(path.parent):
            return
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".hs-", delete=False) as tmp:
            tmp.write(_hs.dumpb(db))
        os.replace(tmp.name, path)  # atomic: a concurrent reader sees all of it or nothing
    except (OSError, _hs.error) as exc:
        log.debug("hyperscan database cache not written: %s", exc)


def _compiled(expressions: list[bytes], ids: list[int], flags: list[int]) -> Any:
    key = _cache_key(expressions, ids, flags)
    with _memory_lock:
        db = _memory.get(key)
    if db is not None:
        return db
    directory = cache_dir()
    path = directory / f"hs-{key}.db" if directory is not None else None
    db = _load_cached(path) if path is not None else None
    if db is None:
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        db.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags)
        if path is not None:
            _store_cached(path, db)
    with _memory_lock:
        if len(_memory) >= 64:  # reloads with changed rules: keep the cache bounded
            _memory.clear()
        return _memory.setdefault(key, db)


def compile_check(expression: bytes, flags: int) -> str | None:
    """Why Hyperscan rejects ``expression``, or None."""
    if _hs is None:
        return None
    try:
        MultiPattern([expression], [0], [flags])
    except _hs.error as exc:
        return str(exc)
    return None
