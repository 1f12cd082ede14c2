"""LLM requests: which API, which model, and every piece of text the model reads.

Supported request shapes: OpenAI-compatible ``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings``, ``/v1/responses`` and Anthropic's
``/v1/messages``. The API is chosen on the normalized path (case, trailing
slash and ``;params`` do not matter); a path that names none of them, or a
body that does not fit the API its path claims, is refused (400), never
read as some default shape.

Coverage is structural: ``walk_texts`` visits every string of the whole
request except the few fields known not to be text for the model
(``NON_TEXT_KEYS``: the model name, ids, enum tags) and binary media
payloads. So a field nobody listed (a legacy role, tool-call arguments, a
tool name, template variables, a document block) is still scanned. Each
string becomes a ``TextSlot`` with the role it speaks for; a JSON document
inside a string (tool-call ``arguments``) is walked too and written back as
valid JSON when one of its strings changes.

Slots are never edited in place by a capability: ``LlmRequest.replace``
stages the edit on the context, and the pipeline applies it (or drops it in
monitor mode); the body is re-serialized once, at the end of the phase.

The request is parsed once per request and shared by every capability that
needs it (``llm_request(ctx)``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from extproc import audit
from extproc.context import Deny, RequestContext
from extproc.encodings import DecodedTooLarge, decoder_for
from extproc.headers import content_encoding
from extproc.jsonstrict import StrictJsonError, loads_strict
from extproc.llm.errors import llm_error
from extproc.llm.fields import API_FIELDS

OPENAI_CHAT = "openai.chat"
OPENAI_COMPLETIONS = "openai.completions"
OPENAI_EMBEDDINGS = "openai.embeddings"
OPENAI_RESPONSES = "openai.responses"
ANTHROPIC_MESSAGES = "anthropic.messages"

# Last path segments -> API, most specific first.
_API_BY_SEGMENTS = (
    (("chat", "completions"), OPENAI_CHAT),
    (("completions",), OPENAI_COMPLETIONS),
    (("embeddings",), OPENAI_EMBEDDINGS),
    (("responses",), OPENAI_RESPONSES),
    (("messages",), ANTHROPIC_MESSAGES),
)
MAX_DECOMPRESSED = 8 << 20
# Bounds on what a client may ask the model to generate: beyond any real
# model, and small enough that budget arithmetic stays exact.
MAX_COMPLETION_TOKENS = 1 << 20
MAX_CHOICES = 128
_COMPLETION_LIMITS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_CHOICE_COUNTS = ("n", "best_of")  # best_of: completions generated server-side, each up to max_tokens

# Fields whose string value is not text the model reads: names of things,
# ids, enum tags. Everything else is scanned.
NON_TEXT_KEYS = frozenset(
    {
        "model",
        "id",
        "type",
        "role",
        "object",
        "tool_call_id",
        "tool_use_id",
        "call_id",
        "item_id",
        "previous_response_id",
        "media_type",
        "detail",
        "format",
        "encoding_format",
        "service_tier",
        "reasoning_effort",
    }
)
# Message roles as the guards know them; anything else (a legacy ``function``
# role, a typo, a new role) reads as ``user``: scanned by every default.
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
}
# Parts/items of a tool exchange: what a tool or a search returned, and the
# calls themselves (the client sends them back as history, arguments and all).
# They read as ``tool``, a role every default scans.
_TOOL_TYPES = frozenset(
    {
        "tool_result",
        "search_result",
        "web_search_tool_result",
        "mcp_tool_result",
        "tool_use",
        "server_tool_use",
        "mcp_tool_use",
    }
)
_TOOL_CALL_FIELDS = frozenset({"tool_calls", "function_call"})
# Objects that are data through and through (see ``walk_texts``).
_FREE_FORM_FIELDS = frozenset({"arguments", "variables"})
# Top-level fields that are the application's system prompt.
_SYSTEM_FIELDS = frozenset({"system", "instructions"})
_MESSAGE_LISTS = frozenset({"messages", "input"})
MAX_DEPTH = 64
# Strings per request: far beyond any real conversation, and a bound on the
# guards' per-request work (a 4 MB body of one-character strings is ~1M).
MAX_TEXT_PARTS = 50_000


def _segments(path: str) -> tuple[str, ...]:
    # ``;params`` are dropped the way servers that route on them do; the
    # stricter reading is to ignore them, since they still reach the upstream.
    return tuple(s.split(";", 1)[0].lower() for s in path.split("/") if s and s.split(";", 1)[0])


def api_for_path(path: str) -> str | None:
    segments = _segments(path)
    for tail, api in _API_BY_SEGMENTS:
        if segments[-len(tail) :] == tail:
            return api
    return None


@dataclass(slots=True)
class _Embedded:
    """A JSON document inside a string (``arguments``): written back to
    ``container[key]`` when one of its strings was edited."""

    container: Any
    key: Any
    value: Any
    dirty: bool = False


@dataclass(slots=True)
class TextSlot:
    """One string the model reads: ``container[key]`` in the parsed body, or
    with ``is_key`` the key itself (an object key that is data, not an API
    field: see ``extproc.llm.fields``)."""

    role: str
    container: Any
    key: Any
    embedded: _Embedded | None = None
    is_key: bool = False

    @property
    def text(self) -> str:
        text: str = self.key if self.is_key else self.container[self.key]
        return text


@dataclass(slots=True)
class LlmRequest:
    api: str
    body: dict[str, Any]
    model: str | None
    stream: bool
    max_tokens: int | None  # the per-choice completion limit the client set, if any
    choices: int = 1  # completions the model generates (n, best_of)
    slots: list[TextSlot] = field(default_factory=list)
    embedded: list[_Embedded] = field(default_factory=list)

    def texts(self, roles: frozenset[str] | None = None) -> list[TextSlot]:
        if roles is None:
            return self.slots
        return [s for s in self.slots if s.role in roles]

    def replace(self, ctx: RequestContext, slot: TextSlot, text: str) -> None:
        """Stage ``slot``'s new text; the pipeline applies it unless the
        capability runs in monitor mode (or refuses, or fails)."""

        def apply() -> None:
            if slot.is_key:
                self._rename(slot.container, slot.key, text)
            else:
                slot.container[slot.key] = text
            if slot.embedded is not None:
                slot.embedded.dirty = True
            ctx.at_phase_end("llm.request", lambda: mark_changed(ctx, self))

        ctx.stage(apply)

    def _rename(self, holder: dict[str, Any], old: str, new: str) -> None:
        if old not in holder or new == old:
            return
        unique, n = new, 2
        while unique in holder:  # two keys masked alike must not merge
            unique, n = f"{new}_{n}", n + 1
        items = list(holder.items())
        holder.clear()
        holder.update((unique if k == old else k, v) for k, v in items)  # order kept
        for other in self.slots:  # the key's own slot and its value's slot follow it
            if other.container is holder and other.key == old:
                other.key = unique

    def serialize(self) -> bytes:
        for doc in reversed(self.embedded):  # innermost first: an outer document holds its text
            if doc.dirty:
                doc.container[doc.key] = json.dumps(doc.value, ensure_ascii=False, separators=(",", ":"))
                doc.dirty = False
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode()


class LlmRequestError(Exception):
    def __init__(self, deny: Deny):
        self.deny = deny


def _bad(api: str, message: str, status: int = 400) -> LlmRequestError:
    return LlmRequestError(llm_error(api, status, "invalid_request_error", message))


def _decode(ctx: RequestContext, api: str, max_bytes: int) -> bytes:
    body = ctx.request_body or b""
    encoding = content_encoding(ctx.request.headers)
    if encoding:
        decoder = decoder_for(encoding, max_bytes)
        if decoder is None:
            raise _bad(api, f"unsupported content-encoding {encoding}", 415)
        try:
            body = decoder.feed(body, end=True)
        except DecodedTooLarge:
            raise _bad(api, "request body too large", 413) from None
        except ValueError:
            raise _bad(api, "body is not valid " + encoding) from None
        ctx.established.llm_body_decoded = True  # a rewritten body is sent decoded (see mark_changed)
    if len(body) > max_bytes:
        raise _bad(api, "request body too large", 413)
    return body


def _bounded_int(api: str, body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(api, f"{name} must be an integer between {low} and {high}")
    return value


def _check_shape(api: str, body: dict[str, Any]) -> None:
    """The fields the API cannot do without, with the types it accepts: a
    body shaped for another API is refused, not read as this one."""
    if not isinstance(body.get("model", ""), str):
        raise _bad(api, "model must be a string")
    if not isinstance(body.get("stream", False), bool):
        raise _bad(api, "stream must be a boolean")
    if api in (OPENAI_CHAT, ANTHROPIC_MESSAGES):
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _bad(api, "messages must be a list of message objects")
    elif api == OPENAI_COMPLETIONS:
        if not isinstance(body.get("prompt"), (str, list)):
            raise _bad(api, "prompt must be a string or a list")
    elif api == OPENAI_EMBEDDINGS:
        if not isinstance(body.get("input"), (str, list)):
            raise _bad(api, "input must be a string or a list")
    elif api == OPENAI_RESPONSES:
        if "input" in body and not isinstance(body["input"], (str, list)):
            raise _bad(api, "input must be a string or a list")
        if "input" not in body and "prompt" not in body:
            raise _bad(api, "input is required")


def parse_request(ctx: RequestContext, max_bytes: int = 4 << 20) -> LlmRequest:
    api = api_for_path(ctx.request.path)
    if api is None:
        raise _bad(OPENAI_CHAT, "this path is not an LLM API the gateway can inspect")
    content_type = ctx.request.headers.get("content-type", "")
    if not content_type.split(";", 1)[0].strip().lower() == "application/json":
        raise _bad(api, "content-type must be application/json", 415)
    raw = _decode(ctx, api, max_bytes)
    if not raw.strip():
        raise _bad(api, "a request body is required")
    try:
        body = loads_strict(raw, max_depth=None)  # walk_texts bounds the depth itself, on the way
    except StrictJsonError as exc:
        raise _bad(api, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad(api, "body must be a JSON object")
    _check_shape(api, body)
    limits = [
        v for v in (_bounded_int(api, body, n, 0, MAX_COMPLETION_TOKENS) for n in _COMPLETION_LIMITS) if v is not None
    ]
    counts = [v for v in (_bounded_int(api, body, n, 1, MAX_CHOICES) for n in _CHOICE_COUNTS) if v is not None]
    request = LlmRequest(
        api=api,
        body=body,
        model=body.get("model"),
        stream=body.get("stream") is True,
        max_tokens=max(limits) if limits else None,
        choices=max(counts, default=1),
    )
    walk_texts(api, body, request)
    return request


def llm_request(ctx: RequestContext, max_bytes: int = 4 << 20) -> LlmRequest:
    """The parsed request, parsed on first use; raises LlmRequestError."""
    cached = ctx.established.llm_request
    if cached is None:
        cached = ctx.established.llm_request = parse_request(ctx, max_bytes)
        audit.note(ctx, "llm.api", cached.api)
        audit.note(ctx, "llm.stream", cached.stream)
        if cached.model is not None:
            audit.note(ctx, "llm.model", cached.model)
    return cached


def mark_changed(ctx: RequestContext, request: LlmRequest) -> None:
    """Forward the (edited) parsed request as the body. Runs once per phase,
    after the phase's edits were applied (``LlmRequest.replace``)."""
    ctx.replace_request_body(request.serialize())
    if ctx.established.llm_body_decoded:
        ctx.remove_request_header("content-encoding")


