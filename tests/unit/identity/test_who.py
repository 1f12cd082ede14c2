"""One ``who`` for rbac, MCP and A2A rules (extproc.identity.who)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from extproc.capabilities import a2a_access, rbac
from extproc.context import ANONYMOUS, HttpRequest, Identity, RequestContext
from extproc.identity.who import Who, WhoMatcher
from extproc.mcp import policy as mcp_policy
from extproc.policy.loader import load_policy_dir
from extproc.policy.model import PolicySet
from extproc.runtime import Runtime


def agent(**fields: object) -> Identity:
    defaults: dict[str, object] = {
        "subject": "alice",
        "agent_id": "planner-7",
        "roles": frozenset({"ops"}),
        "scopes": frozenset({"docs:read", "docs:write"}),
        "methods": frozenset({"jwt"}),
        "claims": {"tenant": "acme", "groups": ["a", "b"]},
    }
    defaults.update(fields)
    return Identity(**defaults)  # type: ignore[arg-type]


def matches(who: dict[str, object], identity: Identity, params: dict[str, str] | None = None) -> bool:
    return WhoMatcher(Who.model_validate(who)).matches(identity, params or {})


def test_the_same_who_type_everywhere() -> None:
    assert rbac.Rule.model_fields["who"].annotation is Who
    assert mcp_policy.AccessRule.model_fields["who"].annotation is Who
    assert a2a_access.A2aRule.model_fields["who"].annotation is Who


@pytest.mark.parametrize(
    "who, expected",
    [
        ({}, True),
        ({"agents": ["planner-*"]}, True),
        ({"agents": ["writer-*"]}, False),
        ({"scopes": ["docs:read"]}, True),
        ({"scopes": ["docs:read", "docs:admin"]}, False),  # all of them
        ({"roles": ["ops", "admin"]}, True),  # any of them
        ({"subjects": ["bob"]}, False),
        ({"principals": ["spiffe://*"]}, False),  # no peer identity
        ({"authenticated_by": ["jwt"]}, True),
        ({"authenticated_by": ["jwt", "mtls"]}, False),
        ({"conditions": [{"field": "claims.tenant", "equals": "acme"}]}, True),
        ({"conditions": [{"field": "claims.groups", "contains": "b"}]}, True),
        ({"conditions": [{"field": "claims.region", "present": False}]}, True),
        ({"conditions": [{"field": "claims.region", "equals": "eu"}]}, False),  # missing: never matches
        ({"agents": ["planner-*"], "scopes": ["docs:admin"]}, False),  # across fields: all
    ],
)
def test_matching(who: dict[str, object], expected: bool) -> None:
    assert matches(who, agent()) is expected


def test_an_empty_who_is_everyone_and_anything_else_excludes_the_anonymous() -> None:
    assert matches({}, ANONYMOUS)
    assert not matches({"scopes": ["docs:read"]}, ANONYMOUS)
    assert not matches({"agents": ["*"]}, ANONYMOUS)


def test_equals_param_compares_with_the_captured_path_segment_only() -> None:
    who = {"conditions": [{"field": "claims.tenant", "equals_param": "tenant"}]}
    assert matches(who, agent(), {"tenant": "acme"})
    assert not matches(who, agent(), {"tenant": "other"})
    assert not matches(who, agent())  # MCP/A2A rules capture nothing


def test_a_claim_true_is_not_the_number_one() -> None:
    who = {"conditions": [{"field": "claims.flag", "equals": 1}]}
    assert not matches(who, agent(claims={"flag": True}))
    assert matches(who, agent(claims={"flag": 1}))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        Who.model_validate({"agent": ["x"]})
    with pytest.raises(ValidationError):
        Who.model_validate({"conditions": [{"field": "nickname", "equals": "x"}]})


async def test_rbac_rules_accept_agents_and_scopes_from_policy_yaml(tmp_path) -> None:
    (tmp_path / "p.yaml").write_text(
        "routes:\n  - name: api\n    capabilities:\n      - type: rbac\n        config:\n          rules:\n"
        "            - name: planners\n              who: {agents: ['planner-*'], scopes: [docs:write]}\n"
        "              paths: ['/docs/**']\n"
    )
    loaded = load_policy_dir(tmp_path, Runtime())
    (capability,) = loaded.routes["api"].capabilities

    async def status(identity: Identity) -> int | None:
        ctx = RequestContext(PolicySet("r", {}), HttpRequest("GET", "/docs/a", "h", {}))
        ctx.identity = identity
        deny = await capability.on_request_headers(ctx)
        return None if deny is None else deny.status

    assert await status(agent()) is None
    assert await status(agent(agent_id="writer-1")) == 403
    assert await status(agent(scopes=frozenset({"docs:read"}))) == 403
    assert await status(ANONYMOUS) == 401
