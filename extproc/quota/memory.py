"""In-process quota state: the default backend, and the fail-open fallback
when Redis is unreachable.

Limits hold per processor process only: with ``--workers N`` or several
replicas each enforces its own copy, so the effective limit is N times the
configured one. Use Redis to share limits.

Every operation is synchronous Python between two awaits, so it is atomic
on the event loop without locks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from extproc.quota.backend import (
    US,
    Lease,
    Outcome,
    QuotaBackend,
    RateCheck,
    Reservation,
    SlotCheck,
)
from extproc.quota.gcra import BUDGET_EPSILON, budget_remaining, budget_used, evaluate_rate

# Expired state is swept after this many writes, or after as many writes as
# there are entries when there are more: amortized O(1) per request, and
# memory bounded by the keys active within their periods.
_SWEEP_MIN = 1024


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class _Budget:
    __slots__ = ("period_us", "rate", "since", "used")

    def __init__(self, used: float, since: int, rate: float, period_us: int):
        self.used, self.since, self.rate, self.period_us = used, since, rate, period_us

    def used_at(self, now: int) -> float:
        return budget_used(self.used, self.since, self.rate, now)

    def refilled_at(self) -> int:
        return self.since + int(self.used / self.rate)


class MemoryBackend(QuotaBackend):
    name = "memory"

    def __init__(self, clock: Callable[[], int] = _monotonic_us):
        self._now = clock  # integer microseconds; tests inject a fake clock
        self._tats: dict[str, int] = {}  # rate key -> TAT
        self._slots: dict[str, dict[str, int]] = {}  # slot key -> lease id -> expiry
        self._budgets: dict[str, _Budget] = {}
        self._writes = 0

    async def check(self, rates: Sequence[RateCheck], slots: Sequence[SlotCheck] = ()) -> Outcome:
        now = self._now()
        evals = [evaluate_rate(self._tats.get(key), now, spec) for key, spec in rates]
        in_use = [self._live_leases(key, now) for key, _spec, _lease in slots]
        allowed = all(e.admits for e in evals) and all(
            n < spec.limit for n, (_key, spec, _lease) in zip(in_use, slots, strict=True)
        )
        if allowed:
            for (key, _spec), e in zip(rates, evals, strict=True):
                self._tats[key] = e.new_tat
            for key, spec, lease in slots:
                self._slots.setdefault(key, {})[lease] = now + spec.lease_us
            self._wrote()
        return Outcome(allowed, tuple(e.if_consumed if allowed else e.if_untouched for e in evals), tuple(in_use))

    def _live_leases(self, key: str, now: int) -> int:
        leases = self._slots.get(key)
        if not leases:
            return 0
        expired = [lease for lease, expiry in leases.items() if expiry <= now]
        for lease in expired:
            del leases[lease]
        return len(leases)

    async def release(self, leases: Sequence[Lease]) -> None:
        self.release_soon(leases)

    def release_soon(self, leases: Sequence[Lease]) -> None:
        for key, lease in leases:
            held = self._slots.get(key)
            if held is not None:
                held.pop(lease, None)
                if not held:
                    del self._slots[key]

    async def reserve(self, key: str, amount: int, limit: int, period: float) -> Reservation:
        now = self._now()
        period_us = round(period * US)
        state = self._budgets.get(key)
        used = state.used_at(now) if state else 0.0
        if used + amount > limit + BUDGET_EPSILON:
            return Reservation(False, budget_remaining(used, limit))
        used += amount
        self._budgets[key] = _Budget(used, now, limit / period_us, period_us)
        self._wrote()
        return Reservation(True, budget_remaining(used, limit))

    async def reconcile(self, key: str, reserved: int, actual: int) -> int:
        difference = actual - reserved
        state = self._budgets.get(key)
        if state is not None and difference:
            # A refund can bring the budget back to full, never beyond.
            now = self._now()
            state.used, state.since = max(0.0, state.used_at(now) + difference), now
        return difference

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes >= max(_SWEEP_MIN, len(self._tats) + len(self._slots) + len(self._budgets)):
            self._writes = 0
            self.sweep()

    def sweep(self) -> None:
        """Forget state that no longer limits anything."""
        now = self._now()
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
        for key in [k for k in self._slots if self._live_leases(k, now) == 0]:
            del self._slots[key]
        # A budget is kept one period past the moment it refilled, like its
        # Redis TTL, so that a late reconcile still finds it.
        self._budgets = {k: b for k, b in self._budgets.items() if b.refilled_at() + b.period_us > now}

    def __len__(self) -> int:
        return len(self._tats) + len(self._slots) + len(self._budgets)

    # -- owner store (see QuotaBackend.claim_owner) ---------------------------

    def _owner_table(self) -> dict[str, tuple[str, int]]:
        # Created on first use: key -> (owner, expiry); swept when it doubles.
        table: dict[str, tuple[str, int]] = self.__dict__.setdefault("_owners", {})
        if len(table) >= self.__dict__.setdefault("_owners_sweep_at", _SWEEP_MIN):
            now = self._now()
            for key in [k for k, (_o, expiry) in table.items() if expiry <= now]:
                del table[key]
            self._owners_sweep_at = max(_SWEEP_MIN, 2 * len(table))
        return table

    async def claim_owner(self, key: str, owner: str, ttl: float) -> str:
        table, now = self._owner_table(), self._now()
        held = table.get(key)
        if held is not None and held[1] > now:
            return held[0]
        table[key] = (owner, now + round(ttl * US))
        return owner

    async def owners_of(self, keys: Sequence[str]) -> list[str | None]:
        table, now = self._owner_table(), self._now()
        out: list[str | None] = []
        for key in keys:
            held = table.get(key)
            out.append(held[0] if held is not None and held[1] > now else None)
        return out
