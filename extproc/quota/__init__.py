"""Quota state: rate limits, concurrency limits and token budgets.

``backend_for(runtime)`` gives the process-wide backend named by
``runtime.quota_backend`` ("memory" or a Redis URL): one instance per URL
for the life of the process, so policy reloads keep their connections and a
memory backend keeps its counters.
"""

from __future__ import annotations

from extproc.quota.backend import (
    BackendUnavailable,
    Lease,
    Outcome,
    QuotaBackend,
    RateSpec,
    RateStatus,
    Reservation,
    SlotSpec,
)
from extproc.quota.memory import MemoryBackend
from extproc.runtime import Runtime

MEMORY = "memory"


def open_backend(url: str) -> QuotaBackend:
    """A new backend for ``url``. Raises ``ValueError`` on a bad URL; never
    connects (that happens on first use, inside the event loop)."""
    if url == MEMORY:
        return MemoryBackend()
    from extproc.quota.redis_backend import RedisBackend  # redis-py only when used

    return RedisBackend(url)


def backend_for(runtime: Runtime) -> QuotaBackend:
    url = runtime.quota_backend
    return runtime.shared(("quota", url), lambda: open_backend(url))


def fallback_for(runtime: Runtime, backend: QuotaBackend, on_backend_error: str) -> MemoryBackend | None:
    """The local limiter a capability falls back on while the shared backend
    is unreachable: only when it fails open, and only in front of a shared
    (not already local) backend."""
    if on_backend_error != "fail_open" or isinstance(backend, MemoryBackend):
        return None
    return runtime.shared(("quota", MEMORY), MemoryBackend)


__all__ = [
    "BackendUnavailable",
    "Lease",
    "MemoryBackend",
    "Outcome",
    "QuotaBackend",
    "RateSpec",
    "RateStatus",
    "Reservation",
    "SlotSpec",
    "backend_for",
    "fallback_for",
    "open_backend",
]
