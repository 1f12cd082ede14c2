"""Rewriting LLM response text as it streams through.

A ``TextTransform`` (a PII sanitizer, a pseudonym restorer...) sees each
generated text stream as a sequence of deltas and may hold some back (a
value split across two deltas must be judged whole). These rewriters find the
generated text in each API's JSON or SSE shape, run one transform per text
stream (per choice / content block), and put the result back, keeping the
event structure valid:

* JSON bodies are held until complete (Envoy streams them in chunks), then
  every text field is transformed in one go;
* SSE streams are rewritten event by event: a complete event is emitted as
  soon as it arrives, with whatever text its transform releases; held-back
  text is released into the stream's final event (``finish_reason`` chunk,
  Anthropic ``content_block_stop``, Responses ``output_text.done``), so
  streaming stays streaming and nothing is lost or leaked.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, Protocol

from extproc.sse import SseEvent, SseSplitter, encode
from extproc.llm.request import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_RESPONSES


class TextTransform(Protocol):
    def feed(self, text: str) -> str: ...
    def flush(self) -> str: ...


TransformFactory = Callable[[], TextTransform]


def _one_shot(make: TransformFactory, text: str) -> str:
    transform = make()
    return transform.feed(text) + transform.flush()


# -- JSON ------------------------------------------------------------------

def _json_text_slots(api: str, body: dict) -> list[tuple[Any, Any]]:
    slots: list[tuple[Any, Any]] = []

    def add(holder: Any, key: Any) -> None:
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            slots.append((holder, key))

    if api == ANTHROPIC_MESSAGES:
        for block in body.get("content") or ():
            add(block, "text")
    elif api == OPENAI_RESPONSES:
        for item in body.get("output") or ():
            for part in (item.get("content") or ()) if isinstance(item, dict) else ():
                add(part, "text")
        add(body, "output_text")
    else:
        for choice in body.get("choices") or ():
            if isinstance(choice, dict):
                add(choice.get("message"), "content")
                add(choice, "text")
    return slots


class JsonRewriter:
    """Holds a JSON response body until it is complete, then transforms it."""

    def __init__(self, api: str, make: TransformFactory, max_bytes: int = 8 << 20):
        self.api, self.make, self.max_bytes = api, make, max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self.body: dict | None = None

    def feed(self, chunk: bytes, end: bool) -> bytes:
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self.max_bytes:
            raise ValueError("response body over the inspection limit")
        if not end:
            return b""
        raw = b"".join(self._parts)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return raw  # not JSON after all: nothing we could have found text in
        if not isinstance(body, dict):
            return raw
        self.body = body
        for holder, key in _json_text_slots(self.api, body):
            holder[key] = _one_shot(self.make, holder[key])
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# -- SSE -------------------------------------------------------------------

class SseRewriter:
    """Rewrites an SSE stream of an LLM API, event by event."""

    def __init__(self, api: str, make: TransformFactory, max_pending: int = 1 << 20):
        self.api, self.make = api, make
        self._splitter = SseSplitter(max_pending)
        self._streams: dict[Any, TextTransform] = {}
        self.last_json: dict | None = None  # the final data object (usage lives there)
        self.usage: dict | None = None

    def _stream(self, key: Any) -> TextTransform:
        transform = self._streams.get(key)
        if transform is None:
            transform = self._streams[key] = self.make()
        return transform

    def _release(self, key: Any) -> str:
        transform = self._streams.pop(key, None)
        return transform.flush() if transform is not None else ""

    def feed(self, chunk: bytes, end: bool) -> bytes:
        out = [self._event(block) for block in self._splitter.feed(chunk)]
        if end:
            tail = self._finish()
            rest = self._splitter.take_rest()
            if rest:
                out.append(rest)
            out.extend(tail)
        return encode(out)

    def _event(self, block: str) -> str:
        event = SseEvent(block)
        if event.data is None:
            return block
        if event.data.strip() == "[DONE]":
            return "\n\n".join([*self._finish(), block])
        try:
            data = json.loads(event.data)
        except json.JSONDecodeError:
            return block
        if not isinstance(data, dict):
            return block
        self.last_json = data
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        prefix = self._rewrite(data)
        rewritten = event.with_data(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        return "\n\n".join([*prefix, rewritten])

    def _rewrite(self, data: dict) -> list[str]:
        """Transform ``data`` in place; return events to emit before it."""
        if self.api in (OPENAI_CHAT, OPENAI_COMPLETIONS):
            field = "text" if self.api == OPENAI_COMPLETIONS else None
            for choice in data.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                key = ("choice", choice.get("index", 0))
                holder, name = (choice, "text") if field else (choice.get("delta"), "content")
                text = holder.get(name) if isinstance(holder, dict) else None
                released = self._stream(key).feed(text) if isinstance(text, str) else ""
                if choice.get("finish_reason") is not None:
                    released += self._release(key)
                if isinstance(holder, dict) and (isinstance(text, str) or released):
                    holder[name] = released
                elif released and not field:
                    choice["delta"] = {"content": released}
            return []
        if self.api == ANTHROPIC_MESSAGES:
            kind = data.get("type")
            key = ("block", data.get("index", 0))
            delta = data.get("delta")
            if kind == "content_block_delta" and isinstance(delta, dict) and isinstance(delta.get("text"), str):
                delta["text"] = self._stream(key).feed(delta["text"])
            elif kind == "content_block_stop" and key in self._streams:
                released = self._release(key)
                if released:
                    extra = {"type": "content_block_delta", "index": data.get("index", 0),
                             "delta": {"type": "text_delta", "text": released}}
                    return [f"event: content_block_delta\ndata: {json.dumps(extra, ensure_ascii=False)}"]
            return []
        if self.api == OPENAI_RESPONSES:
            kind = data.get("type")
            key = ("item", data.get("item_id"), data.get("content_index", 0))
            if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
                data["delta"] = self._stream(key).feed(data["delta"])
            elif kind == "response.output_text.done":
                released = self._release(key)
                if isinstance(data.get("text"), str):
                    data["text"] = _one_shot(self.make, data["text"])
                if released:
                    extra = {**{k: v for k, v in data.items() if k != "text"},
                             "type": "response.output_text.delta", "delta": released}
                    return [f"event: response.output_text.delta\ndata: {json.dumps(extra, ensure_ascii=False)}"]
            elif kind in ("response.completed", "response.done") and isinstance(data.get("response"), dict):
                for holder, name in _json_text_slots(OPENAI_RESPONSES, data["response"]):
                    holder[name] = _one_shot(self.make, holder[name])
                if isinstance(data["response"].get("usage"), dict):
                    self.usage = data["response"]["usage"]
        return []

    def _finish(self) -> list[str]:
        """End of stream: release whatever any stream still holds."""
        events = []
        for key in list(self._streams):
            released = self._release(key)
            if not released:
                continue
            if self.api == ANTHROPIC_MESSAGES:
                payload = {"type": "content_block_delta", "index": key[1],
                           "delta": {"type": "text_delta", "text": released}}
                events.append(f"event: content_block_delta\ndata: {json.dumps(payload, ensure_ascii=False)}")
            elif self.api == OPENAI_RESPONSES:
                payload = {"type": "response.output_text.delta", "item_id": key[1], "content_index": key[2],
                           "delta": released}
                events.append(f"event: response.output_text.delta\ndata: {json.dumps(payload, ensure_ascii=False)}")
            else:
                base = copy.deepcopy(self.last_json) if self.last_json else {}
                choice: dict[str, Any] = {"index": key[1], "finish_reason": None}
                if self.api == OPENAI_COMPLETIONS:
                    choice["text"] = released
                else:
                    choice["delta"] = {"content": released}
                base["choices"] = [choice]
                base.pop("usage", None)
                events.append("data: " + json.dumps(base, ensure_ascii=False, separators=(",", ":")))
        return events


def usage_of(body: dict | None) -> dict | None:
    if not isinstance(body, dict):
        return None
    usage = body.get("usage")
    if isinstance(usage, dict):
        return usage
    response = body.get("response")
    return usage_of(response) if isinstance(response, dict) else None
