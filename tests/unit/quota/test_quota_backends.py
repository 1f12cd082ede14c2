"""The backend contract, run against every backend: in-process memory, a
real standalone Redis and a real 3-node Redis Cluster.

Periods are long (an hour) wherever a test counts exactly, so the refill
during the test (a few ms) cannot change a result; the one test about time
passing uses a lease short enough to wait out.
"""

from __future__ import annotations

import asyncio

import pytest

from extproc.quota import MemoryBackend, RateSpec, SlotSpec
from extproc.quota.redis_backend import RedisBackend
from tests.redis_server import patient

HOUR = 3600.0


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("cluster", marks=pytest.mark.integration),
    ]
)
async def backend(request):
    if request.param == "memory":
        backend = MemoryBackend()
    elif request.param == "redis":
        backend = RedisBackend(patient(request.getfixturevalue("redis_server").url))
    else:
        backend = RedisBackend(patient(request.getfixturevalue("redis_cluster").url))
    yield backend
    await backend.aclose()


def key(name: str) -> str:
    # One hash tag for every key of a test, as the capability builds them,
    # so multi-key checks stay in one cluster slot.
    return f"quota:{{test}}:{name}"


async def test_burst_is_admitted_then_refused_with_retry_after(backend):
    spec = RateSpec.of(5, HOUR)
    remaining = []
    for _ in range(5):
        outcome = await backend.check([(key("a"), spec)])
        assert outcome.allowed
        remaining.append(outcome.rates[0].remaining)
    assert remaining == [4, 3, 2, 1, 0]
    refused = await backend.check([(key("a"), spec)])
    assert not refused.allowed
    status = refused.rates[0]
    assert status.remaining == 0
    # One request's worth (an hour / 5 = 720 s) comes back at a time.
    assert 715 < status.retry_after <= 720.01
    assert HOUR - 5 < status.reset <= HOUR + 0.01


async def test_keys_are_independent(backend):
    spec = RateSpec.of(1, HOUR)
    assert (await backend.check([(key("a"), spec)])).allowed
    assert not (await backend.check([(key("a"), spec)])).allowed
    assert (await backend.check([(key("b"), spec)])).allowed


async def test_a_refused_request_consumes_nothing_from_any_limit(backend):
    tight, loose = RateSpec.of(2, HOUR), RateSpec.of(10, HOUR)
    both = [(key("tight"), tight), (key("loose"), loose)]
    first = await backend.check(both)
    second = await backend.check(both)
    assert first.allowed and second.allowed
    assert [s.remaining for s in second.rates] == [0, 8]
    refused = await backend.check(both)
    assert not refused.allowed
    # The loose limit would have admitted: it reports its untouched state.
    assert [s.remaining for s in refused.rates] == [0, 8]
    assert refused.rates[0].retry_after > 0 and refused.rates[1].retry_after == 0
    # ...and was really not charged: alone, it still has 8 before this one.
    assert (await backend.check([(key("loose"), loose)])).rates[0].remaining == 7


async def test_concurrency_slots_are_taken_and_released_idempotently(backend):
    spec = SlotSpec(2, HOUR)
    assert (await backend.check([], [(key("c"), spec, "l1")])).allowed
    second = await backend.check([], [(key("c"), spec, "l2")])
    assert second.allowed and second.slots_in_use == (1,)
    third = await backend.check([], [(key("c"), spec, "l3")])
    assert not third.allowed and third.slots_in_use == (2,)

    await backend.release([(key("c"), "l1")])
    await backend.release([(key("c"), "l1")])  # twice: still only one slot back
    await backend.release([(key("c"), "never-taken")])
    assert (await backend.check([], [(key("c"), spec, "l4")])).allowed
    assert not (await backend.check([], [(key("c"), spec, "l5")])).allowed


