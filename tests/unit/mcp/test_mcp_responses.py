"""Rewriting JSON-RPC responses chunk by chunk: JSON held until complete,
SSE event by event, and what cannot be read strictly is withheld."""

from __future__ import annotations

import asyncio
import json

import pytest

from extproc.jsonrpc.responses import AmbiguousContentType, JsonBody, SseBody, content_kind, rewriter
from tests.unit.mcp.harness import sse, sse_payloads


async def hide_secret(message: dict) -> dict | None:
    result = message.get("result")
    if isinstance(result, dict) and "tools" in result:
        return {**message, "result": {**result, "tools": [t for t in result["tools"] if t != "secret"]}}
    return None


LISTED = {"jsonrpc": "2.0", "id": 1, "result": {"tools": ["safe", "secret"]}}
UNREADABLE = b'{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"withheld"}}'


def feed(body, chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    outs = [asyncio.run(body.feed(c, n == len(chunks) - 1)) for n, c in enumerate(chunks)]
    return outs, b"".join(outs)


def split(raw: bytes, size: int) -> list[bytes]:
    return [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]


@pytest.mark.parametrize(
    "content_type, kind",
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/problem+json", "json"),
        ("text/event-stream", "sse"),
        ("Text/Event-Stream; charset=utf-8", "sse"),
        ("text/plain", None),
        (None, None),
        # Clients match content types by prefix or substring: anything that could
        # be read as JSON-RPC but is not exactly one shape is refused, not guessed.
        ("application/json, text/plain", "ambiguous"),
        ("application/json,text/event-stream", "ambiguous"),
        ("application/json; x=text/event-stream", "ambiguous"),
        ("text/event-stream; profile=json", "ambiguous"),
        ("application/jsonp", "ambiguous"),
        ("text/plain; note=event-stream", "ambiguous"),
    ],
)
def test_content_kinds(content_type, kind):
    assert content_kind(content_type) == kind
    if kind == "ambiguous":
        with pytest.raises(AmbiguousContentType):
            rewriter(content_type, hide_secret, lambda: None)
    else:
        assert (rewriter(content_type, hide_secret, lambda: None) is None) is (kind is None)


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_json_is_held_until_complete_then_rewritten(size):
    outs, out = feed(JsonBody(hide_secret, lambda: None, 1 << 20), split(json.dumps(LISTED).encode(), size))
    assert all(o == b"" for o in outs[:-1])
    assert json.loads(out)["result"]["tools"] == ["safe"]


def test_json_batches_and_untouched_bodies():
    batch = [LISTED, {"jsonrpc": "2.0", "id": 2, "result": {}}]
    out = feed(JsonBody(hide_secret, lambda: None, 1 << 20), [json.dumps(batch).encode()])[1]
    assert [m.get("result") for m in json.loads(out)] == [{"tools": ["safe"]}, {}]
    raw = b'{"jsonrpc": "2.0", "id": 2, "result": {"content": []}}'
    assert feed(JsonBody(hide_secret, lambda: None, 1 << 20), [raw])[1] == raw  # byte for byte


def test_json_that_cannot_be_read_strictly_is_withheld():
    raw = b'{"jsonrpc":"2.0","id":1,"result":{"tools":["safe"]},"result":{"tools":["secret"]}}'
    assert feed(JsonBody(hide_secret, lambda: UNREADABLE, 1 << 20), [raw])[1] == UNREADABLE


def test_json_over_the_limit_fails_closed():
    body = JsonBody(hide_secret, lambda: None, 10)
    with pytest.raises(ValueError):
        asyncio.run(body.feed(b"x" * 11, False))


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("size", [1, 5, 10_000])
def test_sse_is_rewritten_event_by_event_whatever_the_chunking(eol, size):
    raw = (f": keepalive{eol}{eol}id: 0{eol}data: {eol}{eol}").encode() + sse(
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}, LISTED, eol=eol
    )
    out = feed(SseBody(hide_secret, lambda: None, 1 << 20), split(raw, size))[1]
    payloads = sse_payloads(out)
    assert payloads[-1]["result"]["tools"] == ["safe"]
    assert payloads[0]["method"] == "notifications/progress"
    assert b": keepalive" in out and b"id: 0" in out


def test_sse_events_go_out_as_soon_as_they_are_complete():
    body = SseBody(hide_secret, lambda: None, 1 << 20)
    first = sse({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}})
    assert asyncio.run(body.feed(first[:10], False)) == b""
    assert asyncio.run(body.feed(first[10:], False)) == first
    assert sse_payloads(asyncio.run(body.feed(sse(LISTED), True)))[0]["result"]["tools"] == ["safe"]


def test_an_unterminated_last_event_is_judged_too():
    raw = b"data: " + json.dumps(LISTED).encode()
    out = feed(SseBody(hide_secret, lambda: None, 1 << 20), [raw])[1]
    assert sse_payloads(out)[0]["result"]["tools"] == ["safe"]


def test_sse_json_that_cannot_be_read_strictly_is_dropped_or_replaced():
    raw = b'data: {"jsonrpc":"2.0","id":1,"result":{},"result":{"tools":["secret"]}}\n\ndata: not json\n\n'
    out = feed(SseBody(hide_secret, lambda: None, 1 << 20), [raw])[1]
    assert b"secret" not in out and b"data: not json" in out
    out = feed(SseBody(hide_secret, lambda: UNREADABLE, 1 << 20), [raw])[1]
    assert sse_payloads(out)[0]["error"]["message"] == "withheld"


def test_sse_event_over_the_limit_fails_closed():
    body = SseBody(hide_secret, lambda: None, 100)
    with pytest.raises(ValueError):
        asyncio.run(body.feed(b"data: " + b"x" * 200, False))
