"""Admission control: refuse new work at once rather than time it out.

Envoy gives each ext_authz check and each ext_proc message a short deadline
(``message_timeout``, 250 ms in the shipped configs). When a worker has more
work than it can answer in time, the gate refuses *new* work at once with a
503 and ``Retry-After`` (a refusal the client can act on, and far cheaper to
produce than a decision) instead of letting every request queue behind the
others until the tail misses its deadline.

A new check or stream is refused when any of three signals says the worker
is behind:

* concurrent work (``limit``): ext_authz checks until they return, ext_proc
  streams until they end - one per HTTP request Envoy is governing through
  this worker, however long its upstream takes. Admitted streams are never
  refused midway: only new work is shed.
* for an ext_proc stream (no deadline of its own), the event loop's lag
  (``max_lag_s``, on two ticks in a row): a ticker measures how late the
  loop wakes it - how long anything that arrives now waits behind
  capability work already queued (large bodies being scanned, say).
* for a call with a deadline (ext_authz checks), that deadline instead: a
  check arriving with less than ``min_remaining_s`` left has spent its
  budget queued in gRPC's intake, which accepts new calls one at a time,
  before any handler could see it; answering 503 now beats deciding after
  Envoy gave up. A timeout configured longer than ours is respected.

What no server-side gate can fix: a burst of *new* calls faster than that
intake (about 1,000-1,500 a second per worker, measured) waits in gRPC's
core, invisible to Python, and times out there. Bound it in front, where the
queue is visible: Envoy's circuit breaker (``max_requests``) on the
governance cluster, or more workers.

The services are wrapped (``extproc.services.admitted``), not edited: the
per-request cost is a few comparisons.
"""

from __future__ import annotations

import asyncio
import logging
import time

from extproc.context import Deny

log = logging.getLogger("extproc.admission")

DEFAULT_RETRY_AFTER_S = 1
# Per worker. One worker takes in about 1,000-1,500 new gRPC calls a second
# (measured: grpc.aio accepts calls one at a time), so about 300 fit in one
# 250 ms message_timeout; 256 leaves headroom. Long-lived streams (LLM
# responses) count too: raise it (or add workers) for many of those.
DEFAULT_MAX_CONCURRENT = 256
# A fifth of the shipped 250 ms message_timeout: past it, the queue is long
# enough that what joins it now risks the deadline.
DEFAULT_MAX_LAG_S = 0.05

# A decision takes about a millisecond: a check with less than this left
# will not be answered in time anyway (and a short configured timeout is no
# reason to refuse everything).
DEFAULT_MIN_REMAINING_S = 0.005
_TICK_S = 0.01
_WARN_EVERY_S = 10.0


def overloaded(retry_after_s: int) -> Deny:
    return Deny(
        503,
        "overloaded",
        "admission limit reached",
        message="service overloaded, retry later",
        headers=(("retry-after", str(retry_after_s)),),
    )


class AdmissionGate:
    """One worker's admission state (one event loop: no lock)."""

    __slots__ = ("_warned_at", "in_flight", "lagging", "limit", "max_lag_s", "min_remaining_s", "refusal", "rejected")

    def __init__(
        self,
        limit: int = DEFAULT_MAX_CONCURRENT,
        retry_after_s: int = DEFAULT_RETRY_AFTER_S,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        min_remaining_s: float = DEFAULT_MIN_REMAINING_S,
    ):
        if limit < 1:
            raise ValueError("the admission limit must be at least 1")
        self.limit = limit
        self.max_lag_s = max_lag_s
        self.min_remaining_s = min_remaining_s
        self.in_flight = 0
        self.lagging = False
        self.rejected = 0
        self.refusal = overloaded(retry_after_s)
        self._warned_at = 0.0

    def try_enter(self, remaining_s: float | None = None) -> bool:
        # A call's own deadline, when it has one, says exactly whether it can
        # still be answered in time (and respects a timeout configured longer
        # than ours); the loop's lag stands in for it when it has none.
        on_time = not self.lagging if remaining_s is None else remaining_s >= self.min_remaining_s
        if self.in_flight < self.limit and on_time:
            self.in_flight += 1
            return True
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:  # a log line per burst, not per refusal
            self._warned_at = now
            log.warning(
                "overloaded: shedding new requests with 503",
                extra={
                    "limit": self.limit,
                    "in_flight": self.in_flight,
                    "lagging": self.lagging,
                    "rejected_total": self.rejected,
                },
            )
        return False

    def leave(self) -> None:
        self.in_flight -= 1

    async def watch_loop(self) -> None:
        """Keep ``lagging`` current: how late does the loop run a timer?
        Two late ticks in a row, not one: a single pause (a policy compiled
        on reload, a GC pass) leaves a queue that drains by itself, and
        shedding what waited through it would fail requests for nothing."""
        loop = asyncio.get_running_loop()
        late_before = False
        while True:
            due = loop.time() + _TICK_S
            await asyncio.sleep(_TICK_S)
            late = loop.time() - due > self.max_lag_s
            self.lagging = late and late_before
            late_before = late
