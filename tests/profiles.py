"""Hypothesis budgets: the full suite (``ci``) and the fast one (``unit``).

Both profiles run every property with the same strategies; ``unit`` draws
fewer examples so ``make unit`` stays a quick loop, ``ci`` keeps the counts
each test asks for. A test states its full count through ``examples(n)``
rather than a bare ``max_examples=n``, which would override the profile.

The profile comes from ``--hypothesis-profile``; without it tests/conftest.py
picks ``unit`` for a run that deselects the integration tests and ``ci``
otherwise. ``GUARD_HYPOTHESIS_EXAMPLES=5000`` still asks the guard
properties for a longer hunt.
"""

from __future__ import annotations

from hypothesis import settings

CI, UNIT = "ci", "unit"
# The share of each test's full count the fast profile draws, and its floor:
# enough examples that a property still meets its interesting cases.
UNIT_SHARE = 0.1
UNIT_FLOOR = 20

settings.register_profile(CI, deadline=None)
settings.register_profile(UNIT, deadline=None, max_examples=UNIT_FLOOR)


def examples(full: int) -> int:
    """``full`` under the ``ci`` profile; a tenth of it (at least
    ``UNIT_FLOOR``, at most ``full``) under ``unit``."""
    if settings.get_current_profile_name() != UNIT:
        return full
    return min(full, max(UNIT_FLOOR, int(full * UNIT_SHARE)))
