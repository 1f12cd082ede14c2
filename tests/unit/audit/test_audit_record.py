"""The audit record: per-capability outcomes and the allow-list of facts."""

from __future__ import annotations

import pytest

from extproc import audit
from extproc.audit.record import REDACTED, build, capability_outcomes, facts, identity_fields, scrub
from extproc.capabilities.base import Capability
from extproc.context import Deny, Identity, Mode, Phase
from extproc.pipeline import resolve_route, run_phase, start
from tests import builders


class Cap(Capability):
    priority = 10

    def __init__(self, name, priority=10, deny=False, raises=False, mode=Mode.ENFORCE):
        super().__init__(None, mode)
        self.name, self.priority, self.deny, self.raises = name, priority, deny, raises

    async def on_request_headers(self, ctx):
        if self.raises:
            raise RuntimeError("boom")
        return Deny(403, "forbidden", f"{self.name} says no") if self.deny else None


class BodyCap(Capability):
    name = "body_check"
    priority = 5

    def __init__(self, deny=False):
        super().__init__(None, Mode.ENFORCE)
        self.deny = deny

    async def on_request_body(self, ctx):
        return Deny(413, "too_big", "body rule") if self.deny else None


def context(*capabilities, headers=None, path="/x"):
    return builders.context(builders.route(*capabilities), "GET", path, headers, via="ext_authz", resolve=False)


async def test_allowed_request_lists_every_capability_that_ran():
    ctx = context(Cap("a", 30), Cap("b", 20), Cap("c", 10))
    assert await start(ctx, "r") is None
    record = build(ctx)
    assert record.decision == "allow" and record.status is None and record.route == "r"
    assert [(o.capability, o.decision) for o in record.capabilities] == [("a", "allow"), ("b", "allow"), ("c", "allow")]
    assert record.decision_ns > 0 and record.revision == "rev1" and record.filter == "ext_authz"


async def test_enforced_denial_stops_the_list_and_carries_reason_and_code():
    ctx = context(Cap("a", 30), Cap("b", 20, deny=True), Cap("c", 10))
    deny = await start(ctx, "r")
    assert deny is not None and ctx.deny is deny
    record = build(ctx)
    assert (record.decision, record.status, record.code, record.reason) == ("deny", 403, "forbidden", "b says no")
    outcomes = [o.as_dict() for o in record.capabilities]
    assert outcomes == [
        {"capability": "a", "mode": "enforce", "decision": "allow"},
        {"capability": "b", "mode": "enforce", "decision": "deny", "reason": "b says no", "code": "forbidden"},
    ]  # c never ran


async def test_monitor_denial_is_recorded_and_the_request_goes_on():
    ctx = context(Cap("watch", 30, deny=True, mode=Mode.MONITOR), Cap("next", 10))
    assert await start(ctx, "r") is None
    record = build(ctx)
    assert record.decision == "allow"
    assert [(o.capability, o.mode, o.decision) for o in record.capabilities] == [
        ("watch", "monitor", "deny"),
        ("next", "enforce", "allow"),
    ]


async def test_exception_is_an_error_decision():
    ctx = context(Cap("bad", raises=True))
    await start(ctx, "r")
    record = build(ctx)
    assert record.decision == "error" and record.status == 500
    assert record.capabilities[0].decision == "error" and record.capabilities[0].code == "internal_error"


async def test_body_phase_counts_only_when_it_ran():
    ctx = context(Cap("a", 30), BodyCap(deny=True))
    await start(ctx, "r")
    assert [o.capability for o in capability_outcomes(ctx)] == ["a"]  # ext_authz: no body phase
    ctx.request_body = b"{}"
    await run_phase(ctx, Phase.REQUEST_BODY)
    assert [(o.capability, o.decision) for o in capability_outcomes(ctx)] == [("a", "allow"), ("body_check", "deny")]
    assert build(ctx).status == 413


def test_unknown_route_is_the_routers_denial():
    ctx = context()
    deny = resolve_route(ctx, "nope")
    ctx.deny = deny
    record = build(ctx)
    assert record.route is None and record.decision == "deny"
    assert [o.as_dict() for o in record.capabilities] == [
        {"capability": "router", "mode": "enforce", "decision": "deny", "reason": "unknown route 'nope'"}
    ]


def test_identity_fields_are_named_ones_only():
    ctx = context()
    ctx.identity = Identity(
        subject="alice",
        issuer="https://idp",
        roles=frozenset({"b", "a"}),
        methods=frozenset({"jwt"}),
        claims={"email": "alice@example.com", "name": "Alice"},
        delegation=("agent-1",),
    )
    fields = identity_fields(ctx)
    assert fields == {
        "subject": "alice",
        "issuer": "https://idp",
        "roles": ["a", "b"],
        "methods": ["jwt"],
        "delegation": ["agent-1"],
    }