# -- the walk over every string --------------------------------------------


def message_role(value: Any) -> str:
    if not isinstance(value, str):
        return "user"
    return _ROLES.get(value.strip().lower(), "user")


def _binary_media(holder: dict[str, Any], key: Any, text: str) -> bool:
    """Base64 images/audio/files: no text a guard could read. Text documents
    (``media_type: text/plain``) are text and are scanned."""
    if text.startswith("data:"):
        header = text[5:64].split(",", 1)[0].lower()
        return ";base64" in header and not header.startswith("text/")
    if key in ("data", "file_data"):
        media = holder.get("media_type") or holder.get("format") or holder.get("mime_type") or ""
        return isinstance(media, str) and not media.lower().startswith("text/")
    return False


def _embedded_json(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        value = loads_strict(text, max_depth=MAX_DEPTH)
    except StrictJsonError:
        return None  # not JSON: scanned as plain text
    return value if isinstance(value, (dict, list)) else None


def walk_texts(api: str, body: dict[str, Any], request: LlmRequest) -> None:
    """Append a slot for every string of ``body`` the model may read.

    Inside free-form data (tool-call arguments, a tool use's input, template
    variables) nothing is structure: every key and every string is a slot,
    whatever its name (an argument called ``id`` is still data)."""
    # (container, key, role, depth, embedded document, is a message list item, free-form)
    stack: list[tuple[Any, Any, str, int, _Embedded | None, bool, bool]] = []
    for key in reversed(list(body)):
        role = "system" if key in _SYSTEM_FIELDS else "user"
        stack.append((body, key, role, 1, None, False, key in _FREE_FORM_FIELDS))
    slots = request.slots
    while stack:
        holder, key, role, depth, embedded, is_message, free = stack.pop()
        value = holder[key]
        if isinstance(value, str):
            if not free and isinstance(holder, dict) and (key in NON_TEXT_KEYS or _binary_media(holder, key, value)):
                continue
            if key == "arguments" and depth < MAX_DEPTH:
                inner = _embedded_json(value)
                if inner is not None:
                    doc = _Embedded(holder, key, inner)
                    request.embedded.append(doc)
                    stack.append(({"_": inner}, "_", role, depth + 1, doc, False, True))
                    continue
            slots.append(TextSlot(role, holder, key, embedded))
            if len(slots) > MAX_TEXT_PARTS:
                raise _bad(api, "the request has too many text parts")
            continue
        if depth >= MAX_DEPTH:
            if isinstance(value, (dict, list)) and value:
                raise _bad(api, "the request is nested too deeply")
            continue
        if isinstance(value, dict):
            if is_message:
                role = message_role(value.get("role")) if "role" in value else role
            if free or not value.keys() <= API_FIELDS:  # the usual message holds only API fields
                slots.extend(
                    TextSlot(role, value, k, embedded, is_key=True) for k in value if free or k not in API_FIELDS
                )
                if len(slots) > MAX_TEXT_PARTS:
                    raise _bad(api, "the request has too many text parts")
            kind = value.get("type")
            tool = isinstance(kind, str) and (kind in _TOOL_TYPES or kind.endswith(("_call", "_call_output")))
            if tool:
                role = "tool"  # only ever towards a role every default scans
            for k in reversed(list(value)):
                child_free = free or k in _FREE_FORM_FIELDS or (tool and k == "input")
                stack.append(
                    (value, k, "tool" if k in _TOOL_CALL_FIELDS else role, depth + 1, embedded, False, child_free)
                )
        elif isinstance(value, list):
            items_are_messages = depth == 1 and key in _MESSAGE_LISTS
            for i in range(len(value) - 1, -1, -1):
                stack.append((value, i, role, depth + 1, embedded, items_are_messages, free))
