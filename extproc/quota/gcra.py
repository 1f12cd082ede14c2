"""The quota arithmetic, as pure functions on integer microseconds.

``MemoryBackend`` calls these; the Lua scripts in ``lua.py`` implement the
same formulas inside Redis. The shared backend test suite runs against both,
so a change here that the Lua does not follow fails the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from extproc.quota.backend import US, RateSpec, RateStatus

# Budget amounts are whole tokens but the refill is continuous; this absorbs
# the float rounding of the refill so that an exactly full budget still fits.
BUDGET_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class RateEval:
    admits: bool
    new_tat: int  # the key's TAT if the request is admitted
    if_consumed: RateStatus  # what to report when the request goes through
    if_untouched: RateStatus  # what to report when some limit rejects it


def evaluate_rate(tat: int | None, now: int, spec: RateSpec) -> RateEval:
    interval, tolerance = spec.interval_us, spec.tolerance_us
    # A TAT in the past means the bucket is full: history before now is moot.
    base = now if tat is None or tat < now else tat
    new_tat = base + interval
    allow_at = new_tat - tolerance
    return RateEval(
        admits=allow_at <= now,
        new_tat=new_tat,
        if_consumed=RateStatus((now + tolerance - new_tat) // interval, (new_tat - now) / US, 0.0),
        if_untouched=RateStatus(
            max(0, (now + tolerance - base) // interval), (base - now) / US, max(0, allow_at - now) / US
        ),
    )


def budget_used(used: float, since: int, rate: float, now: int) -> float:
    """Tokens still counted against a budget: ``used`` at time ``since``,
    refilled at ``rate`` tokens per microsecond."""
    return max(0.0, used - (now - since) * rate)


def budget_remaining(used: float, limit: int) -> int:
    return max(0, int(limit - used + BUDGET_EPSILON))
