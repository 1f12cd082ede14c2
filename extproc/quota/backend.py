"""What every quota backend provides, and the values it exchanges.

Three primitives, each atomic on the backend:

* ``check``: evaluate ALL of one request's limits at once: GCRA rate limits
  and concurrency slot acquisitions. All or nothing: if any limit rejects,
  nothing is consumed and no slot is taken. One backend round trip.
* ``release``: give concurrency slots back. Idempotent; a slot that is
  never released (crashed processor, lost network) expires with its lease.
* ``reserve`` / ``reconcile``: token budgets (e.g. LLM tokens): take an
  estimated amount up front, then settle the difference with what was
  actually used. Concurrent reservations can never together exceed the
  budget, so the overspend is bounded by the reconciliations still pending.

Times inside backends are integer microseconds on the backend's own clock
(Redis ``TIME`` for Redis), so processors with skewed clocks still agree.
Times handed back to callers are seconds (floats).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

US = 1_000_000


class BackendUnavailable(Exception):
    """The backend could not answer in time. Callers apply their failure
    policy (fail open or closed); nothing else should escape a backend."""


@dataclass(frozen=True, slots=True)
class RateSpec:
    """``requests`` per ``period`` seconds, at most ``burst`` at once.

    GCRA (the "generic cell rate algorithm", a token bucket stored as one
    timestamp): each request pushes the key's theoretical arrival time
    (TAT) forward by ``interval``; a request is admitted while the TAT
    stays within ``tolerance`` of now. Unlike fixed windows there is no
    boundary at which a client can spend two windows' worth at once: at any
    instant at most ``burst`` requests fit, then one per ``interval``.
    """

    requests: int
    period: float
    burst: int
    interval_us: int  # period / requests: the cost of one request
    tolerance_us: int  # burst * interval: how far ahead of now the TAT may run

    @classmethod
    def of(cls, requests: int, period: float, burst: int | None = None) -> RateSpec:
        if requests <= 0 or period <= 0 or (burst is not None and burst <= 0):
            raise ValueError("requests, period and burst must be positive")
        burst = requests if burst is None else burst
        # Whole microseconds keep the arithmetic exact on both backends (Lua
        # numbers are doubles); the rounding costs < 0.5 µs per request.
        interval = max(1, round(period * US / requests))
        return cls(requests, period, burst, interval, interval * burst)


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """At most ``limit`` requests in flight. Each holds a lease that expires
    after ``lease`` seconds if it is never released."""

    limit: int
    lease: float

    @property
    def lease_us(self) -> int:
        return round(self.lease * US)


@dataclass(frozen=True, slots=True)
class RateStatus:
    remaining: int  # requests that would still be admitted right now
    reset: float  # seconds until the full burst is available again
    retry_after: float  # seconds until this limit admits a request; 0 if it does


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool
    rates: tuple[RateStatus, ...]  # in the order the rate checks were given
    slots_in_use: tuple[int, ...]  # slots held before this request, per slot check


@dataclass(frozen=True, slots=True)
class Reservation:
    granted: bool
    remaining: int  # budget left after this reservation (or untouched, if refused)


# A rate check: (key, spec). A slot check: (key, spec, lease id). A lease: (key, lease id).
RateCheck = tuple[str, RateSpec]
SlotCheck = tuple[str, SlotSpec, str]
Lease = tuple[str, str]


class QuotaBackend(abc.ABC):
    name: str

    @abc.abstractmethod
    async def check(self, rates: Sequence[RateCheck], slots: Sequence[SlotCheck] = ()) -> Outcome:
        """Evaluate every limit of one request atomically, all or nothing."""

    @abc.abstractmethod
    async def release(self, leases: Sequence[Lease]) -> None:
        """Release slots taken by ``check``. Releasing twice, or a lease that
        was never taken or has expired, does nothing."""

    @abc.abstractmethod
    def release_soon(self, leases: Sequence[Lease]) -> None:
        """``release`` from synchronous code (the ``on_log`` step): never
        blocks and never raises; a release that fails is left to expire."""

    @abc.abstractmethod
    async def reserve(self, key: str, amount: int, limit: int, period: float) -> Reservation:
        """Take ``amount`` from a budget of ``limit`` per ``period`` seconds
        (refilled continuously, like a rate limit). All or nothing."""

    @abc.abstractmethod
    async def reconcile(self, key: str, reserved: int, actual: int) -> int:
        """Settle a reservation: charge ``actual - reserved`` more (or refund
        it when negative) and return that difference."""

    async def aclose(self) -> None:
        return None

    # -- owner store ---------------------------------------------------------
    # Who created a resource the gateway governs access to (an A2A task, its
    # context), shared by every processor on the backend so replicas agree.
    # Not abstract: added after the quota primitives; every backend here
    # implements them.

    async def claim_owner(self, key: str, owner: str, ttl: float) -> str:
        """Record ``owner`` for ``key`` unless it already has one (kept for
        ``ttl`` seconds); return the owner ``key`` has now. Atomic: of two
        concurrent claims exactly one wins."""
        raise NotImplementedError

    async def owners_of(self, keys: Sequence[str]) -> list[str | None]:
        """The owner of each key (None: unknown or expired)."""
        raise NotImplementedError
