"""The JSON-RPC exchange machinery both agent capabilities share
(extproc.jsonrpc.exchange): a refused batch is audited as refused — every
record, the flat decision, no "allow" capability record — the same for MCP
and A2A by construction; and no JSON the strict parser lets through (or
refuses) can make either capability raise: odd JSON gets a JSON-RPC error
or a clean decision."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.capabilities.a2a_access import A2aAccess, A2aAccessConfig
from extproc.capabilities.mcp_tools import McpTools, McpToolsConfig
from extproc.context import Deny, Mode
from extproc.jsonrpc.wire import INVALID_REQUEST, PARSE_ERROR, POLICY_DENIED, loads_strict, parse, sha256_json
from extproc.runtime import Runtime
from tests.profiles import examples
from tests.unit.mcp.harness import context, deny_payload, request, user

AGENT = user("planner-bot", roles=["reader"], agent_id="planner-1")
A2A_RULES = [
    {
        "name": "planners",
        "who": {"agents": ["planner-*"]},
        "methods": ["SendMessage", "SendStreamingMessage", "GetTask", "ListTasks"],
        "skills": ["summarize"],
    }
]
MCP_RULES = [
    {
        "name": "readers",
        "who": {"roles": ["reader"]},
        "tools": ["search_docs"],
        "resources": ["docs://*"],
        "prompts": ["*"],
    }
]


def a2a(**config) -> A2aAccess:
    return A2aAccess(
        A2aAccessConfig.model_validate({"rules": A2A_RULES, **config}), Mode.ENFORCE, Runtime(quota_backend="memory")
    )


def mcp(**config) -> McpTools:
    return McpTools(
        McpToolsConfig.model_validate({"rules": MCP_RULES, **config}), Mode.ENFORCE, Runtime(quota_backend="memory")
    )


def a2a_send(skill, id):
    return {
        "jsonrpc": "2.0",
        "id": id,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": f"m{id}",
                "role": "ROLE_USER",
                "parts": [{"text": "x"}],
                "metadata": {"skill": skill},
            }
        },
    }


def mcp_call(tool, id):
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {"q": "x"}}}


CASES = {
    "a2a": (lambda: a2a(batches=True), "/a2a/", "a2a", a2a_send, "summarize", "purge_cache", "a2a.decision"),
    "mcp": (mcp, "/mcp", "mcp", mcp_call, "search_docs", "delete_record", "tool.decision"),
}


@pytest.mark.parametrize("protocol", CASES)
async def test_a_refused_batch_is_audited_as_refused(protocol):
    make, path, route, message, allowed, refused, flat = CASES[protocol]
    cap = make()
    ctx = context(cap, AGENT, path=path, headers={"accept": "application/json"}, route_name=route)
    deny = await request(cap, ctx, [message(allowed, 1), message(refused, 2)])
    payload = deny_payload(deny)
    assert [m["error"]["code"] for m in payload] == [POLICY_DENIED, POLICY_DENIED]
    audit = ctx.state["audit"]
    calls = audit[f"{protocol}.calls"]
    assert [c["decision"] for c in calls] == ["deny", "deny"]  # the allowed one never ran
    assert calls[0]["reason"].startswith("batch refused: ")
    assert audit[flat] == "deny"
    assert not [r for r in ctx.records if r.decision == "allow"]


@pytest.mark.parametrize("protocol", CASES)
async def test_an_allowed_batch_is_audited_as_allowed(protocol):
    make, path, route, message, allowed, _refused, flat = CASES[protocol]
    cap = make()
    ctx = context(cap, AGENT, path=path, headers={"accept": "application/json"}, route_name=route)
    assert await request(cap, ctx, [message(allowed, 1), message(allowed, 2)]) is None
    assert [c["decision"] for c in ctx.state["audit"][f"{protocol}.calls"]] == ["allow", "allow"]
    assert ctx.state["audit"][flat] == "allow"
    assert [r.decision for r in ctx.records] == ["allow", "allow"]


# -- odd JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        rb'"\ud800"',
        rb'{"a": "\udc00"}',
        rb'{"\uDBFF": 1}',
        rb'["x\ud800y"]',
        b"9007199254740992",
        b"-9007199254740993",
        b"1" + b"0" * 5000,
        b"1e400",
        b"-1E999",
        b'{"a": 1, "a": 2}',
        b"NaN",
        b"[" * 100_000 + b"]" * 100_000,
        b'"\xff"',
    ],
)
def test_the_strict_parser_refuses_what_parsers_disagree_on(raw):
    with pytest.raises(ValueError):
        loads_strict(raw)


def test_the_strict_parser_keeps_what_is_interoperable():
    assert loads_strict(rb'["\ud83d\ude00", "\\ud800", 9007199254740991, -9007199254740991, 1e308, 0.5]') == [
        "\U0001f600",
        "\\ud800",
        2**53 - 1,
        -(2**53 - 1),
        1e308,
        0.5,
    ]


def test_hashing_never_raises():
    assert len(sha256_json("\ud800")) == 64 and len(sha256_json(float("inf"))) == 64
    assert len(sha256_json({1: object()})) == 64


# Where the attacks put odd values: every field either capability reads.
A2A_BODIES = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": "m",
                "role": "ROLE_USER",
                "parts": [{"text": "\\ud800"}],
                "metadata": {"skill": "summarize"},
            }
        },
    },
    {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}},
    {"jsonrpc": "2.0", "id": 1, "method": "tasks/pushNotificationConfig/set", "params": {"taskId": "t"}},
    {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}},
]
MCP_BODIES = [
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_docs", "arguments": {"q": "x"}}},
    {"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "docs://a"}},
    {"jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": {"name": "p", "arguments": {}}},
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "completion/complete",
        "params": {"ref": {"type": "ref/prompt", "name": "p"}},
    },
]
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**53 - 1,
    1.5,
    "",
    "\ud800",
    "x" * 10_000,
    [],
    [1, "a"],
    {},
    {"a": {"b": []}},
    {"\ud800": 1},
    "a\x00b",
    "tasks/x/pushNotificationConfigs/y",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    """Every (path) into a JSON value: where an odd value can be planted."""
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _paths(inner, (*prefix, i))


def _planted(body, path, odd):
    body = json.loads(json.dumps(body))
    if not path:
        return odd
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = odd
    return body


def _encode(body) -> bytes:
    # Lone surrogates survive as \u escapes, as an attacker would send them.
    return json.dumps(body, ensure_ascii=True).encode()


def _assert_clean(deny, body):
    """A clean decision: let through, or a Deny whose body is a JSON-RPC answer."""
    if deny is None:
        return
    assert isinstance(deny, Deny) and 200 <= deny.status < 500, (deny, body)
    if deny.body is not None:
        payload = deny_payload(deny)
        errors = payload if isinstance(payload, list) else [payload]
        assert all("error" in e and isinstance(e["error"]["code"], int) for e in errors)


async def _run(cap, route, raw: bytes, identity=AGENT):
    ctx = context(
        cap,
        identity,
        path="/a2a/" if route == "a2a" else "/mcp",
        headers={"accept": "application/json"},
        route_name=route,
    )
    deny = await request(cap, ctx, raw)
    json.dumps(ctx.state.get("audit", {}))  # the audit record is serializable
    return deny


@pytest.mark.parametrize("route, bodies, make", [("a2a", A2A_BODIES, a2a), ("mcp", MCP_BODIES, mcp)])
async def test_every_field_of_every_request_with_an_odd_value_gets_an_answer_not_an_exception(route, bodies, make):
    cap = make()
    for body in bodies:
        for path in list(_paths(body)):
            for odd in ODD_VALUES:
                planted = _planted(body, path, odd)
                _assert_clean(await _run(cap, route, _encode(planted)), planted)


@pytest.mark.parametrize("route, make", [("a2a", a2a), ("mcp", mcp)])
async def test_lone_surrogates_and_huge_numbers_are_parse_errors_before_any_decision(route, make):
    cap = make()
    for raw in (
        rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs",'
        rb'"arguments":{"q":"\ud800"}}}',
        rb'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{"parts":[{"text":"\udfff"}],'
        rb'"metadata":{"skill":"summarize"}}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t","historyLength":1e999}}',
        b'{"jsonrpc":"2.0","id":18446744073709551617,"method":"GetTask","params":{"id":"t"}}',
    ):
        deny = await _run(cap, route, raw)
        assert deny_payload(deny)["error"]["code"] == PARSE_ERROR


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(
        [
            "SendMessage",
            "message/stream",
            "GetTask",
            "tasks/cancel",
            "ListTasks",
            "tasks/pushNotificationConfig/get",
            "CreateTaskPushNotificationConfig",
            "tools/call",
            "resources/read",
            "prompts/get",
            "tools/list",
            "initialize",
        ]
    ),
    params=json_values,
    id=st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats()),
    batch=st.booleans(),
)
def test_fuzzed_messages_through_both_capabilities(method, params, id, batch):
    import asyncio

    message = {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    raw = _encode([message, message] if batch else message)
    for route, make in (("a2a", lambda: a2a(batches=True)), ("mcp", mcp)):
        _assert_clean(asyncio.run(_run(make(), route, raw)), message)


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzzed_bytes_are_parse_errors_or_messages(raw):
    try:
        parse(raw, max_batch=16)
    except Exception as exc:
        assert type(exc).__name__ == "JsonRpcError" and exc.code in (PARSE_ERROR, INVALID_REQUEST), exc


# -- odd answers ------------------------------------------------------------------------

RESPONSE_CASES = [
    ("a2a", lambda: a2a(batches=True), a2a_send("summarize", 1)),
    ("a2a", lambda: a2a(batches=True), {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}),
    ("mcp", mcp, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ("mcp", mcp, mcp_call("search_docs", 1)),
]


@settings(max_examples=examples(60), deadline=None)
@given(
    case=st.sampled_from(range(len(RESPONSE_CASES))),
    result=json_values,
    sse_mode=st.booleans(),
    shape=st.sampled_from(["result", "task", "tasks", "tools", "event"]),
)
def test_fuzzed_answers_are_passed_rewritten_or_withheld_never_an_exception(case, result, sse_mode, shape):
    import asyncio

    from tests.unit.mcp.harness import respond, sse

    route, make, body = RESPONSE_CASES[case]
    wrapped = {
        "result": result,
        "task": {"task": result},
        "tasks": {"tasks": [result, {"id": result}]},
        "tools": {"tools": [result, {"name": result}]},
        "event": {"statusUpdate": {"taskId": result}},
    }[shape]
    answer = {"jsonrpc": "2.0", "id": 1, "result": wrapped}

    async def scenario():
        cap = make()
        ctx = context(
            cap,
            AGENT,
            path="/a2a/" if route == "a2a" else "/mcp",
            headers={"accept": "application/json, text/event-stream"},
            route_name=route,
        )
        assert await request(cap, ctx, body) is None
        raw = sse(answer) if sse_mode else _encode(answer)
        out = await respond(
            cap, ctx, [raw[:7], raw[7:]], content_type="text/event-stream" if sse_mode else "application/json"
        )
        json.dumps(ctx.state.get("audit", {}))
        return out

    assert isinstance(asyncio.run(scenario()), bytes)
