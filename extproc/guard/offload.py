"""Run large guard scans off the event loop, in another process.

A scan is pure CPU. Inline on the event loop, one large hostile body (a
megabyte of almost-secrets) holds every other request, health checks
included, for as long as it takes. A worker *thread* is not enough: the
scan holds the GIL (``re`` does not release it), the loop waits up to a
switch interval for every turn, and under load it falls far enough behind
for admission control to shed bystanders (measured: bystander 503s with a
thread pool, none with a process). So large scans go to a small process
pool; small texts, the common case, stay inline (the round trip costs more
than scanning them).

Scanners are rebuilt in the worker from their (picklable) config and cached
there by a key the capability computes once; arguments and results
(texts, the request's pseudonym vault) are pickled both ways.

The pool has at most half the cores, at a lower CPU priority: hostile
bodies can never take the cores from request handling; further scans wait
their turn in its queue. Until its worker is up (it starts on the first
large scan and takes about a second), or if the pool breaks (a worker
killed), scans run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# Characters above which a scan leaves the event loop (about a millisecond
# of scanning).
INLINE_MAX_CHARS = 16_384

_processes: ProcessPoolExecutor | None = None
_processes_failed = False
_starting = False
_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="guard-scan")


def _process_pool() -> ProcessPoolExecutor | None:
    """The pool once its worker has started, else None (and start it).

    Starting a worker (a fresh interpreter importing the guards) takes about
    a second: far longer than Envoy waits for a message. Until it is up,
    large scans run in threads, as they would without a pool."""
    global _processes, _starting
    if _processes is not None:
        return _processes
    if not _starting:
        _starting = True
        threading.Thread(target=_start, name="guard-scan-start", daemon=True).start()
    return None


def _start() -> None:
    global _processes, _processes_failed, _starting
    try:
        # spawn: the processor runs gRPC threads, which must not be forked.
        workers = max(1, (os.cpu_count() or 2) // 2)
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority
        )
        pool.submit(os.getpid).result()
    except Exception as exc:  # noqa: BLE001 - any failure: threads from now on
        # No worker process can start here (an embedding interpreter still
        # bootstrapping, no fork/exec allowed...).
        log.warning("guard scan processes unavailable (%s); scanning in threads", type(exc).__name__)
        _processes_failed = True
    else:
        _processes = pool
        log.info("guard scan workers ready", extra={"workers": workers})
    finally:
        _starting = False


def _lower_priority() -> None:
    # Bulk scans yield the CPU to the processes answering requests (the
    # event loop, Envoy): a hostile body slows itself, not its neighbours.
    try:
        os.nice(19)
    except OSError:  # pragma: no cover - not permitted: run at normal priority
        pass


async def scan(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``: inline when ``size`` (characters) is small, else in the
    scan process pool (``fn`` and its arguments must pickle)."""
    if size <= INLINE_MAX_CHARS:
        return fn(*args)
    return await off_loop(fn, *args)


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` never on the event loop, whatever its size: in the scan
    process pool once it is up, else in a thread (``fn`` and its arguments
    must pickle). For work too slow to run inline even on small inputs (the
    prompt guard's model tier); callers bound the wait themselves."""
    global _processes
    pool = None if _processes_failed else _process_pool()
    if pool is not None:
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool:
            log.warning("guard scan pool broken; scanning in a thread and restarting the pool")
            _processes = None
    return await asyncio.get_running_loop().run_in_executor(_threads, fn, *args)


async def in_thread(size: int, fn: Callable[..., T], *args: Any) -> T:
    """For stateful work that cannot move to another process (a response
    stream's sanitizer): large pieces at least leave the event loop."""
    if size <= INLINE_MAX_CHARS:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_threads, fn, *args)


_cache: dict[str, Any] = {}


def cached(key: str, build: Callable[[], T]) -> T:
    """A per-process cache of scanners (built once per worker and config)."""
    value = _cache.get(key)
    if value is None:
        if len(_cache) >= 64:
            _cache.clear()
        value = _cache[key] = build()
    return value
