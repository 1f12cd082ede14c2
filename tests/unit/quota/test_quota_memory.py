"""GCRA arithmetic on a clock we control (the memory backend takes one).
The same formulas run in Redis; test_quota_backends.py checks both agree
on everything that does not need a controlled clock."""

from __future__ import annotations

import random

import pytest

from extproc.quota import MemoryBackend, RateSpec, SlotSpec
from extproc.quota.durations import parse_duration

SECOND = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * SECOND

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * SECOND)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend(clock) -> MemoryBackend:
    return MemoryBackend(clock)


async def admit(backend: MemoryBackend, spec: RateSpec, key: str = "k") -> bool:
    return (await backend.check([(key, spec)])).allowed


async def test_timeline_two_per_ten_seconds(backend, clock):
    spec = RateSpec.of(2, 10)
    first = await backend.check([("k", spec)])
    assert first.allowed and first.rates[0].remaining == 1 and first.rates[0].reset == 5
    second = await backend.check([("k", spec)])
    assert second.allowed and second.rates[0].remaining == 0 and second.rates[0].reset == 10
    refused = await backend.check([("k", spec)])
    assert not refused.allowed and refused.rates[0].retry_after == 5

    clock.advance(4.999)
    assert not await admit(backend, spec)
    clock.advance(0.001)  # one interval (10 s / 2) after the burst: one request back, not two
    assert await admit(backend, spec)
    assert not await admit(backend, spec)
    clock.advance(10)  # idle for a whole period: the full burst is back, no more
    assert [await admit(backend, spec) for _ in range(3)] == [True, True, False]


async def test_no_double_burst_at_a_window_boundary(backend, clock):
    # A fixed-window counter admits 10 at 59.999 s and 10 more at 60.001 s.
    spec = RateSpec.of(10, 60)
    clock.advance(59.999)
    assert sum([await admit(backend, spec) for _ in range(10)]) == 10
    clock.advance(0.002)
    assert sum([await admit(backend, spec) for _ in range(10)]) == 0
    clock.advance(6)  # 60 s / 10: exactly one comes back
    assert sum([await admit(backend, spec) for _ in range(10)]) == 1


@pytest.mark.parametrize("requests, period, burst", [(10, 60, None), (5, 1, 2), (100, 3600, 10)])
async def test_no_window_ever_admits_more_than_burst_plus_refill(backend, clock, requests, period, burst):
    """The GCRA guarantee, over random traffic: in any interval of length d,
    at most burst + floor(d / interval) requests are admitted."""
    spec = RateSpec.of(requests, period, burst)
    rng = random.Random(42)
    admitted = []
    for _ in range(3000):
        clock.advance(rng.expovariate(3 * requests / period))  # offered: 3x the limit
        if await admit(backend, spec):
            admitted.append(clock.now)
    assert len(admitted) > requests  # the test did exercise refills
    for d in (period / 10, period / 2, period, 3 * period):
        d_us = round(d * SECOND)
        bound = spec.burst + d_us // spec.interval_us
        j = 0
        for i, start in enumerate(admitted):
            while j < len(admitted) and admitted[j] < start + d_us:
                j += 1
            assert j - i <= bound, f"{j - i} admitted within {d}s (bound {bound})"


async def test_burst_smaller_than_requests_spaces_requests_out(backend, clock):
    spec = RateSpec.of(60, 60, burst=1)
    assert await admit(backend, spec)
    assert not await admit(backend, spec)
    clock.advance(1)
    assert await admit(backend, spec)


async def test_leases_expire_on_their_own(backend, clock):
    spec = SlotSpec(1, 30)
    assert (await backend.check([], [("c", spec, "a")])).allowed
    clock.advance(29.9)
    assert not (await backend.check([], [("c", spec, "b")])).allowed
    clock.advance(0.1)
    assert (await backend.check([], [("c", spec, "b")])).allowed


async def test_sweep_forgets_state_that_no_longer_limits(backend, clock):
    for i in range(50):
        await backend.check([(f"r{i}", RateSpec.of(5, 10))], [(f"c{i}", SlotSpec(5, 20), "l")])
        await backend.reserve(f"b{i}", 10, 100, 10)
    assert len(backend) == 150
    clock.advance(15)  # rate keys full again, budgets refilled a period ago; leases still live
    backend.sweep()
    assert len(backend) == 50
    clock.advance(10)
    backend.sweep()
    assert len(backend) == 0


async def test_budget_refills_continuously(backend, clock):
    assert (await backend.reserve("b", 100, 100, 60)).granted
    assert not (await backend.reserve("b", 1, 100, 60)).granted
    clock.advance(30)
    half = await backend.reserve("b", 50, 100, 60)
    assert half.granted and half.remaining == 0


async def test_reconcile_after_the_budget_is_forgotten_applies_nothing(backend, clock):
    assert (await backend.reserve("b", 10, 100, 60)).granted
    clock.advance(3600)
    backend.sweep()
    assert await backend.reconcile("b", reserved=10, actual=50) == 40
    assert (await backend.reserve("b", 100, 100, 60)).granted


@pytest.mark.parametrize(
    "text, seconds", [("500ms", 0.5), ("10s", 10), ("1m", 60), ("2h", 7200), ("1d", 86400), ("1.5s", 1.5), (3, 3.0)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "1 week", "-1s", "0s", "1mo", True])
def test_invalid_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_rate_spec_rejects_nonsense():
    with pytest.raises(ValueError):
        RateSpec.of(0, 60)
    with pytest.raises(ValueError):
        RateSpec.of(10, 60, burst=0)
