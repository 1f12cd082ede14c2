"""Rewriting JSON-RPC responses as Envoy streams them through.

Envoy sends the response body in chunks (``response_body_mode: STREAMED``);
each chunk must be answered with the bytes to send on. Two shapes:

* ``application/json``: one message or a batch array. The body is held until
  it is complete (each chunk answered with nothing), then every message is
  offered to ``transform`` and the result sent as the last chunk;
* ``text/event-stream``: event by event. A complete event is sent on as soon
  as it arrives (rewritten if its data is a message ``transform`` changes);
  a partial event waits for its end. Streaming stays streaming.

Fail closed: a JSON body or an event whose data looks like JSON but cannot be
parsed strictly (duplicate keys, NaN...) might be read differently by the
client than by us, so it is withheld — replaced by a JSON-RPC error for the
pending requests (JSON) or dropped (an SSE event) — and reported via
``on_unreadable``. SSE line endings are normalized (CRLF and lone CR both
end lines, as the SSE spec says), so no event can hide from the splitter.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from extproc.context import Deny, RequestContext
from extproc.headers import content_encoding
from extproc.jsonrpc.wire import dumps, loads_strict
from extproc.sse import SseEvent, SseSplitter, encode

if TYPE_CHECKING:
    from extproc.jsonrpc.exchange import Exchange

# await transform(message) -> replacement message, or None to leave it
# unchanged. Asynchronous: a decision about a response may need the shared
# state (who owns the task it shows), and the chunk must wait for it.
Transform = Callable[[dict[str, Any]], Awaitable["dict[str, Any] | None"]]


def content_kind(content_type: str | None) -> str | None:
    """``json``, ``sse``, None (not JSON-RPC: clients will not read it as
    such) or ``ambiguous``: a header a client might read as JSON or SSE but
    that is not exactly one of them (two media types joined, a JSON or SSE
    name in a parameter...). Clients differ (prefix match, substring match),
    so an ambiguous response is refused rather than guessed at."""
    raw = (content_type or "").lower()
    media = raw.split(";", 1)[0].strip()
    if "," not in raw:
        if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
            return "json" if "event-stream" not in raw else "ambiguous"
        if media == "text/event-stream":
            return "sse" if "json" not in raw else "ambiguous"
    if "json" in raw or "event-stream" in raw:
        return "ambiguous"
    return None


async def _apply(payload: Any, transform: Transform) -> tuple[Any, bool]:
    if isinstance(payload, dict):
        new = await transform(payload)
        return (new, True) if new is not None else (payload, False)
    if isinstance(payload, list):
        changed = False
        out = []
        for item in payload:
            new = await transform(item) if isinstance(item, dict) else None
            if new is not None:
                changed = True
                out.append(new)
            else:
                out.append(item)
        return out, changed
    return payload, False


class JsonBody:
    """A whole JSON body, transformed once complete."""

    def __init__(self, transform: Transform, on_unreadable: Callable[[], bytes | None], max_bytes: int):
        self.transform, self.on_unreadable, self.max_bytes = transform, on_unreadable, max_bytes
        self._parts: list[bytes] = []
        self._size = 0

    async def feed(self, chunk: bytes, end: bool) -> bytes:
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise ValueError(f"JSON response over the inspection limit ({self.max_bytes} bytes)")
        if not end:
            return b""
        raw = b"".join(self._parts)
        self._parts = []
        if not raw.strip():
            return raw
        try:
            payload = loads_strict(raw)
        except (ValueError, RecursionError):
            replacement = self.on_unreadable()
            return raw if replacement is None else replacement
        payload, changed = await _apply(payload, self.transform)
        return dumps(payload) if changed else raw


class SseBody:
    """An SSE stream, transformed event by event."""

    def __init__(self, transform: Transform, on_unreadable: Callable[[], bytes | None], max_event_bytes: int):
        self.transform, self.on_unreadable = transform, on_unreadable
        self._splitter = SseSplitter(max_event_bytes)
        self._cr = False  # the previous chunk ended with CR: a following LF belongs to it

    def _normalize(self, chunk: bytes) -> bytes:
        if self._cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._cr = chunk.endswith(b"\r")
        return chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    async def feed(self, chunk: bytes, end: bool) -> bytes:
        blocks = self._splitter.feed(self._normalize(chunk))
        if end:
            rest = self._splitter.take_rest()
            if rest.strip("\n"):
                blocks.append(rest)  # an unterminated last event is still judged
        out = [block for block in [await self._event(b) for b in blocks] if block is not None]
        return encode(out)

    async def _event(self, block: str) -> str | None:
        event = SseEvent(block)
        data = event.data
        if data is None or not data.strip():
            return block  # comments, retry, priming events with no data
        stripped = data.lstrip()
        if not stripped.startswith(("{", "[")):
            return block
        try:
            payload = loads_strict(data)
        except (ValueError, RecursionError):
            replacement = self.on_unreadable()
            return None if replacement is None else event.with_data(replacement.decode())
        payload, changed = await _apply(payload, self.transform)
        if not changed:
            return block
        return event.with_data(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))


class AmbiguousContentType(ValueError):
    pass


def rewriter(
    content_type: str | None,
    transform: Transform,
    on_unreadable: Callable[[], bytes | None],
    max_json_bytes: int = 8 << 20,
    max_event_bytes: int = 4 << 20,
) -> JsonBody | SseBody | None:
    """The rewriter for a response's content type; None when it is not one
    JSON-RPC travels in. Raises AmbiguousContentType."""
    kind = content_kind(content_type)
    if kind == "ambiguous":
        raise AmbiguousContentType(f"ambiguous content-type {content_type!r}")
    if kind == "json":
        return JsonBody(transform, on_unreadable, max_json_bytes)
    if kind == "sse":
        return SseBody(transform, on_unreadable, max_event_bytes)
    return None


def open_response(
    ctx: RequestContext,
    transform: Transform,
    on_unreadable: Callable[[], bytes | None],
    max_json_bytes: int,
    protocol: str,
) -> tuple[JsonBody | SseBody | None, Deny | None]:
    """The body rewriter for this response, or the 502 that says why it cannot
    be inspected (an ambiguous content type, a compressed body). ``(None,
    None)``: not a body JSON-RPC travels in; nothing to do."""
    try:
        body = rewriter(
            ctx.response_headers.get("content-type"), transform, on_unreadable, max_json_bytes=max_json_bytes
        )
    except AmbiguousContentType as exc:
        return None, Deny(502, "bad_gateway", f"{protocol} response cannot be inspected: {exc}")
    if body is None:
        return None, None
    encoding = content_encoding(ctx.response_headers)
    if encoding:
        return None, Deny(
            502, "bad_gateway", f"{protocol} response with content-encoding {encoding} cannot be inspected"
        )
    return body, None


async def feed_response(ctx: RequestContext, exchange: Exchange | None) -> None:
    """Pass this response chunk through the exchange's rewriter, if it has one."""
    if exchange is None or exchange.body is None:
        return
    exchange.fed = True
    ctx.replace_response_chunk(await exchange.body.feed(ctx.response_chunk, ctx.response_end))
