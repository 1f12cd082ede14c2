"""Every string the model reads is a slot; every API is chosen on the
normalized path; every client numeric that feeds a budget is bounded; any
JSON the gateway and the upstream could read differently is refused."""

import json

import pytest

from extproc.llm.request import (
    ANTHROPIC_MESSAGES,
    MAX_COMPLETION_TOKENS,
    OPENAI_CHAT,
    OPENAI_COMPLETIONS,
    OPENAI_RESPONSES,
    LlmRequestError,
    api_for_path,
    llm_request,
)
from tests import builders

X = "SECRET-MARK"


def ctx_for(path, body, headers=None):
    return builders.context(None, "POST", path, {**builders.JSON, **(headers or {})}, body=body)


def refused(path, body) -> tuple[int, dict]:
    with pytest.raises(LlmRequestError) as info:
        llm_request(ctx_for(path, body))
    return info.value.deny.status, json.loads(info.value.deny.body)


@pytest.mark.parametrize(
    "path, api",
    [
        ("/v1/responses/", OPENAI_RESPONSES),
        ("/v1/Responses", OPENAI_RESPONSES),
        ("/v1/responses;v=1", OPENAI_RESPONSES),
        ("/v1/completions/", OPENAI_COMPLETIONS),
        ("/V1/CHAT/COMPLETIONS/", OPENAI_CHAT),
        ("/v1/chat;x=1/completions", OPENAI_CHAT),
        ("/openai/v1/messages", ANTHROPIC_MESSAGES),
    ],
)
def test_api_is_chosen_on_the_normalized_path(path, api):
    assert api_for_path(path) == api


@pytest.mark.parametrize("path", ["/v1/foo", "/v1/chat/completions/extra", "/v1/responsesx", "/"])
def test_an_unknown_path_is_refused_never_read_as_chat(path):
    status, body = refused(path, {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "path, body",
    [
        (
            "/v1/responses/",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        ),  # chat body, Responses path
        ("/v1/chat/completions", {"model": "m", "input": "hi"}),
        ("/v1/completions/", {"model": "m", "messages": []}),
        ("/v1/embeddings", {"model": "m", "prompt": "hi"}),
        ("/v1/messages", {"model": "m", "messages": "hi"}),
        ("/v1/chat/completions", {"model": 5, "messages": []}),
    ],
)
def test_a_body_that_does_not_fit_its_api_is_refused(path, body):
    assert refused(path, body)[0] == 400


def chat(*messages, **extra):
    return "/v1/chat/completions", {"model": "m", "messages": list(messages), **extra}


def responses(*items, **extra):
    return "/v1/responses", {"model": "m", "input": list(items), **extra}


def anthropic(*blocks, role="user"):
    return "/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": role, "content": list(blocks)}]}


# The fields the finding listed, and some nobody listed: each must reach a
# guard, under a role every default scans (user/tool) unless it is the
# assistant's own text.
@pytest.mark.parametrize(
    "request_, role",
    [
        (chat({"role": "function", "name": "f", "content": X}), "tool"),  # legacy role
        (chat({"role": "User", "content": X}), "user"),  # role case
        (chat({"role": " TOOL ", "tool_call_id": "c", "content": X}), "tool"),
        (chat({"role": "wizard", "content": X}), "user"),  # unknown role
        (chat({"content": X}), "user"),  # no role
        (chat({"role": "user", "name": X, "content": "hi"}), "user"),  # name
        (
            chat(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": json.dumps({"q": X})}}
                    ],
                }
            ),
            "tool",
        ),
        (chat({"role": "assistant", "function_call": {"name": "f", "arguments": json.dumps({"q": [X]})}}), "tool"),
        (
            chat(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": X, "arguments": f"not json {X}"}}
                    ],
                }
            ),
            "tool",
        ),
        (chat({"role": "assistant", "content": X}), "assistant"),
        (
            chat(
                {"role": "user", "content": "hi"},
                tools=[{"type": "function", "function": {"name": "f", "description": X}}],
            ),
            "user",
        ),
        (chat({"role": "user", "content": "hi"}, unknown_field={"deep": [[X]]}), "user"),
        (responses(prompt={"id": "pmpt_1", "variables": {"city": X}}), "user"),
        (("/v1/responses", {"model": "m", "prompt": {"id": "p", "variables": {"v": X}}}), "user"),
        (responses({"type": "function_call", "call_id": "c", "name": "f", "arguments": json.dumps({"a": X})}), "tool"),
        (responses({"type": "mcp_call", "id": "m", "name": "f", "arguments": json.dumps({"a": X})}), "tool"),
        (
            responses({"type": "function_call_output", "call_id": "c", "output": [{"type": "input_text", "text": X}]}),
            "tool",
        ),
        (responses({"type": "custom_tool_call_output", "call_id": "c", "output": X}), "tool"),
        (responses({"role": "USER", "content": [{"type": "input_text", "text": X}]}), "user"),
        (
            anthropic({"type": "tool_use", "id": "t", "name": "f", "input": {"q": {"deep": X}}}, role="assistant"),
            "tool",
        ),
        (anthropic({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": X}}), "user"),
        (
            anthropic({"type": "search_result", "source": "s", "title": "t", "content": [{"type": "text", "text": X}]}),
            "tool",
        ),
        (anthropic({"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": X}]}), "tool"),
        (("/v1/completions", {"model": "m", "prompt": "a", "suffix": X}), "user"),
    ],
)
def test_every_string_the_model_reads_is_a_slot(request_, role):
    path, body = request_
    req = llm_request(ctx_for(path, body))
    hits = [s for s in req.slots if X in s.text]
    assert hits, [s.text for s in req.slots]
    assert {s.role for s in hits} == {role}