async def test_full_concurrency_limit_does_not_consume_rate(backend):
    rate, slot = RateSpec.of(10, HOUR), SlotSpec(1, HOUR)
    assert (await backend.check([(key("r"), rate)], [(key("c"), slot, "l1")])).allowed
    refused = await backend.check([(key("r"), rate)], [(key("c"), slot, "l2")])
    assert not refused.allowed and refused.rates[0].remaining == 9
    assert (await backend.check([(key("r"), rate)])).rates[0].remaining == 8


async def test_exhausted_rate_takes_no_slot(backend):
    rate, slot = RateSpec.of(1, HOUR), SlotSpec(1, HOUR)
    assert (await backend.check([(key("r"), rate)])).allowed
    refused = await backend.check([(key("r"), rate)], [(key("c"), slot, "l1")])
    assert not refused.allowed and refused.slots_in_use == (0,)
    assert (await backend.check([], [(key("c"), slot, "l2")])).allowed  # the slot is still free


async def test_leases_expire_so_a_lost_release_cannot_leak_a_slot(backend):
    spec = SlotSpec(1, 0.3)
    assert (await backend.check([], [(key("c"), spec, "crashed")])).allowed
    assert not (await backend.check([], [(key("c"), spec, "next")])).allowed
    await asyncio.sleep(0.4)
    assert (await backend.check([], [(key("c"), spec, "next")])).allowed


async def test_concurrent_checks_admit_exactly_the_limit(backend):
    spec = RateSpec.of(10, HOUR)
    outcomes = await asyncio.gather(*(backend.check([(key("a"), spec)]) for _ in range(60)))
    assert sum(o.allowed for o in outcomes) == 10


async def test_reserve_and_reconcile(backend):
    budget = key("tokens")
    first = await backend.reserve(budget, 60, 100, HOUR)
    assert first.granted and first.remaining == 40
    refused = await backend.reserve(budget, 50, 100, HOUR)
    assert not refused.granted and refused.remaining == 40  # all or nothing

    assert await backend.reconcile(budget, reserved=60, actual=20) == -40  # refund
    again = await backend.reserve(budget, 50, 100, HOUR)
    assert again.granted and again.remaining == 30

    assert await backend.reconcile(budget, reserved=50, actual=80) == 30  # overspend is charged
    assert not (await backend.reserve(budget, 1, 100, HOUR)).granted
    assert await backend.reconcile(budget, reserved=5, actual=5) == 0


async def test_refunds_never_raise_a_budget_above_its_limit(backend):
    budget = key("tokens")
    assert (await backend.reserve(budget, 10, 100, HOUR)).granted
    assert await backend.reconcile(budget, reserved=10, actual=0) == -10
    assert await backend.reconcile(budget, reserved=10, actual=0) == -10  # a bogus second refund
    assert not (await backend.reserve(budget, 101, 100, HOUR)).granted
    assert (await backend.reserve(budget, 100, 100, HOUR)).remaining == 0


async def test_concurrent_reservations_never_overspend(backend):
    results = await asyncio.gather(*(backend.reserve(key("tokens"), 7, 100, HOUR) for _ in range(40)))
    granted = [r for r in results if r.granted]
    assert len(granted) == 14  # 14 * 7 = 98; a 15th would need 105
    assert min(r.remaining for r in granted) == 2


async def test_concurrent_settlements_charge_exactly_what_was_used(backend):
    budget = key("tokens")
    results = await asyncio.gather(*(backend.reserve(budget, 60, 500, HOUR) for _ in range(40)))
    granted = sum(r.granted for r in results)
    assert granted == 8  # 8 * 60 = 480 reserved; a 9th would need 540
    differences = await asyncio.gather(*(backend.reconcile(budget, 60, 7) for _ in range(granted)))
    assert differences == [-53] * granted
    # 8 * 7 = 56 spent, 444 left (the refill during the test is well under a token).
    assert not (await backend.reserve(budget, 445, 500, HOUR)).granted
    last = await backend.reserve(budget, 444, 500, HOUR)
    assert last.granted and last.remaining == 0
