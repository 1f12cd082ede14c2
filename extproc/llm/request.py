"""LLM requests: which API, which model, and every piece of prompt text.

Supported request shapes: OpenAI-compatible ``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings``, ``/v1/responses`` and Anthropic's
``/v1/messages``. Parsing yields ``TextSlot``s, each a reference into the
parsed JSON that can be read and replaced, so guards rewrite exactly the
prompt strings and nothing else; the body is re-serialized only if a slot
changed.

The request is parsed once per request and shared by every capability that
needs it (``llm_request(ctx)``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from extproc.context import Deny, RequestContext
from extproc.headers import content_encoding
from extproc.llm.errors import llm_error

OPENAI_CHAT = "openai.chat"
OPENAI_COMPLETIONS = "openai.completions"
OPENAI_EMBEDDINGS = "openai.embeddings"
OPENAI_RESPONSES = "openai.responses"
ANTHROPIC_MESSAGES = "anthropic.messages"

_API_BY_SUFFIX = (
    ("/chat/completions", OPENAI_CHAT),
    ("/completions", OPENAI_COMPLETIONS),
    ("/embeddings", OPENAI_EMBEDDINGS),
    ("/responses", OPENAI_RESPONSES),
    ("/messages", ANTHROPIC_MESSAGES),
)
MAX_DECOMPRESSED = 8 << 20


def api_for_path(path: str) -> str | None:
    for suffix, api in _API_BY_SUFFIX:
        if path.endswith(suffix):
            return api
    return None


@dataclass(slots=True)
class TextSlot:
    """One prompt string: ``container[key]`` in the parsed body."""

    role: str
    container: Any
    key: Any

    @property
    def text(self) -> str:
        return self.container[self.key]

    def replace(self, text: str) -> None:
        self.container[self.key] = text


@dataclass(slots=True)
class LlmRequest:
    api: str
    body: dict
    model: str | None
    stream: bool
    max_tokens: int | None
    slots: list[TextSlot] = field(default_factory=list)

    def texts(self, roles: frozenset[str] | None = None) -> list[TextSlot]:
        if roles is None:
            return self.slots
        return [s for s in self.slots if s.role in roles]

    def serialize(self) -> bytes:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


class LlmRequestError(Exception):
    def __init__(self, deny: Deny):
        self.deny = deny


def _decode(ctx: RequestContext, api: str, max_bytes: int) -> bytes:
    body = ctx.request_body or b""
    encoding = content_encoding(ctx.request.headers)
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            decoder = zlib.decompressobj(wbits=31 if "gzip" in encoding else 15)
            body = decoder.decompress(body, max_bytes + 1)
        except (zlib.error, gzip.BadGzipFile):
            raise LlmRequestError(llm_error(api, 400, "invalid_request_error", "body is not valid " + encoding)) from None
        ctx.state["llm.decoded"] = True  # a rewritten body is sent decoded (see mark_changed)
    elif encoding:
        raise LlmRequestError(llm_error(api, 415, "invalid_request_error", f"unsupported content-encoding {encoding}"))
    if len(body) > max_bytes:
        raise LlmRequestError(llm_error(api, 413, "invalid_request_error", "request body too large"))
    return body


def parse_request(ctx: RequestContext, max_bytes: int = 4 << 20) -> LlmRequest:
    api = api_for_path(ctx.request.path) or OPENAI_CHAT
    content_type = ctx.request.headers.get("content-type", "")
    if not content_type.split(";", 1)[0].strip().lower() == "application/json":
        raise LlmRequestError(llm_error(api, 415, "invalid_request_error", "content-type must be application/json"))
    raw = _decode(ctx, api, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LlmRequestError(llm_error(api, 400, "invalid_request_error", "body is not valid UTF-8")) from None
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise LlmRequestError(llm_error(api, 400, "invalid_request_error", "body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise LlmRequestError(llm_error(api, 400, "invalid_request_error", "body must be a JSON object"))
    model = body.get("model")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", body.get("max_output_tokens")))
    request = LlmRequest(
        api=api, body=body,
        model=model if isinstance(model, str) else None,
        stream=body.get("stream") is True,
        max_tokens=max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
    )
    _EXTRACTORS[api](body, request.slots)
    return request


def llm_request(ctx: RequestContext, max_bytes: int = 4 << 20) -> LlmRequest:
    """The parsed request, parsed on first use; raises LlmRequestError."""
    cached = ctx.state.get("llm.request")
    if cached is None:
        cached = ctx.state["llm.request"] = parse_request(ctx, max_bytes)
    return cached


def mark_changed(ctx: RequestContext, request: LlmRequest) -> None:
    ctx.replace_request_body(request.serialize())
    if ctx.state.get("llm.decoded"):
        ctx.remove_request_header("content-encoding")


# -- per-API text extraction ----------------------------------------------

def _content(slots: list[TextSlot], role: str, holder: dict, key: str = "content") -> None:
    """A message content: a string or a list of typed parts."""
    value = holder.get(key)
    if isinstance(value, str):
        slots.append(TextSlot(role, holder, key))
    elif isinstance(value, list):
        for part in value:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                slots.append(TextSlot(role, part, "text"))
            if part.get("type") == "tool_result":  # Anthropic: tool output inside a user turn
                _content(slots, "tool", part)


def _chat(body: dict, slots: list[TextSlot]) -> None:
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            role = message.get("role")
            role = "system" if role == "developer" else role if isinstance(role, str) else "user"
            _content(slots, role, message)


def _strings(slots: list[TextSlot], role: str, holder: dict, key: str) -> None:
    value = holder.get(key)
    if isinstance(value, str):
        slots.append(TextSlot(role, holder, key))
    elif isinstance(value, list):
        slots.extend(TextSlot(role, value, i) for i, v in enumerate(value) if isinstance(v, str))


def _completions(body: dict, slots: list[TextSlot]) -> None:
    _strings(slots, "user", body, "prompt")


def _embeddings(body: dict, slots: list[TextSlot]) -> None:
    _strings(slots, "user", body, "input")


def _responses(body: dict, slots: list[TextSlot]) -> None:
    if isinstance(body.get("instructions"), str):
        slots.append(TextSlot("system", body, "instructions"))
    items = body.get("input")
    if isinstance(items, str):
        slots.append(TextSlot("user", body, "input"))
        return
    for item in items or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            _strings(slots, "tool", item, "output")
        else:
            role = item.get("role") if isinstance(item.get("role"), str) else "user"
            _content(slots, "system" if role == "developer" else role, item)


def _anthropic(body: dict, slots: list[TextSlot]) -> None:
    _content(slots, "system", body, "system")
    _chat(body, slots)


_EXTRACTORS = {
    OPENAI_CHAT: _chat,
    OPENAI_COMPLETIONS: _completions,
    OPENAI_EMBEDDINGS: _embeddings,
    OPENAI_RESPONSES: _responses,
    ANTHROPIC_MESSAGES: _anthropic,
}
