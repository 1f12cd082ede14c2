"""Admission control: refuse new work at once rather than time it out.

Envoy gives each ext_authz check and each ext_proc message a short deadline
(``message_timeout``, 250 ms in the shipped configs). One worker is one
event loop: when a burst of new streams arrives faster than it can answer,
every stream waits behind the others and the tail of the burst misses the
deadline - a 500/504 for requests that were never even looked at. The gate
bounds the work a worker has started but not answered; past the bound a
*new* check or stream gets an immediate 503 with ``Retry-After`` (a refusal
the client can act on) and costs almost nothing to produce.

What counts as in flight: an ext_authz ``Check`` until it returns, and an
ext_proc stream from its start until each answer is written (and again from
each later message until its answer). An ext_proc stream idling between
messages - a long LLM response trickling through - holds no slot, so open
streams never starve new ones. Streams already admitted are never refused
midway: only new work is shed.

The services are wrapped (``extproc.services.admitted``), not edited: the
gate is a counter in front of them, one comparison on the fast path.
"""

from __future__ import annotations

import logging
import time

from extproc.context import Deny

log = logging.getLogger("extproc.admission")

DEFAULT_RETRY_AFTER_S = 1
# Per worker. Python answers a check in well under a millisecond of loop
# time, so 128 started-and-unanswered items drain in a few tens of ms - far
# inside a 250 ms message_timeout - while requests waiting on I/O (Redis,
# a JWKS fetch) still have ample room.
DEFAULT_MAX_CONCURRENT = 128
_WARN_EVERY_S = 10.0


def overloaded(retry_after_s: int) -> Deny:
    return Deny(503, "overloaded", "admission limit reached", message="service overloaded, retry later",
                headers=(("retry-after", str(retry_after_s)),))


class AdmissionGate:
    """Counts work in flight on one event loop (no lock: one thread)."""

    __slots__ = ("limit", "in_flight", "rejected", "refusal", "_warned_at")

    def __init__(self, limit: int = DEFAULT_MAX_CONCURRENT, retry_after_s: int = DEFAULT_RETRY_AFTER_S):
        if limit < 1:
            raise ValueError("the admission limit must be at least 1")
        self.limit = limit
        self.in_flight = 0
        self.rejected = 0
        self.refusal = overloaded(retry_after_s)
        self._warned_at = 0.0

    def try_enter(self) -> bool:
        if self.in_flight < self.limit:
            self.in_flight += 1
            return True
        self.rejected += 1
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:  # a log line per burst, not per refusal
            self._warned_at = now
            log.warning("overloaded: shedding new requests with 503",
                        extra={"limit": self.limit, "rejected_total": self.rejected})
        return False

    def leave(self) -> None:
        self.in_flight -= 1
