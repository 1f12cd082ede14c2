import gzip
import json
import zlib

import pytest

from extproc.llm.request import (
    ANTHROPIC_MESSAGES,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_EMBEDDINGS,
    OPENAI_RESPONSES,
    LlmRequestError,
    llm_request,
    mark_changed,
)
from tests import builders


def ctx_for(path, body, headers=None):
    return builders.context(None, "POST", path, {**builders.JSON, **(headers or {})}, body=body)


def test_chat_messages_by_role_with_parts():
    ctx = ctx_for(
        "/v1/chat/completions",
        {
            "model": "gpt-4o",
            "stream": True,
            "max_tokens": 64,
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]},
                {"role": "assistant", "content": "hello"},
                {"role": "tool", "content": "tool says"},
            ],
        },
    )
    req = llm_request(ctx)
    assert (req.api, req.model, req.stream, req.max_tokens) == (OPENAI_CHAT, "gpt-4o", True, 64)
    assert [(s.role, s.text) for s in req.slots] == [
        ("system", "be brief"),
        ("user", "hi"),
        ("assistant", "hello"),
        ("tool", "tool says"),
    ]
    assert [s.text for s in req.texts(frozenset({"user", "tool"}))] == ["hi", "tool says"]


def test_slots_rewrite_the_body_and_only_the_prompt():
    ctx = ctx_for(
        "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "a@b.c"}], "temperature": 0.5}
    )
    req = llm_request(ctx)
    req.replace(ctx, req.slots[0], "[EMAIL_1]")  # outside a pipeline run: applied at once
    assert ctx.request_body_replaced
    assert json.loads(ctx.request_body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "[EMAIL_1]"}],
        "temperature": 0.5,
    }


@pytest.mark.parametrize(
    "path, body, api, expected",
    [
        ("/v1/completions", {"model": "m", "prompt": ["a", "b"]}, OPENAI_COMPLETIONS, [("user", "a"), ("user", "b")]),
        ("/v1/embeddings", {"model": "m", "input": "x"}, OPENAI_EMBEDDINGS, [("user", "x")]),
        (
            "/v1/responses",
            {
                "model": "m",
                "instructions": "sys",
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "q"}]},
                    {"type": "function_call_output", "call_id": "c", "output": "tool out"},
                ],
            },
            OPENAI_RESPONSES,
            [("system", "sys"), ("user", "q"), ("tool", "tool out")],
        ),
        (
            "/v1/messages",
            {
                "model": "claude",
                "max_tokens": 5,
                "system": "sys",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "q"},
                            {"type": "tool_result", "tool_use_id": "t", "content": "res"},
                        ],
                    }
                ],
            },
            ANTHROPIC_MESSAGES,
            [("system", "sys"), ("user", "q"), ("tool", "res")],
        ),
    ],
)
def test_other_apis(path, body, api, expected):
    req = llm_request(ctx_for(path, body))
    assert req.api == api
    assert [(s.role, s.text) for s in req.slots] == expected


def test_gzip_bodies_are_decoded_and_the_encoding_header_dropped():
    ctx = ctx_for(
        "/v1/chat/completions",
        gzip.compress(json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()),
        {"content-encoding": "gzip"},
    )
    request = llm_request(ctx)
    assert request.slots[0].text == "hi"
    assert "content-encoding" not in ctx.request_headers_out.remove  # unchanged: forwarded as it came
    mark_changed(ctx, request)
    assert "content-encoding" in ctx.request_headers_out.remove  # rewritten: sent decoded


@pytest.mark.parametrize(
    "body, headers, status",
    [
        (b"{not json", {}, 400),
        (b"[1, 2]", {}, 400),
        (b"\xff\xfe{}", {}, 400),
        (b"{}", {"content-type": "text/plain"}, 415),
        (b"{}", {"content-encoding": "br"}, 415),
        (b"not gzip", {"content-encoding": "gzip"}, 400),
        (b"[" * 100_000 + b"]" * 100_000, {}, 400),
    ],
)
def test_bad_bodies_get_precise_4xx_in_the_api_shape(body, headers, status):
    with pytest.raises(LlmRequestError) as info:
        llm_request(ctx_for("/v1/chat/completions", body, headers))
    deny = info.value.deny
    assert deny.status == status
    assert "message" in json.loads(deny.body)["error"]


def test_size_limit_is_413_and_anthropic_errors_use_its_shape():
    with pytest.raises(LlmRequestError) as info:
        llm_request(ctx_for("/v1/messages", {"model": "m", "messages": [], "pad": "x" * 5000}), max_bytes=1024)
    assert info.value.deny.status == 413
    assert json.loads(info.value.deny.body)["type"] == "error"


@pytest.mark.parametrize("encoding, compress", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_a_compressed_body_that_decodes_past_the_limit_is_413(encoding, compress):
    bomb = compress(json.dumps({"model": "m", "messages": [], "pad": "x" * 100_000}).encode())
    assert len(bomb) < 1024
    with pytest.raises(LlmRequestError) as info:
        llm_request(ctx_for("/v1/chat/completions", bomb, {"content-encoding": encoding}), max_bytes=4096)
    assert info.value.deny.status == 413
