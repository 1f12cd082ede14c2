"""Strict JSON-RPC 2.0 parsing and the errors the gateway answers with."""

from __future__ import annotations

import json

import pytest

from extproc.jsonrpc import wire as jsonrpc
from extproc.jsonrpc.wire import (
    INVALID_REQUEST,
    PARSE_ERROR,
    Invalid,
    JsonRpcError,
    canonical_json,
    parse,
    render,
    sha256_json,
    wants_sse,
)
from extproc.mcp.protocol import is_notification


def parse_mcp(body, max_batch=8):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse(raw, max_batch=max_batch, is_notification=is_notification)


def whole_error(body, **kwargs) -> JsonRpcError:
    with pytest.raises(JsonRpcError) as info:
        parse_mcp(body, **kwargs)
    return info.value


def test_a_request_a_notification_and_a_client_response():
    env = parse_mcp({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
    assert not env.batch and env.items[0].kind == "request" and env.items[0].id == 7
    env = parse_mcp({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert env.items[0].kind == "notification" and env.items[0].id is None
    env = parse_mcp({"jsonrpc": "2.0", "id": "s1", "result": {"roots": []}})
    assert env.items[0].kind == "response" and env.items[0].method is None


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b"\xff\xfe{}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}',
        b"[" * 100_000,
    ],
)
def test_unparseable_bodies_are_parse_errors(raw):
    error = whole_error(raw)
    assert error.code == PARSE_ERROR and error.id is None


def test_duplicate_keys_are_refused_even_deep_inside_params():
    # Parsers disagree on which duplicate wins: the gateway must not judge one
    # tool name while the server executes the other.
    raw = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"delete_record"}}'
    assert whole_error(raw).code == PARSE_ERROR


@pytest.mark.parametrize(
    "message, code, reply_id",
    [
        ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, INVALID_REQUEST, 3),
        ({"id": 3, "method": "ping"}, INVALID_REQUEST, 3),
        ({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x"}}, INVALID_REQUEST, None),  # no id
        ({"jsonrpc": "2.0", "id": None, "method": "ping"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, INVALID_REQUEST, None),
        ({"jsonrpc": "2.0", "id": 4, "method": ""}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 4, "method": 12}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 4, "method": "ping", "params": "x"}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 4, "method": "ping", "result": {}}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 4}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "id": 4, "result": {}, "error": {}}, INVALID_REQUEST, 4),
    ],
)
def test_invalid_single_messages(message, code, reply_id):
    error = whole_error(message)
    assert (error.code, error.id) == (code, reply_id)


@pytest.mark.parametrize("body", [42, "tools/list", None, True])
def test_a_body_that_is_neither_object_nor_array(body):
    assert whole_error(body).code == INVALID_REQUEST


def test_batches():
    env = parse_mcp(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            {"jsonrpc": "2.0", "method": "notifications/progress"},
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},  # duplicate id
            "nonsense",
        ]
    )
    assert env.batch
    kinds = [type(i).__name__ if isinstance(i, Invalid) else i.kind for i in env.items]
    assert kinds == ["request", "notification", "Invalid", "Invalid"]
    assert env.items[2].id == 1 and "duplicate" in env.items[2].message
    assert whole_error([]).code == INVALID_REQUEST
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(9)]
    assert "batch too large" in whole_error(too_many, max_batch=8).message
    with pytest.raises(JsonRpcError) as info:
        parse(b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', max_batch=8, batches=False)
    assert info.value.code == INVALID_REQUEST


def test_ids_1_and_string_1_are_different_ids():
    env = parse_mcp([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": "1", "method": "ping"}])
    assert all(not isinstance(i, Invalid) for i in env.items)


@pytest.mark.parametrize(
    "accept, sse",
    [
        ("application/json, text/event-stream", False),
        ("text/event-stream", True),
        ("text/event-stream, application/json;q=0", True),
        ("*/*", False),
        (None, False),
        ("text/html", False),
    ],
)
def test_refusals_use_sse_only_for_clients_that_accept_nothing_else(accept, sse):
    assert wants_sse(accept) is sse


def test_render_json_and_sse():
    error = jsonrpc.error_object(5, -32019, "no")
    body, content_type = render(error, sse=False)
    assert content_type == "application/json" and json.loads(body) == error
    body, content_type = render([error, error], sse=True)
    assert content_type == "text/event-stream"
    assert body.count(b"event: message\ndata: ") == 2 and body.endswith(b"\n\n")


def test_canonical_hash_ignores_key_order_and_whitespace_only():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": "1"})
    assert len(sha256_json({})) == 64
