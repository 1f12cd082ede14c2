"""Delegation chains (RFC 8693 act): depth, trusted actors, and scopes that
may only narrow along the hops."""

from __future__ import annotations

import pytest

from extproc.identity.delegation import DelegationConfig, DelegationPolicy, Hop, hops, narrowing_violation
from tests.unit.mcp.harness import user


def act(*chain: tuple[str, str | None]) -> dict:
    """act(("agent-b", "s1"), ("agent-a", "s1 s2")): outermost (current) actor first."""
    out = None
    for sub, scope in reversed(chain):
        node = {"sub": sub}
        if scope is not None:
            node["scope"] = scope
        if out is not None:
            node["act"] = out
        out = node
    return out


def caller(token_scope: str, *chain, agent_id=None):
    claims = {"sub": "alice", "scope": token_scope}
    if chain:
        claims["act"] = act(*chain)
    return user("alice", scopes=token_scope.split(), agent_id=agent_id, claims=claims, delegation=[c[0] for c in chain])


def check(identity, **config):
    return DelegationPolicy(DelegationConfig(**config)).violation(identity)


def test_hops_are_outermost_first_with_their_scopes():
    chain = hops({"act": act(("agent-b", "read"), ("agent-a", ["read", "write"]))})
    assert chain == [Hop("agent-b", frozenset({"read"})), Hop("agent-a", frozenset({"read", "write"}))]
    assert hops({"act": {"sub": "x"}}) == [Hop("x", None)]
    assert hops({}) == []
    with pytest.raises(ValueError):
        hops({"act": "agent-a"})


@pytest.mark.parametrize(
    "token, chain, violation",
    [
        ("read", [("agent-b", "read"), ("agent-a", "read write")], None),  # narrows
        ("read", [("agent-b", "read write"), ("agent-a", "read write")], None),  # equal is not wider
        ("", [("agent-a", "read")], None),  # an empty token scope is narrowest
        ("read write", [("agent-b", "read"), ("agent-a", "read write")], "the token carries write"),
        ("read", [("agent-b", "read admin"), ("agent-a", "read")], "agent-b holds admin that agent-a did not"),
        ("read", [("agent-b", "read"), ("agent-a", None)], "agent-a states no scope"),
        ("read", [("agent-b", None), ("agent-a", "read")], "agent-b states no scope"),
    ],
)
def test_narrowing(token, chain, violation):
    found = narrowing_violation(hops({"act": act(*chain)}), frozenset(token.split()))
    if violation is None:
        assert found is None
    else:
        assert violation in found


def test_a_direct_call_has_nothing_to_narrow():
    assert check(caller("read write admin"), require_narrowing=True) is None


def test_policy_checks():
    chain = [("agent-c", "read"), ("agent-b", "read"), ("agent-a", "read")]
    assert check(caller("read", *chain), max_depth=3, require_narrowing=True) is None
    assert "3 actors, at most 2" in check(caller("read", *chain), max_depth=2)
    assert "at most 0" in check(caller("read", ("agent-a", "read")), max_depth=0)
    assert "agent-c is not trusted" in check(caller("read", *chain), trusted_actors=["agent-a", "agent-b"])
    assert check(caller("read", *chain), trusted_actors=["agent-*"]) is None
    assert "widens" in check(caller("read write", *chain), require_narrowing=True)
    assert check(caller("read write", *chain)) is None  # narrowing is opt-in


def test_current_actor_must_be_the_agent_when_asked():
    identity = caller("read", ("agent-b", "read"), agent_id="agent-x")
    assert check(identity) is None
    assert "current actor agent-b is not agent agent-x" in check(identity, current_actor_is_agent=True)
    assert check(caller("read", ("agent-x", "read"), agent_id="agent-x"), current_actor_is_agent=True) is None


def test_malformed_chains_are_refused():
    assert "not an object" in check(user(claims={"act": ["agent-a"]}))
    assert "without a sub" in check(user(claims={"act": {"scope": "read"}}))
    deep: dict = {"sub": "a0"}
    for n in range(1, 20):
        deep = {"sub": f"a{n}", "act": deep}
    assert "deeper than 16" in check(user(claims={"act": deep}), max_depth=16)