def test_inside_tool_arguments_even_an_id_is_data():
    req = llm_request(
        ctx_for(
            *chat(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": json.dumps({"id": X, "model": [X]})},
                        }
                    ],
                }
            )
        )
    )
    assert sum(s.text == X for s in req.slots) == 2


def test_ids_model_and_binary_media_are_not_slots():
    path, body = chat(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "r"},
    )
    assert [s.text for s in llm_request(ctx_for(path, body)).slots] == ["hi", "r"]


def test_a_top_level_role_cannot_demote_the_prompt():
    req = llm_request(ctx_for("/v1/completions", {"model": "m", "role": "system", "prompt": X}))
    assert [s.role for s in req.slots if s.text == X] == ["user"]


def test_an_edit_inside_json_arguments_keeps_them_json():
    ctx = ctx_for(
        *chat(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "f", "arguments": json.dumps({"to": X, "n": 1})},
                    }
                ],
            }
        )
    )
    req = llm_request(ctx)
    (slot,) = [s for s in req.slots if s.text == X]
    req.replace(ctx, slot, 'quote " and \\ backslash')
    sent = json.loads(ctx.request_body)
    arguments = sent["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"to": 'quote " and \\ backslash', "n": 1}


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_tokens", -(10**30)),
        ("max_tokens", -1),
        ("max_tokens", 1.5),
        ("max_tokens", 1024.0),
        ("max_tokens", "100"),
        ("max_tokens", True),
        ("max_tokens", MAX_COMPLETION_TOKENS + 1),
        ("max_completion_tokens", -5),
        ("max_output_tokens", 10**40),
        ("n", 0),
        ("n", -3),
        ("n", 10**6),
        ("n", 2.0),
        ("best_of", 1000),
    ],
)
def test_client_numerics_that_feed_a_budget_are_bounded(field, value):
    status, body = refused("/v1/chat/completions", {"model": "m", "messages": [], field: value})
    assert status == 400 and field in body["error"]["message"]


def test_bounded_numerics_are_read():
    req = llm_request(
        ctx_for(
            "/v1/chat/completions",
            {"model": "m", "messages": [], "max_tokens": None, "max_completion_tokens": 300, "n": 4},
        )
    )
    assert (req.max_tokens, req.choices) == (300, 4)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"gpt-4","model":"demo","messages":[]}',  # duplicate keys
        b'{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}',
        b'{"model":"m","messages":[],"seed":' + b"9" * 5000 + b"}",  # over the int-conversion limit
        b'{"model":"m","messages":[{"role":"user","content":"mail a@b.co \\ud800"}]}',  # lone surrogate
        b'{"model":"m","messages":[],"temperature":NaN}',
        b'{"model":"m","messages":[],"temperature":1e999}',
        b'{"model":"m","messages":[],"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"model":"m","messages":[],"x":' + b"[" * 200 + b"]" * 200 + b"}",
        b"",
        b"   ",
    ],
)
@pytest.mark.parametrize("path, shape", [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_json_parsers_could_disagree_on_is_refused_in_the_api_shape(raw, path, shape):
    status, body = refused(path, raw)
    assert status == 400
    assert (body["type"] == "error") if shape == "anthropic" else ("message" in body["error"])


def test_paired_surrogate_escapes_are_fine():
    req = llm_request(
        ctx_for("/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"\\ud83d\\ude00"}]}')
    )
    assert req.slots[0].text == "\U0001f600"


def test_object_keys_that_are_data_are_slots_and_renaming_keeps_values_and_order():
    args = json.dumps({"alice@example.com": "bob@example.com", "subject": "hi"})
    ctx = ctx_for(
        *chat(
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}],
            },
            {"role": "user", "content": "hi"},
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "properties": {X: {"type": "string"}}}},
                }
            ],
        )
    )
    req = llm_request(ctx)
    keys = [s.text for s in req.slots if s.is_key]
    # Every key of the arguments (free-form data); elsewhere API fields (role,
    # type, properties...) are structure and other keys are data.
    assert keys == ["alice@example.com", "subject", X]
    key_slot = next(s for s in req.slots if s.is_key and s.text == "alice@example.com")
    value_slot = next(s for s in req.slots if s.text == "bob@example.com")
    req.replace(ctx, key_slot, "[EMAIL_1]")
    assert value_slot.text == "bob@example.com"  # still readable after its key moved
    req.replace(ctx, value_slot, "[EMAIL_2]")
    sent = json.loads(json.loads(ctx.request_body)["messages"][0]["tool_calls"][0]["function"]["arguments"])
    assert list(sent.items()) == [("[EMAIL_1]", "[EMAIL_2]"), ("subject", "hi")]


def test_the_number_of_text_parts_is_bounded():
    from extproc.llm.request import MAX_TEXT_PARTS

    status, _ = refused("/v1/embeddings", {"model": "m", "input": ["a"] * (MAX_TEXT_PARTS + 1)})
    assert status == 400
    assert len(llm_request(ctx_for("/v1/embeddings", {"model": "m", "input": ["a"] * 1000})).slots) == 1000
