"""A mock OpenAI-compatible (and Anthropic Messages) model for the demo and
the tests. It "answers" by echoing the prompt it received, so a user sees
exactly what the model saw after the gateway's guards: placeholders instead
of emails, no blocked prompt at all. Streaming responses come in small
deltas, so values split across chunks are exercised for real."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

DELTA_SIZE = 7  # characters per streamed delta: small, to split values across chunks


def _last_user_text(body: dict[str, Any]) -> str:
    for field in ("prompt", "input"):
        value = body.get(field)
        if isinstance(value, str):
            return value
    for message in reversed(body.get("messages") or body.get("input") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _usage(prompt: str, completion: str) -> dict[str, Any]:
    prompt_tokens, completion_tokens = max(1, len(prompt) // 4), max(1, len(completion) // 4)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def answer(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any] | None, list[bytes] | None]:
    """(status, JSON body) for a plain response or (200, None, SSE events) for a stream."""
    model = body.get("model") or "demo"
    prompt = _last_user_text(body)
    reply = f"You said: {prompt}"
    created, rid = int(time.time()), "chatcmpl-" + uuid.uuid4().hex[:12]
    usage = _usage(prompt, reply)
    deltas = [reply[i : i + DELTA_SIZE] for i in range(0, len(reply), DELTA_SIZE)]

    if path.endswith("/embeddings"):
        given = body.get("input")
        inputs: list[Any] = given if isinstance(given, list) else [given]
        return (
            200,
            {
                "object": "list",
                "model": model,
                "usage": usage,
                "data": [
                    {"object": "embedding", "index": i, "embedding": [0.0, 0.1, 0.2]} for i, _ in enumerate(inputs)
                ],
            },
            None,
        )
    if path.endswith("/messages"):
        if not body.get("stream"):
            return (
                200,
                {
                    "id": rid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": reply}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"]},
                },
                None,
            )
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {"id": rid, "type": "message", "role": "assistant", "model": model, "content": []},
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
        ]
        events += [
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": d}},
            )
            for d in deltas
        ]
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": usage["completion_tokens"]},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return 200, None, [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        if not body.get("stream"):
            return (
                200,
                {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "text": reply, "finish_reason": "stop"}],
                    "usage": usage,
                },
                None,
            )
        chunks = [
            {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": d, "finish_reason": None}],
            }
            for d in deltas
        ]
        chunks.append(
            {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
            }
        )
        return 200, None, [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]

    # chat completions (default)
    if not body.get("stream"):
        return (
            200,
            {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": usage,
            },
            None,
        )
    base = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    chunks += [{**base, "choices": [{"index": 0, "delta": {"content": d}, "finish_reason": None}]} for d in deltas]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage})
    return 200, None, [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]
