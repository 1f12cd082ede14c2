"""Run large guard scans off the event loop.

A scan is pure CPU. Inline on the event loop, one large hostile body (a
megabyte of almost-secrets) holds every other request, health checks
included, for as long as it takes. In a worker thread the interpreter
switches threads every few milliseconds (``sys.getswitchinterval``), so the
loop keeps serving bystanders while the scan runs. Small texts, the common
case, stay inline: a thread hop costs more than scanning them.

The pool is small on purpose: it bounds how many cores hostile bodies can
take at once; further scans wait their turn in its queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Characters above which a scan leaves the event loop (about a millisecond
# of scanning).
INLINE_MAX_CHARS = 16_384

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="guard-scan")


async def scan(size: int, fn: Callable[..., T], *args) -> T:
    """``fn(*args)``, in the scan pool when ``size`` (characters) is large."""
    if size <= INLINE_MAX_CHARS:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(_POOL, fn, *args)
