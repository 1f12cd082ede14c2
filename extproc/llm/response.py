"""Rewriting LLM response text as it streams through.

A ``TextTransform`` (a PII sanitizer, a pseudonym restorer...) sees each
generated text stream as a sequence of deltas and may hold some back (a
value split across two deltas must be judged whole).

Coverage is structural, as on the request side: every string of the
response is transformed except the fields known not to be model output
(``NON_TEXT_KEYS``: ids, enum tags, the model name), whatever the API or
shape that arrives (a ``/v1/responses`` path answered in chat shape is still
rewritten). A body that is not JSON at all is transformed as text.

* JSON bodies are held until complete (Envoy streams them in chunks), then
  every string is transformed in one go; a JSON document inside a string
  (tool-call ``arguments``) is transformed string by string and stays JSON.
* SSE streams are rewritten event by event. The fields that carry a
  *fragment* of a longer text (chat ``delta`` content and tool-call
  arguments, completions ``text``, Anthropic ``content_block_delta``,
  Responses ``*.delta``) run through one transform per text stream; every
  other string of an event is complete and is transformed on its own. Text a
  transform holds back is released into the stream's closing event
  (``finish_reason`` chunk, ``content_block_stop``, ``*.done``) or, at the
  latest, before ``[DONE]``/the end of the body: streaming stays streaming
  and nothing is lost or leaked.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any, Protocol

from extproc.jsonstrict import StrictJsonError, loads_strict
from extproc.llm.fields import API_FIELDS
from extproc.sse import SseEvent, SseSplitter, encode


class TextTransform(Protocol):
    def feed(self, text: str) -> str: ...
    def flush(self) -> str: ...


TransformFactory = Callable[[], TextTransform]

# Strings that are not model output: ids, enum tags, names of things.
NON_TEXT_KEYS = frozenset(
    {
        "id",
        "object",
        "model",
        "role",
        "type",
        "finish_reason",
        "stop_reason",
        "status",
        "system_fingerprint",
        "call_id",
        "item_id",
        "tool_call_id",
        "tool_use_id",
        "service_tier",
        "signature",
        "previous_response_id",
        "created_at",
        "event",
    }
)
# Chat/completions ``choices[]`` fields that carry fragments of a text stream.
_FRAGMENT_KEYS = frozenset({"content", "text", "arguments", "reasoning_content", "reasoning", "refusal"})
# Anthropic ``content_block_delta`` fields and the delta type that carries each.
_ANTHROPIC_FRAGMENTS = {"text": "text_delta", "partial_json": "input_json_delta", "thinking": "thinking_delta"}
_RESPONSES_IDS = ("item_id", "output_index", "content_index", "summary_index")
# Objects that are data through and through (see ``transform_strings``).
_FREE_FORM = frozenset({"arguments", "variables"})
_TOOL_USE_TYPES = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def _one_shot(make: TransformFactory, text: str) -> str:
    transform = make()
    return transform.feed(text) + transform.flush()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def transform_strings(
    value: Any, make: TransformFactory, skip: set[tuple[int, Any]] | None = None, free: bool = False
) -> None:
    """Transform in place every string of ``value`` that is model output, and
    every object key that is data rather than an API field. ``skip``:
    (id(holder), key) pairs already handled as stream fragments. Inside
    free-form data (tool-call arguments, a tool use's input) every string and
    key is model output, whatever its name."""
    stack: list[tuple[Any, Any, bool]] = []
    if isinstance(value, dict):
        _transform_keys(value, make, free)
        stack.extend((value, k, free or k in _FREE_FORM) for k in value)
    elif isinstance(value, list):
        stack.extend((value, i, free) for i in range(len(value)))
    while stack:
        holder, key, inside = stack.pop()
        item = holder[key]
        if isinstance(item, str):
            if skip and (id(holder), key) in skip:
                continue
            if not inside and isinstance(holder, dict) and key in NON_TEXT_KEYS:
                continue
            holder[key] = _transform_text(item, make, embedded=key == "arguments")
        elif isinstance(item, dict):
            _transform_keys(item, make, inside)
            tool_use = item.get("type") in _TOOL_USE_TYPES
            stack.extend((item, k, inside or k in _FREE_FORM or (tool_use and k == "input")) for k in item)
        elif isinstance(item, list):
            stack.extend((item, i, inside) for i in range(len(item)))


def _transform_keys(holder: dict[str, Any], make: TransformFactory, free: bool) -> None:
    """Keys that are data (a tool argument's name...) are model output too;
    renamed in place, order kept, never merged."""
    renamed = {}
    for key in holder:
        if isinstance(key, str) and (free or key not in API_FIELDS):
            new = _one_shot(make, key)
            if new != key:
                renamed[key] = new
    if not renamed:
        return
    items = list(holder.items())
    holder.clear()
    for key, item in items:
        base = new = renamed.get(key, key)
        n = 2
        while new in holder:
            new, n = f"{base}_{n}", n + 1
        holder[new] = item


def _transform_text(text: str, make: TransformFactory, embedded: bool) -> str:
    if embedded and text.lstrip().startswith(("{", "[")):
        try:
            inner = loads_strict(text)
        except StrictJsonError:
            inner = None
        if isinstance(inner, (dict, list)):
            before = _dumps(inner)
            transform_strings(inner, make, free=True)
            after = _dumps(inner)
            return text if after == before else after  # still JSON: each string was transformed alone
    return _one_shot(make, text)


# -- JSON ------------------------------------------------------------------


class JsonRewriter:
    """Holds a JSON response body until it is complete, then transforms it."""

    def __init__(self, api: str, make: TransformFactory, max_bytes: int = 8 << 20):
        self.api, self.make, self.max_bytes = api, make, max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self.body: dict[str, Any] | None = None

    def feed(self, chunk: bytes, end: bool) -> bytes:
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise ValueError("response body over the inspection limit")
        if not end:
            return b""
        raw = b"".join(self._parts)
        try:
            body = loads_strict(raw)
        except StrictJsonError:
            # Not JSON (an error page, plain text): transformed as text. Bytes
            # that are not UTF-8 (a compressed body) hold no text to find.
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
            return _one_shot(self.make, text).encode("utf-8")
        if isinstance(body, str):
            return _dumps(_one_shot(self.make, body)).encode()
        if isinstance(body, dict):
            self.body = body
        transform_strings(body, self.make)
        return _dumps(body).encode()


# -- SSE -------------------------------------------------------------------


def _put(root: dict[str, Any], path: tuple[Any, ...], text: str) -> None:
    """Append ``text`` at ``path`` under ``root``, creating what is missing.
    A ``("#", n)`` step is the list item whose ``index`` is n."""
    holder: Any = root
    for step, nxt in itertools.pairwise(path):
        if isinstance(step, tuple):
            item = next((x for x in holder if isinstance(x, dict) and x.get("index") == step[1]), None)
            if item is None:
                item = {"index": step[1]}
                holder.append(item)
            holder = item
        else:
            child = holder.get(step)
            if not isinstance(child, (dict, list)):
                child = holder[step] = [] if isinstance(nxt, tuple) else {}
            holder = child
    last = path[-1]
    holder[last] = (holder.get(last) if isinstance(holder.get(last), str) else "") + text


class SseRewriter:
    """Rewrites an SSE stream of an LLM API, event by event, whatever its shape."""

    def __init__(self, api: str, make: TransformFactory, max_pending: int = 1 << 20):
        self.api, self.make = api, make
        self._splitter = SseSplitter(max_pending)
        # stream key -> (transform, how to emit released text as an event at the end)
        self._streams: dict[Any, tuple[TextTransform, Callable[[str], str]]] = {}
        self.last_json: dict[str, Any] | None = None
        self.usage: dict[str, Any] | None = None

    def _feed(self, key: Any, text: str, emit: Callable[[str], str]) -> str:
        entry = self._streams.get(key)
        if entry is None:
            entry = self._streams[key] = (self.make(), emit)
        return entry[0].feed(text)

    def _release(self, key: Any) -> str:
        entry = self._streams.pop(key, None)
        return entry[0].flush() if entry is not None else ""

    def feed(self, chunk: bytes, end: bool) -> bytes:
        out = [self._event(block) for block in self._splitter.feed(chunk)]
        if end:
            tail = self._finish()
            rest = self._splitter.take_rest()
            if rest:
                out.append(self._event(rest))
            out.extend(tail)
        return encode(out)

    def _event(self, block: str) -> str:
        event = SseEvent(block)
        if event.data is None:
            return block
        if event.data.strip() == "[DONE]":
            return "\n\n".join([*self._finish(), block])
        try:
            data = loads_strict(event.data)
        except StrictJsonError:
            return event.with_data(_one_shot(self.make, event.data))  # not JSON: text
        if isinstance(data, dict):
            self.last_json = data
            usage = usage_of(data)
            if usage is not None:
                self.usage = usage
        skip: set[tuple[int, Any]] = set()
        prefix = self._fragments(data, skip) if isinstance(data, dict) else []
        transform_strings(data, self.make, skip)
        return "\n\n".join([*prefix, event.with_data(_dumps(data))])

    def _fragments(self, data: dict[str, Any], skip: set[Any]) -> list[str]:
        """Run the event's stream fragments through their streams' transforms
        (in place); return events to emit before this one."""
        prefix: list[str] = []
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self._choice(data, choice, skip)
        kind = data.get("type")
        if not isinstance(kind, str):
            return prefix
        delta = data.get("delta")
        index = data.get("index", 0)
        if kind == "content_block_delta" and isinstance(delta, dict):
            for name in _ANTHROPIC_FRAGMENTS:
                if isinstance(delta.get(name), str):
                    key = ("block", _hashable(index), name)
                    delta[name] = self._feed(key, delta[name], _anthropic_emitter(index, name))
                    skip.add((id(delta), name))
        elif kind == "content_block_stop":
            for name in _ANTHROPIC_FRAGMENTS:
                released = self._release(("block", _hashable(index), name))
                if released:
                    prefix.append(_anthropic_emitter(index, name)(released))
        elif kind.endswith(".delta") and isinstance(delta, str):
            ids = {k: data[k] for k in _RESPONSES_IDS if k in data}
            key = ("resp", kind[:-6], *(_hashable(v) for v in ids.values()))
            data["delta"] = self._feed(key, delta, _responses_emitter(kind, ids))
            skip.add((id(data), "delta"))
        elif kind.endswith(".done"):
            ids = {k: data[k] for k in _RESPONSES_IDS if k in data}
            delta_kind = kind[:-5] + ".delta"
            released = self._release(("resp", kind[:-5], *(_hashable(v) for v in ids.values())))
            if released:
                prefix.append(_responses_emitter(delta_kind, ids)(released))
        return prefix

    def _choice(self, data: dict[str, Any], choice: dict[str, Any], skip: set[Any]) -> None:
        index = _hashable(choice.get("index", 0))
        emit = self._chat_emitter(index)
        found: list[tuple[tuple[Any, ...], Any, Any]] = []  # (path from the choice, holder, key)
        if isinstance(choice.get("text"), str):
            found.append((("text",), choice, "text"))
        delta = choice.get("delta")
        if isinstance(delta, dict):
            stack: list[tuple[tuple[Any, ...], Any]] = [(("delta",), delta)]
            while stack:
                path, holder = stack.pop()
                for key, value in list(holder.items()) if isinstance(holder, dict) else ():
                    if isinstance(value, str) and key in _FRAGMENT_KEYS:
                        found.append(((*path, key), holder, key))
                    elif isinstance(value, dict):
                        stack.append(((*path, key), value))
                    elif isinstance(value, list):
                        for n, item in enumerate(value):
                            if isinstance(item, dict):
                                stack.append(((*path, key, ("#", _hashable(item.get("index", n)))), item))
        for path, holder, key in found:
            holder[key] = self._feed(("choice", index, path), holder[key], emit(path))
            skip.add((id(holder), key))
        if choice.get("finish_reason") is not None:
            for stream_key in [k for k in self._streams if k[:2] == ("choice", index)]:
                released = self._release(stream_key)
                if released:
                    _put(choice, stream_key[2], released)

    def _chat_emitter(self, index: Any) -> Callable[[tuple[Any, ...]], Callable[[str], str]]:
        def for_path(path: tuple[Any, ...]) -> Callable[[str], str]:
            def emit(released: str) -> str:
                base = copy.deepcopy(self.last_json) if self.last_json else {}
                choice: dict[str, Any] = {"index": index, "finish_reason": None}
                _put(choice, path, released)
                base["choices"] = [choice]
                base.pop("usage", None)
                return "data: " + _dumps(base)

            return emit

        return for_path

    def _finish(self) -> list[str]:
        """End of stream: release whatever any stream still holds."""
        events = []
        for key in list(self._streams):
            emit = self._streams[key][1]
            released = self._release(key)
            if released:
                events.append(emit(released))
        return events


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _anthropic_emitter(index: Any, name: str) -> Callable[[str], str]:
    def emit(released: str) -> str:
        payload = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": _ANTHROPIC_FRAGMENTS[name], name: released},
        }
        return "event: content_block_delta\ndata: " + _dumps(payload)

    return emit


def _responses_emitter(kind: str, ids: dict[str, Any]) -> Callable[[str], str]:
    def emit(released: str) -> str:
        payload = {"type": kind, **ids, "delta": released}
        return f"event: {kind}\ndata: " + _dumps(payload)

    return emit


def usage_of(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if isinstance(usage, dict):
        return usage
    for nested in ("response", "message"):  # Responses `response.completed`, Anthropic `message_start`
        if isinstance(body.get(nested), dict):
            found = usage_of(body[nested])
            if found is not None:
                return found
    return None
