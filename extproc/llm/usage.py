"""Token accounting for LLM exchanges: an estimate before the model runs,
the real ``usage`` after.

The estimate is deliberately simple and pessimistic (about four characters
per token, plus the completion the request allows): it only has to bound a
reservation, which reconciliation corrects from the model's own ``usage``.
"""

from __future__ import annotations

import json
from typing import Any

from extproc.encodings import decoder_for
from extproc.llm.request import ANTHROPIC_MESSAGES, LlmRequest
from extproc.llm.response import usage_of
from extproc.sse import SseEvent, SseSplitter

CHARS_PER_TOKEN = 4


def estimate_prompt_tokens(request: LlmRequest) -> int:
    chars = sum(len(slot.text) for slot in request.slots)
    messages = sum(1 for slot in request.slots if not slot.is_key)
    return chars // CHARS_PER_TOKEN + 4 * max(1, messages)


# What an upstream may report for one exchange before we stop believing it:
# far beyond any real model, small enough for exact budget arithmetic.
MAX_REPORTED_TOKENS = 1 << 30


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return min(max(value, 0), MAX_REPORTED_TOKENS)


def normalize_usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    """OpenAI (prompt/completion), Responses and Anthropic (input/output)
    shapes. Counts are clamped to ``[0, MAX_REPORTED_TOKENS]``: a negative
    or absurd ``usage`` from the upstream can neither refund nor overflow a
    budget."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
    completion = _count(usage.get("completion_tokens", usage.get("output_tokens")))
    if prompt is None and completion is None:
        return None
    prompt, completion = prompt or 0, completion or 0
    return {"prompt": prompt, "completion": completion, "total": prompt + completion}


def _string_chars(value: object) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_string_chars(v) for k, v in value.items() if k not in ("type", "id", "index", "role"))
    if isinstance(value, list):
        return sum(_string_chars(v) for v in value)
    return 0


def _generated_chars(event: dict[str, Any]) -> int:
    """Characters of generated text in one streamed event, whatever is
    generated (content, reasoning, tool-call arguments): what is charged
    when the stream reports no usage."""
    chars = 0
    for choice in event.get("choices") or ():
        if isinstance(choice, dict):
            chars += _string_chars(choice.get("delta")) + _string_chars(choice.get("text"))
    delta = event.get("delta")  # Responses: a string; Anthropic: a typed object
    if isinstance(delta, str) or (isinstance(delta, dict) and event.get("type") == "content_block_delta"):
        chars += _string_chars(delta)
    return chars


def _answer_chars(body: dict[str, Any]) -> int:
    """Characters of generated text in a whole JSON answer: what is charged
    when the answer reports no usage, as for streams."""
    chars = 0
    for choice in body.get("choices") or ():  # chat (message) and completions (text)
        if isinstance(choice, dict):
            chars += _string_chars(choice.get("message")) + _string_chars(choice.get("text"))
    for key in ("content", "output"):  # Anthropic content blocks; Responses output items
        if isinstance(body.get(key), list):
            chars += _string_chars(body[key])
    return chars


class UsageTracker:
    """Reads the real usage out of a response as it streams past, without
    holding the stream: JSON bodies are kept (bounded) until complete; SSE
    events are scanned one by one. Anthropic streams report input tokens in
    ``message_start`` and output tokens in ``message_delta``."""

    def __init__(self, api: str, streaming: bool, max_bytes: int = 8 << 20, encoding: str = ""):
        self.api, self.streaming, self.max_bytes = api, streaming, max_bytes
        # A compressed response is read through a decompressor; one we cannot
        # decode leaves the usage unknown and ``unreadable`` set.
        self._inflate = decoder_for(encoding, max_bytes) if encoding else None
        self.unreadable = bool(encoding) and self._inflate is None
        self._json_parts: list[bytes] = []
        self._size = 0
        self._splitter = SseSplitter() if streaming else None
        self._anthropic: dict[str, int] = {}
        self.completion_chars = 0
        self.usage: dict[str, int] | None = None
        self.model: str | None = None  # the model that answered, for the audit record

    def feed(self, chunk: bytes, end: bool) -> None:
        if self.unreadable:
            return
        if self._inflate is not None:
            try:
                chunk = self._inflate.feed(chunk, end)
            except ValueError:
                self.unreadable = True
                return
        if self._splitter is None:
            self._size += len(chunk)
            if self._size <= self.max_bytes:
                self._json_parts.append(chunk)
            if end:
                # A body too large to keep, or one we cannot read, leaves the
                # reservation standing: charging the prompt alone would let an
                # upstream that answers oddly spend no budget.
                if self._size > self.max_bytes:
                    self.unreadable = True
                    return
                try:
                    body = json.loads(b"".join(self._json_parts))
                except (ValueError, RecursionError):  # not JSON, or JSON we refuse to read
                    self.unreadable = True
                    return
                self.usage = normalize_usage(usage_of(body))
                self._note_model(body)
                if self.usage is None and isinstance(body, dict):
                    try:
                        self.completion_chars = _answer_chars(body)
                    except RecursionError:
                        self.unreadable = True
            return
        try:
            blocks = self._splitter.feed(chunk)
        except ValueError:
            return  # an event too large to read: usage stays unknown, the estimate stands
        for block in blocks:
            self._event(SseEvent(block).data)

    def _event(self, data: str | None) -> None:
        if not data or data == "[DONE]":
            return
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            return
        if not isinstance(payload, dict):
            return
        self._note_model(payload)
        try:
            self.completion_chars += _generated_chars(payload)
        except RecursionError:
            pass  # absurdly nested: not generated text
        if self.api == ANTHROPIC_MESSAGES:
            message = payload.get("message") if isinstance(payload.get("message"), dict) else payload
            usage = message.get("usage") if isinstance(message, dict) else None
            for key in ("input_tokens", "output_tokens"):
                value = usage.get(key) if isinstance(usage, dict) else None
                if isinstance(value, int):
                    self._anthropic[key] = value
            if self._anthropic:
                self.usage = normalize_usage(dict(self._anthropic))
            return
        found = normalize_usage(usage_of(payload))
        if found is not None:
            self.usage = found

    def _note_model(self, body: object) -> None:
        if self.model is not None or not isinstance(body, dict):
            return
        for holder in (body, body.get("message"), body.get("response")):  # chat/Anthropic/Responses shapes
            if isinstance(holder, dict) and isinstance(holder.get("model"), str):
                self.model = holder["model"][:128]
                return
