"""The `a2a_access` capability: agent identity, methods in both spec
spellings, the designated skill, card filtering, audit."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from extproc.a2a.ownership import owner_of
from extproc.a2a.protocol import SkillError, canonical, designated_skill, task_of
from extproc.capabilities.a2a_access import A2aAccess, A2aAccessConfig
from extproc.context import Mode
from extproc.jsonrpc.wire import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, POLICY_DENIED, sha256_json
from extproc.runtime import Runtime
from tests.unit.mcp.harness import context, deny_payload, request, respond, sse, user

SEND = ["SendMessage", "SendStreamingMessage"]
TASKS = ["GetTask", "ListTasks", "CancelTask", "SubscribeToTask"]
RULES = [
    {
        "name": "planners",
        "who": {"agents": ["planner-*"]},
        "methods": [*SEND, *TASKS, "GetExtendedAgentCard"],
        "skills": ["summarize", "translate"],
    },
    {"name": "admins", "who": {"roles": ["admin"]}, "methods": [*SEND, *TASKS], "skills": ["*"]},
    {"name": "no-cancel-for-planner-9", "effect": "deny", "who": {"agents": ["planner-9"]}, "methods": ["CancelTask"]},
]
PLANNER = user("planner-bot", agent_id="planner-1")
PLANNER_9 = user("planner-bot", agent_id="planner-9")
WORKLOAD = user(None, roles=["admin"], principal="spiffe://example.org/ns/agents/sa/ops", methods=("mtls",))
HUMAN = user("alice", roles=["reader"])
CARD = {
    "name": "demo",
    "skills": [{"id": "summarize", "name": "S"}, {"id": "translate", "name": "T"}, {"id": "purge_cache", "name": "P"}],
    "supportedInterfaces": [{"url": "http://gw/a2a/", "protocolBinding": "JSONRPC"}],
}


def make(**config) -> A2aAccess:
    return A2aAccess(A2aAccessConfig.model_validate({"rules": RULES, **config}), Mode.ENFORCE, Runtime())


def send(skill=None, method="SendMessage", id="r1", where="message", text="hello"):
    message = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": text}]}
    params = {"message": message}
    if skill is not None:
        (message if where == "message" else params).setdefault("metadata", {})["skill"] = skill
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def rpc(method, params=None, id="r1"):
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}}


def ctx_for(cap, identity, method="POST", path="/a2a/", accept="application/json"):
    return context(cap, identity, method=method, path=path, headers={"accept": accept}, route_name="a2a")


async def own(cap, identity, task_id, route="a2a"):
    """Record ``identity`` as the owner of ``task_id``, as its SendMessage would."""
    ctx = ctx_for(cap, identity)
    assert await cap._store(ctx).claim("task", task_id, owner_of(identity))


# -- protocol ---------------------------------------------------------------------------


def test_both_spec_spellings_map_to_the_1_0_names():
    assert canonical("message/send") == canonical("SendMessage") == "SendMessage"
    assert canonical("tasks/resubscribe") == "SubscribeToTask"
    assert canonical("agent/getAuthenticatedExtendedCard") == "GetExtendedAgentCard"
    assert canonical("tasks/explode") is None


def test_skill_designation():
    assert designated_skill(send("summarize")["params"], "skill") == "summarize"
    assert designated_skill(send("summarize", where="request")["params"], "skill") == "summarize"
    assert designated_skill(send()["params"], "skill") is None
    both = send("summarize")["params"]
    both["metadata"] = {"skill": "purge_cache"}
    with pytest.raises(SkillError, match="different skills"):
        designated_skill(both, "skill")
    with pytest.raises(SkillError):
        designated_skill({"message": {"metadata": {"skill": 3}}}, "skill")
    with pytest.raises(SkillError):
        designated_skill({"message": "hi"}, "skill")


def test_task_of_reads_1_0_and_0_3_results():
    assert task_of({"task": {"id": "t1", "status": {"state": "TASK_STATE_COMPLETED"}}}) == (
        "t1",
        "TASK_STATE_COMPLETED",
    )
    assert task_of({"statusUpdate": {"taskId": "t2", "status": {"state": "TASK_STATE_WORKING"}}}) == (
        "t2",
        "TASK_STATE_WORKING",
    )
    assert task_of({"kind": "task", "id": "t3", "contextId": "c", "status": {"state": "completed"}}) == (
        "t3",
        "completed",
    )
    assert task_of({"message": {"messageId": "m"}}) == (None, None)


# -- decisions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identity, message, allowed",
    [
        (PLANNER, send("summarize"), True),
        (PLANNER, send("summarize", method="message/send"), True),  # 0.3 spelling
        (PLANNER, send("translate", method="SendStreamingMessage"), True),
        (PLANNER, send("purge_cache"), False),  # no skill grant
        (PLANNER, send(), False),  # no skill designated
        (WORKLOAD, send("purge_cache"), True),  # SPIFFE workload with the admin role
        (PLANNER, rpc("GetTask", {"id": "t1"}, id="x"), True),  # non-skill methods: method + who
        (PLANNER, rpc("tasks/cancel", {"id": "t1"}), True),
        (PLANNER_9, rpc("CancelTask", {"id": "t1"}), False),  # deny overrides
        (PLANNER_9, send("summarize"), True),
    ],
)
async def test_method_and_skill_decisions(identity, message, allowed):
    cap = make()
    await own(cap, identity, "t1")
    deny = await request(cap, ctx_for(cap, identity), message)
    assert (deny is None) is allowed, deny and deny.reason
    if not allowed:
        payload = deny_payload(deny)
        assert deny.status == 200 and payload["id"] == message["id"] and payload["error"]["code"] == POLICY_DENIED


async def test_a_refused_skill_names_the_skill_not_the_rules():
    cap = make()
    ctx = ctx_for(cap, PLANNER)
    deny = await request(cap, ctx, send("purge_cache", text="secret text"))
    assert deny_payload(deny)["error"]["message"] == "skill 'purge_cache' is not available to this agent"
    assert "no allow rule for SendMessage skill purge_cache" in deny.reason and "agent=planner-1" in deny.reason
    assert "secret text" not in deny.reason + json.dumps(ctx.state["audit"])


async def test_a_default_skill_applies_to_messages_naming_none():
    cap = make(default_skill="summarize")
    assert await request(cap, ctx_for(cap, PLANNER), send()) is None


async def test_the_caller_must_be_an_agent():
    cap = make()
    deny = await request(cap, ctx_for(cap, user(None, methods=())), send("summarize"))
    assert deny.status == 401
    deny = await request(cap, ctx_for(cap, HUMAN), send("summarize"))
    assert deny.status == 403 and "not an agent" in deny.reason
    relaxed = make(
        require_agent=False, rules=[{"name": "people", "who": {"roles": ["reader"]}, "methods": SEND, "skills": ["*"]}]
    )
    assert await request(relaxed, ctx_for(relaxed, HUMAN), send("summarize")) is None


async def test_delegation_narrowing_on_a2a():
    cap = make(delegation={"require_narrowing": True})
    good = user(
        "alice",
        agent_id="planner-1",
        scopes=["a2a:call"],
        claims={
            "act": {
                "sub": "planner-1",
                "scope": "a2a:call",
                "act": {"sub": "orchestrator", "scope": "a2a:call a2a:admin"},
            }
        },
    )
    assert await request(cap, ctx_for(cap, good), send("summarize")) is None
    wider = user(
        "alice",
        agent_id="planner-1",
        scopes=["a2a:call"],
        claims={
            "act": {
                "sub": "planner-1",
                "scope": "a2a:call a2a:admin",
                "act": {"sub": "orchestrator", "scope": "a2a:call"},
            }
        },
    )
    deny = await request(cap, ctx_for(cap, wider), send("summarize"))
    assert deny.status == 403 and "widens" in deny.reason


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{", PARSE_ERROR),
        ({"jsonrpc": "2.0", "method": "SendMessage", "params": {}}, INVALID_REQUEST),  # no id
        ({"jsonrpc": "2.1", "id": 1, "method": "SendMessage", "params": {}}, INVALID_REQUEST),
        ([send("summarize")], INVALID_REQUEST),  # no batches by default
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": []}, INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": "hi"}}, INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, INVALID_REQUEST),
        (rpc("tasks/explode"), POLICY_DENIED),
    ],
)
async def test_malformed_requests_get_json_rpc_errors(body, code):
    cap = make()
    deny = await request(cap, ctx_for(cap, PLANNER), body)
    assert deny.status == 200 and deny_payload(deny)["error"]["code"] == code


async def test_batches_when_enabled_are_judged_as_a_unit():
    cap = make(batches=True)
    deny = await request(cap, ctx_for(cap, PLANNER), [send("summarize", id="a"), send("purge_cache", id="b")])
    payload = deny_payload(deny)
    assert [m["id"] for m in payload] == ["a", "b"]
    assert "not executed" in payload[0]["error"]["message"] and "purge_cache" in payload[1]["error"]["message"]


async def test_other_http_methods_and_paths_are_refused():
    cap = make()
    assert (await request(cap, ctx_for(cap, PLANNER, method="GET", path="/a2a/tasks/t1"))).status == 403
    assert (await request(cap, ctx_for(cap, PLANNER, method="DELETE", path="/a2a/"))).status == 403
    assert await request(cap, ctx_for(cap, PLANNER, method="GET", path="/a2a/.well-known/agent-card.json")) is None


async def test_sse_only_clients_get_the_refusal_as_an_event():
    cap = make()
    deny = await request(
        cap, ctx_for(cap, PLANNER, accept="text/event-stream"), send("purge_cache", method="SendStreamingMessage")
    )
    assert deny.content_type == "text/event-stream" and deny_payload(deny)[0]["error"]["code"] == POLICY_DENIED


# -- audit and responses -------------------------------------------------------------------


async def test_every_task_request_is_audited_with_the_task_seen_in_the_response():
    cap = make()
    ctx = ctx_for(cap, PLANNER)
    message = send("summarize", method="SendStreamingMessage")
    assert await request(cap, ctx, message) is None
    events = [
        {"jsonrpc": "2.0", "id": "r1", "result": {"task": {"id": "t-9", "status": {"state": "TASK_STATE_SUBMITTED"}}}},
        {
            "jsonrpc": "2.0",
            "id": "r1",
            "result": {"statusUpdate": {"taskId": "t-9", "status": {"state": "TASK_STATE_COMPLETED"}}},
        },
    ]
    raw = sse(*events)
    assert await respond(cap, ctx, [raw[:30], raw[30:]], content_type="text/event-stream") == raw
    audit = ctx.state["audit"]
    assert (audit["a2a.skill"], audit["a2a.task_id"], audit["a2a.task_state"]) == (
        "summarize",
        "t-9",
        "TASK_STATE_COMPLETED",
    )
    [record] = audit["a2a.calls"]
    assert record == {
        "id": "r1",
        "method": "SendStreamingMessage",
        "operation": "SendStreamingMessage",
        "skill": "summarize",
        "task_id": "t-9",
        "task_state": "TASK_STATE_COMPLETED",
        "arguments_sha256": sha256_json(message["params"]),
        "decision": "allow",
        "reason": "allow rule planners",
        "rule": "planners",
        "caller": {"subject": "planner-bot", "agent_id": "planner-1", "methods": ["jwt"]},
    }


@pytest.mark.parametrize(
    "identity, shown",
    [
        (PLANNER, ["summarize", "translate"]),
        (WORKLOAD, ["summarize", "translate", "purge_cache"]),
    ],
)
async def test_the_agent_card_shows_the_skills_the_caller_may_use(identity, shown):
    cap = make()
    ctx = ctx_for(cap, identity, method="GET", path="/a2a/.well-known/agent-card.json")
    assert await request(cap, ctx) is None
    card = json.loads(await respond(cap, ctx, [json.dumps(CARD).encode()], headers={"etag": '"abc"'}))
    assert [s["id"] for s in card["skills"]] == shown and card["name"] == "demo"
    assert ctx.response_headers_out.set["cache-control"] == "private" and "etag" in ctx.response_headers_out.remove


async def test_a_signed_card_is_left_alone():
    cap = make()
    ctx = ctx_for(cap, PLANNER, method="GET", path="/a2a/.well-known/agent-card.json")
    await request(cap, ctx)
    raw = json.dumps({**CARD, "signatures": [{"protected": "x", "signature": "y"}]}).encode()
    assert await respond(cap, ctx, [raw]) == raw
    assert ctx.state["audit"]["a2a.card"] == "signed: not filtered"


async def test_the_extended_card_is_filtered_too():
    cap = make()
    ctx = ctx_for(cap, PLANNER)
    assert await request(cap, ctx, rpc("GetExtendedAgentCard")) is None
    out = json.loads(await respond(cap, ctx, [json.dumps({"jsonrpc": "2.0", "id": "r1", "result": CARD}).encode()]))
    assert [s["id"] for s in out["result"]["skills"]] == ["summarize", "translate"]


def test_unknown_methods_in_rules_fail_at_load():
    with pytest.raises(ValidationError, match="unknown A2A method"):
        A2aAccessConfig.model_validate({"rules": [{"name": "r", "methods": ["SendMesage"], "skills": ["*"]}]})
    config = A2aAccessConfig.model_validate({"rules": [{"name": "r", "methods": ["message/send"], "skills": ["*"]}]})
    assert config.rules[0].methods == ["SendMessage"]