def test_facts_are_an_allow_list_with_types():
    ctx = context()
    audit.note(ctx, "llm.model", "gpt-4o-mini")
    audit.note(ctx, "llm.input_tokens", 12)
    audit.note(ctx, "llm.output_tokens", "7")  # wrong type: dropped
    audit.note(ctx, "tool.name", "search_docs")
    audit.note(ctx, "pii.email", 2)
    with pytest.warns(audit.UndeclaredAuditFact):
        audit.note(ctx, "pii.Bad Key", 1)  # not a plain name: dropped
    audit.note(ctx, "pii.phone", "555-1234")  # counts only: dropped
    with pytest.warns(audit.UndeclaredAuditFact):
        audit.note(ctx, "prompt", "my password is hunter2")  # not in the allow-list: dropped
    audit.note(ctx, "guard.rules", ["ignore-previous", "exfiltrate"])
    audit.note(ctx, "llm.stream", True)
    ctx.established.rbac_rule = "readers-read"
    assert facts(ctx) == {
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.tool.name": "search_docs",
        "extproc.pii.email": 2,
        "extproc.guard.rules": ["ignore-previous", "exfiltrate"],
        "extproc.llm.stream": True,
        "extproc.rbac.rule": "readers-read",
    }


def test_facts_come_from_declared_channels_only():
    # Only audit facts and typed ``ctx.established`` fields are read: a
    # string key some capability keeps in ctx.state for itself is not.
    ctx = context()
    ctx.state["llm.request"] = object()
    ctx.state["prompt_guard"] = {"score": 0.91, "rules": ["jailbreak"]}
    ctx.state["audit"] = "not a dict"
    assert facts(ctx) == {}
    ctx.established.rbac_rule = "readers"
    assert facts(ctx) == {"extproc.rbac.rule": "readers"}


def test_scrub_removes_credentials_and_addresses_from_free_text():
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
    text = scrub(
        f"token {token} from bob@example.com with Bearer abc.def-ghi_jkl and key Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4f", 500
    )
    assert token not in text and "bob@example.com" not in text and "abc.def-ghi_jkl" not in text
    assert "Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4f" not in text and text.count(REDACTED) == 4
    assert (
        scrub("deny rule readers-read-everything-except-the-admin-paths")
        == "deny rule readers-read-everything-except-the-admin-paths"
    )
    assert len(scrub("x" * 1000)) == 128


def test_agent_facts_from_the_mcp_and_a2a_capabilities():
    ctx = context()
    ctx.state["audit"] = {
        "mcp.methods": ["tools/call"],
        "mcp.method": "tools/call",
        "tool.name": "read_file",
        "tool.arguments_sha256": "ab" * 32,
        "tool.decision": "allow",
        "mcp.error": -32600,
        "a2a.card": {"shown": 2, "hidden": 1},
        "a2a.skill": "summarize",
        "tool.arguments": {"path": "secrets/x"},  # not allow-listed: never exported
    }
    assert facts(ctx) == {
        "extproc.mcp.methods": ["tools/call"],
        "extproc.mcp.method": "tools/call",
        "gen_ai.tool.name": "read_file",
        "extproc.tool.arguments_sha256": "ab" * 32,
        "extproc.tool.decision": "allow",
        "extproc.mcp.error": -32600,
        "extproc.a2a.card.shown": 2,
        "extproc.a2a.card.hidden": 1,
        "extproc.a2a.skill": "summarize",
    }
    ctx.state["audit"] = {"a2a.card": "signed: not filtered"}
    assert facts(ctx) == {"extproc.a2a.card": "signed: not filtered"}
    ctx.state["audit"] = {"a2a.card": {"shown": "two"}}
    assert facts(ctx) == {}


def test_an_undeclared_fact_fails_loudly_and_a_declared_one_is_exported():
    import warnings

    from extproc.audit.record import AUDIT_KEYS, declared

    ctx = context()
    audit.note(ctx, "quota.limit", "per-consumer")
    audit.note(ctx, "pii.email", 2)
    assert facts(ctx) == {"extproc.quota.limit": "per-consumer", "extproc.pii.email": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for bad in ("quota.limt", "pii.", "pii.Not-A-Name", "llm.usage"):
            with pytest.raises(audit.UndeclaredAuditFact):
                audit.note(ctx, bad, 1)
            with pytest.raises(audit.UndeclaredAuditFact):
                audit.facts_of(ctx).setdefault(bad, [])
    assert all(declared(key) for key in AUDIT_KEYS)
