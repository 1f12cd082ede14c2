"""Process-wide resources that outlive a policy revision.

A policy reload builds new capability instances, but connection pools, key
caches and quota backends must survive it (a reload must not drop Redis
connections or forget fetched JWKS). Capabilities get them from the
``Runtime`` they are constructed with, keyed so that two routes naming the
same JWKS URL share one cache.

An entry lives as long as a live policy revision uses it: the loader
collects the keys a revision asks for and holds them; the policy store
releases a replaced revision's keys, and an entry no revision holds any more
is closed (a removed issuer's JWKS stops polling) and forgotten. Entries made
outside a policy load are never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("extproc.runtime")


@dataclass(slots=True)
class Runtime:
    # Quota backend for every quota capability: "memory" (the embedded
    # default) or a redis:// / rediss:// / redis+cluster:// URL.
    quota_backend: str = field(default_factory=lambda: os.environ.get("EXTPROC_QUOTA_BACKEND", "memory"))
    # Relative file paths in a policy (JWKS files, API key files) resolve
    # against the policy directory, not the process's working directory;
    # for a copy of a policy (the supervisor's last good one), against the
    # copy where the file is in it, else against the live directory it was
    # copied from (a path reaching outside the directory).
    policy_dir: Path | None = None
    live_policy_dir: Path | None = None
    # Files the current policy refers to; a change to one reloads the policy.
    referenced_files: set[Path] = field(default_factory=set)
    _shared: dict[Any, Any] = field(default_factory=dict)
    _holds: Counter[Any] = field(default_factory=Counter)  # key -> live revisions using it
    _collecting: set[Any] | None = None  # keys the policy being loaded asks for
    _closing: set[asyncio.Task[Any]] = field(default_factory=set)

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path)
        if not candidate.is_absolute() and self.policy_dir is not None:
            relative, candidate = candidate, self.policy_dir / candidate
            if self.live_policy_dir is not None and not candidate.exists():
                candidate = self.live_policy_dir / relative
        resolved = candidate.resolve()
        self.referenced_files.add(resolved)
        return resolved

    def shared(self, key: Any, factory: Callable[[], T]) -> T:
        """The one instance for ``key``, made by ``factory`` on first use."""
        if self._collecting is not None:
            self._collecting.add(key)
        try:
            found: T = self._shared[key]  # the factory for this key made it
            return found
        except KeyError:
            value = self._shared[key] = factory()
            return value

    @contextmanager
    def collecting(self) -> Iterator[set[Any]]:
        """The keys ``shared`` is asked for inside the block (one policy load)."""
        previous, self._collecting = self._collecting, set()
        try:
            yield self._collecting
        finally:
            self._collecting = previous

    def hold(self, keys: Iterable[Any]) -> None:
        """A revision that will serve uses these entries."""
        self._holds.update(set(keys))

    def release(self, keys: Iterable[Any]) -> None:
        """A revision that no longer serves: entries no revision holds are closed."""
        for key in set(keys):
            self._holds[key] -= 1
            if self._holds[key] <= 0:
                del self._holds[key]
                self._drop(key)

    def drop_unheld(self, keys: Iterable[Any]) -> None:
        """What a load that was refused made: nothing serves with it."""
        for key in set(keys):
            if self._holds[key] <= 0:
                self._holds.pop(key, None)
                self._drop(key)

    def _drop(self, key: Any) -> None:
        value = self._shared.pop(key, None)
        if value is None:
            return
        # In-flight requests of the old revision may still hold the value:
        # a synchronous close() must leave it usable (e.g. stop polling but
        # keep the keys); only values without one get their aclose().
        close = getattr(value, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("closing a released resource failed", extra={"resource": repr(key)})
            return
        aclose = getattr(value, "aclose", None)
        if aclose is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(aclose())
        except RuntimeError:
            return  # no loop: nothing of it is running
        self._closing.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for value in self._shared.values():
            close = getattr(value, "aclose", None)
            if close is not None:
                await close()
        self._shared.clear()
        self._holds.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


DEFAULT_RUNTIME = Runtime()
