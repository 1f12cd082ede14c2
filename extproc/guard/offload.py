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
killed), scans run in threads. The prompt guard's model tier has a pool of
its own (one worker, normal priority; see ``model``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# Characters above which a scan leaves the event loop (about a millisecond
# of scanning).
INLINE_MAX_CHARS = 16_384

_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="guard-scan")


class _Pool:
    """A spawn process pool started in the background on first use; until
    it is up, or if it cannot start, work runs in threads."""

    def __init__(self, name: str, workers: int, nice: int) -> None:
        self.name = name
        self.workers = workers
        self.nice = nice
        self.processes: ProcessPoolExecutor | None = None
        self.failed = False
        self.starting = False
        self.warmers: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def get(self) -> ProcessPoolExecutor | None:
        """The pool once its worker has started, else None (and start it).

        Starting a worker (a fresh interpreter importing the guards) takes
        about a second: far longer than Envoy waits for a message."""
        if self.processes is not None or self.failed:
            return self.processes
        if not self.starting:
            self.starting = True
            threading.Thread(target=self._start, name=f"{self.name}-start", daemon=True).start()
        return None

    def _start(self) -> None:
        try:
            # spawn: the processor runs gRPC threads, which must not be forked.
            pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.nice, os.getpid()),
            )
            pool.submit(os.getpid).result()
            # Work that must be ready before the first real job (loading a
            # model) runs before the pool takes any: until then, threads.
            for fn, args in list(self.warmers):
                pool.submit(fn, *args).result()
        except Exception as exc:  # noqa: BLE001 - any failure: threads from now on
            # No worker process can start here (an embedding interpreter still
            # bootstrapping, no fork/exec allowed...).
            log.warning("%s processes unavailable (%s); running in threads", self.name, type(exc).__name__)
            self.failed = True
        else:
            self.processes = pool
            log.info(f"{self.name} workers ready", extra={"workers": self.workers})
        finally:
            self.starting = False

    def warm(self, fn: Callable[..., Any], *args: Any, start: bool = True) -> None:
        """Run ``fn(*args)`` in the pool before it serves: when it starts
        (now, with ``start``, or on first use), and in a pool already running
        (a policy reload) ahead of the requests to come."""
        if len(self.warmers) >= 16:
            del self.warmers[0]
        self.warmers.append((fn, args))
        pool = self.get() if start else self.processes
        if pool is not None:
            try:
                pool.submit(fn, *args)
            except (BrokenProcessPool, RuntimeError):
                self.processes = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        pool = self.get()
        if pool is not None:
            try:
                return await asyncio.wrap_future(pool.submit(fn, *args))
            except BrokenProcessPool:
                log.warning("%s pool broken; running in a thread and restarting the pool", self.name)
                self.processes = None
        return await asyncio.get_running_loop().run_in_executor(_threads, fn, *args)


# Bulk scans of large bodies: at most half the cores, at the lowest
# priority, so a hostile body slows itself, not its neighbours.
_BULK = _Pool("guard scan", max(1, (os.cpu_count() or 2) // 2), 19)
# The prompt guard's model tier: small jobs under a per-request time budget
# that fits inside Envoy's message timeout, so at normal priority (at 19 a
# busy host starves them past the budget) and in a process of its own (in a
# thread it would hold the GIL against the event loop).
_MODEL = _Pool("guard model", 1, 0)


def _init_worker(nice: int, parent: int) -> None:
    try:
        if nice:
            os.nice(nice)
    except OSError:  # pragma: no cover - not permitted: run at normal priority
        pass
    # A processor killed outright (SIGKILL, OOM) must not leave its scan and
    # model workers behind. PR_SET_PDEATHSIG would fire when the *thread*
    # that started the pool ends (a short-lived one here), so watch instead.
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="orphan-watch", daemon=True).start()


def _exit_when_orphaned(parent: int, interval: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(0)


async def scan(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``: inline when ``size`` (characters) is small, else in the
    scan process pool (``fn`` and its arguments must pickle)."""
    if size <= INLINE_MAX_CHARS:
        return fn(*args)
    return await _BULK.run(fn, *args)


async def model(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` never on the event loop, whatever its size: in the model
    process once it is up, else in a thread (``fn`` and its arguments must
    pickle). Callers bound the wait themselves."""
    return await _MODEL.run(fn, *args)


_serving = threading.Event()


def serving() -> None:
    """Called by a process that serves requests, before it loads its policy:
    from then on a policy load starts and warms the model process. Anything
    else that loads a policy (``policy validate``, ``policy test``, a
    supervisor checking a reload) starts no process."""
    _serving.set()


def warm_model(fn: Callable[..., Any], *args: Any) -> None:
    """In a serving process, start the model process at policy load, with
    ``fn(*args)`` run in it before it takes requests (a request never waits
    for a model to load). Elsewhere the pool starts on first use, and warms
    the same way before it takes any."""
    _MODEL.warm(fn, *args, start=_serving.is_set())


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
