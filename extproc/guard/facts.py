"""The audit facts the LLM guards publish (keys documented in
``extproc.audit.record``): entity counts, never values, and what was done.

Both guards may act on one request (prompt_guard flags it, pii redacts);
``guard.action`` keeps the strongest. Facts are recorded in monitor mode
too: there the action is what the guard decided, not what traffic saw (the
record's capability outcome says the mode).
"""

from __future__ import annotations

from extproc import audit
from extproc.context import RequestContext

_STRENGTH = {"allow": 0, "mask": 1, "pseudonymize": 2, "redact": 3, "block": 4}


def note_action(ctx: RequestContext, action: str) -> None:
    facts = ctx.state.get(audit.AUDIT_STATE_KEY)
    current = facts.get("guard.action") if isinstance(facts, dict) else None
    if current is None or _STRENGTH.get(action, 0) > _STRENGTH.get(current, 0):
        audit.note(ctx, "guard.action", action)


def note_entities(ctx: RequestContext, *counts: dict[str, int]) -> None:
    """``pii.<entity>`` facts: the sum of the given counts per entity type."""
    total: dict[str, int] = {}
    for part in counts:
        for entity, n in part.items():
            # Fact names are at most 32 characters; custom entities up to 40.
            key = f"pii.{entity.lower()[:32]}"
            total[key] = total.get(key, 0) + n
    for key, n in total.items():
        audit.note(ctx, key, n)
