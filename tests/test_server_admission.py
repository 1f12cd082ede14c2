"""The admission gate's own signals, on a real event loop (the e2e test in
tests/e2e/test_lifecycle.py drives the concurrency limit through Envoy)."""

from __future__ import annotations

import asyncio
import time

from extproc.admission import AdmissionGate


def test_a_loop_that_stays_behind_sheds_new_work_but_a_single_pause_does_not():
    async def scenario():
        gate = AdmissionGate(limit=100, max_lag_s=0.05)
        watcher = asyncio.create_task(gate.watch_loop())
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # one pause (a policy compiled on reload): the ticker wakes 200 ms late, once
        await asyncio.sleep(0.001)  # the ticker runs first (it was due long ago); its next tick is 10 ms away
        after_one_pause = gate.try_enter()
        gate.leave()
        time.sleep(0.2)  # still behind at the next tick: overloaded
        await asyncio.sleep(0.001)
        while_behind = gate.try_enter()
        await asyncio.sleep(0.05)  # on time again
        caught_up = gate.try_enter()
        watcher.cancel()
        return after_one_pause, while_behind, caught_up, gate

    after_one_pause, while_behind, caught_up, gate = asyncio.run(scenario())
    assert after_one_pause and not while_behind and caught_up
    assert gate.rejected == 1


def test_a_check_with_time_left_is_admitted_even_while_the_loop_lags():
    gate = AdmissionGate(limit=10, min_remaining_s=0.005)
    gate.lagging = True  # as the ticker sets it
    assert not gate.try_enter()  # an ext_proc stream: no deadline, the lag decides
    assert gate.try_enter(remaining_s=9.5)  # a check whose deadline (10 s configured) is far
    assert not gate.try_enter(remaining_s=0.002)  # and one whose deadline is spent


def test_the_limit_and_a_spent_deadline_refuse_but_admitted_work_is_counted_back():
    gate = AdmissionGate(limit=2, min_remaining_s=0.005)
    assert gate.try_enter() and gate.try_enter(remaining_s=0.2)
    assert not gate.try_enter()  # the limit
    gate.leave()
    assert not gate.try_enter(remaining_s=0.001)  # arrived with its budget spent
    assert gate.try_enter(remaining_s=None)  # no deadline (an ext_proc stream)
    assert gate.in_flight == 2 and gate.rejected == 2
    assert dict(gate.refusal.headers)["retry-after"] == "1" and gate.refusal.status == 503
