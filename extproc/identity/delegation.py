"""Delegation chains (RFC 8693 ``act``): who acts for whom, with what scopes.

A token for a request that agent B makes for agent A, which acts for user
alice, reads::

    {"sub": "alice", "scope": "docs:read",
     "act": {"sub": "agent-b", "scope": "docs:read",
             "act": {"sub": "agent-a", "scope": "docs:read docs:write"}}}

The outermost ``act`` is the current actor, each nested ``act`` the one
before it (``Identity.delegation`` lists them outermost first). In time
order the hops are agent-a (first delegate) → agent-b (current actor), and
the token's own ``scope`` is what this request may use.

**Narrowing** (``require_narrowing: true``): along the hops in time order the
scopes may only shrink — every hop's ``scope`` is a subset of the previous
hop's, and the token's ``scope`` is a subset of the current actor's::

    scope(first delegate) ⊇ … ⊇ scope(current actor) ⊇ scope(token)

A hop that states no ``scope`` cannot be shown to narrow, so it fails (it is
not read as "no scopes", which would pass vacuously, nor as "all scopes").
An empty token ``scope`` is the narrowest there is and always passes. Scopes
are a space-separated string or a list of strings, as in the top-level claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from extproc.config import CapabilityConfig
from extproc.context import Identity
from extproc.globs import compile_globs

MAX_CHAIN = 16


class DelegationConfig(CapabilityConfig):
    max_depth: int = Field(
        4, ge=0, le=MAX_CHAIN, description="Most actors in the act chain; 0 refuses any delegated call."
    )
    trusted_actors: list[str] = Field(
        default_factory=list, description="Every actor in the chain must match one of these globs; empty: any actor."
    )
    require_narrowing: bool = Field(False, description="Scopes may only shrink along the chain (see docs/agents.md).")
    current_actor_is_agent: bool = Field(
        False, description="The current (outermost) actor must be the token's agent_id when both are present."
    )


@dataclass(slots=True, frozen=True)
class Hop:
    actor: str | None
    scopes: frozenset[str] | None  # None: the hop states no scope


def _scopes(value: object) -> frozenset[str] | None:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None


def hops(claims: dict[str, Any]) -> list[Hop]:
    """The ``act`` chain, outermost (current actor) first. Raises ValueError
    on a malformed or over-deep chain."""
    out: list[Hop] = []
    act = claims.get("act")
    while act is not None:
        if not isinstance(act, dict):
            raise ValueError("act claim is not an object")
        if len(out) >= MAX_CHAIN:
            raise ValueError(f"act chain deeper than {MAX_CHAIN}")
        sub = act.get("sub")
        out.append(Hop(sub if isinstance(sub, str) else None, _scopes(act["scope"]) if "scope" in act else None))
        act = act.get("act")
    return out


class DelegationPolicy:
    def __init__(self, config: DelegationConfig):
        self.config = config
        self._trusted = compile_globs(config.trusted_actors)

    def violation(self, identity: Identity) -> str | None:
        """Why this caller's delegation chain is refused, or None."""
        cfg = self.config
        try:
            chain = hops(identity.claims)
        except ValueError as exc:
            return f"delegation: {exc}"
        if not chain:
            return None
        if len(chain) > cfg.max_depth:
            return f"delegation: {len(chain)} actors, at most {cfg.max_depth}"
        for hop in chain:
            if hop.actor is None:
                return "delegation: an actor without a sub"
            if self._trusted is not None and not self._trusted.fullmatch(hop.actor):
                return f"delegation: actor {hop.actor} is not trusted"
        if cfg.current_actor_is_agent and identity.agent_id and chain[0].actor != identity.agent_id:
            return f"delegation: current actor {chain[0].actor} is not agent {identity.agent_id}"
        if cfg.require_narrowing:
            return narrowing_violation(chain, identity.scopes)
        return None


def narrowing_violation(chain: list[Hop], token_scopes: frozenset[str]) -> str | None:
    """``chain`` outermost first, as ``hops`` returns it."""
    previous: tuple[str | None, frozenset[str]] | None = None  # (actor, scopes)
    for hop in reversed(chain):  # time order: the first delegate first
        scopes = hop.scopes
        if scopes is None:
            return f"delegation: actor {hop.actor} states no scope, so narrowing cannot be shown"
        if previous is not None and not scopes <= previous[1]:
            wider = ", ".join(sorted(scopes - previous[1]))
            return f"delegation widens: actor {hop.actor} holds {wider} that {previous[0]} did not"
        previous = (hop.actor, scopes)
    if previous is not None and not token_scopes <= previous[1]:
        wider = ", ".join(sorted(token_scopes - previous[1]))
        return f"delegation widens: the token carries {wider} beyond actor {previous[0]}'s scope"
    return None
