"""The response rewriter visits every string the model produced, in
whatever shape arrives (JSON or SSE, any API), except ids and enum tags."""

import json

import pytest

from extproc.llm.request import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_RESPONSES
from extproc.llm.response import JsonRewriter, SseRewriter
from tests.unit.llm.test_response import HoldAll, Upper, events, sse


def data_of(raw: bytes) -> list:
    out = []
    for block in events(raw):
        data = block.split("data: ", 1)[1]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


@pytest.mark.parametrize("api", [OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC_MESSAGES])
def test_any_json_shape_is_rewritten_whatever_the_path_claims(api):
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "demo",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "mail a",
                    "refusal": "no b",
                    "reasoning_content": "think c",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "send", "arguments": json.dumps({"to": "d", "cc": ["e"]})},
                        }
                    ],
                },
            }
        ],
        "output": [{"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "f"}]}],
        "content": [{"type": "tool_use", "id": "tu_1", "name": "g", "input": {"q": "h"}}],
        "unknown": {"deep": ["i"]},
    }
    out = json.loads(JsonRewriter(api, Upper).feed(json.dumps(body).encode(), True))
    message = out["choices"][0]["message"]
    assert (message["content"], message["refusal"], message["reasoning_content"]) == ("MAIL A", "NO B", "THINK C")
    # inside tool arguments/input every key and string is model output
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"TO": "D", "CC": ["E"]}
    assert message["tool_calls"][0]["function"]["name"] == "SEND"
    assert out["output"][0]["content"][0]["text"] == "F"
    assert out["content"][0]["input"] == {"Q": "H"} and out["content"][0]["name"] == "G"
    assert out["UNKNOWN"] == {"DEEP": ["I"]}  # keys that are not API fields are data
    # ids, enum tags and the model name are not model output
    assert (out["id"], out["object"], out["model"], message["role"], out["choices"][0]["finish_reason"]) == (
        "chatcmpl-1",
        "chat.completion",
        "demo",
        "assistant",
        "tool_calls",
    )
    assert message["tool_calls"][0]["id"] == "call_1" and out["output"][0]["id"] == "msg_1"


def test_chat_stream_on_a_responses_path_is_rewritten_and_released():
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in ("a", "b")
    ]
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    out = data_of(SseRewriter(OPENAI_RESPONSES, HoldAll).feed(sse(*chunks), True))
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out[:-1]) == "AB"
    assert out[2]["choices"][0]["delta"]["content"] == "AB"


def test_streamed_tool_call_arguments_are_a_stream_of_their_own():
    def tc(args, finish=None):
        return {
            "id": "c",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": args}}]}
                    if args is not None
                    else {},
                }
            ],
        }

    out = data_of(
        SseRewriter(OPENAI_CHAT, HoldAll).feed(sse(tc('{"to":"al'), tc('ice"}'), tc(None, "tool_calls")), True)
    )
    assert [
        c["choices"][0]["delta"].get("tool_calls", [{}])[0].get("function", {}).get("arguments") for c in out[:-1]
    ] == ["", "", '{"TO":"ALICE"}']


def test_anthropic_thinking_and_tool_input_fragments_and_complete_blocks():
    raw = "".join(
        f"event: {d['type']}\ndata: {json.dumps(d)}\n\n"
        for d in [
            {
                "type": "message_start",
                "message": {"id": "m", "role": "assistant", "content": [{"type": "text", "text": "x"}]},
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": "n", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"q":"a'},
            },
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
            {"type": "content_block_stop", "index": 0},
        ]
    ).encode()
    out = data_of(SseRewriter(ANTHROPIC_MESSAGES, HoldAll).feed(raw, True))
    assert out[0]["message"]["content"][0]["text"] == "X" and out[0]["message"]["id"] == "m"
    assert out[1]["content_block"]["name"] == "N"
    released = [
        d["delta"]
        for d in out
        if d["type"] == "content_block_delta" and (d["delta"].get("partial_json") or d["delta"].get("thinking"))
    ]
    assert {"type": "input_json_delta", "partial_json": '{"Q":"A'} in released
    assert {"type": "thinking_delta", "thinking": "HM"} in released
    assert out[-1]["type"] == "content_block_stop"


def test_responses_argument_and_reasoning_deltas_and_done_events():
    raw = "".join(
        f"event: {d['type']}\ndata: {json.dumps(d)}\n\n"
        for d in [
            {"type": "response.function_call_arguments.delta", "item_id": "fc", "output_index": 0, "delta": '{"a":"b'},
            {
                "type": "response.function_call_arguments.done",
                "item_id": "fc",
                "output_index": 0,
                "arguments": '{"a":"b"}',
            },
            {"type": "response.reasoning_summary_text.delta", "item_id": "r", "summary_index": 0, "delta": "why"},
            {
                "type": "response.output_item.done",
                "item": {"type": "function_call", "id": "fc", "arguments": '{"a":"b"}'},
            },
        ]
    ).encode()
    out = data_of(SseRewriter(OPENAI_RESPONSES, HoldAll).feed(raw, True))
    kinds = [d["type"] for d in out]
    assert kinds == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.reasoning_summary_text.delta",
        "response.output_item.done",
        "response.reasoning_summary_text.delta",
    ]
    assert out[1]["delta"] == '{"A":"B' and out[2]["arguments"] == '{"A":"B"}'
    assert json.loads(out[4]["item"]["arguments"]) == {"A": "B"} and out[4]["item"]["id"] == "fc"
    assert out[5]["delta"] == "WHY"


def test_non_json_sse_data_is_rewritten_as_text():
    out = SseRewriter(OPENAI_CHAT, Upper).feed(b"event: error\ndata: upstream says hi\n\n", True)
    assert out == b"event: error\ndata: UPSTREAM SAYS HI\n\n"


def test_a_body_that_is_not_text_passes_untouched():
    import gzip

    raw = gzip.compress(b'{"choices": []}')
    assert JsonRewriter(OPENAI_CHAT, Upper).feed(raw, True) == raw


def test_keys_the_model_wrote_are_rewritten_too():
    body = {
        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"alice": "x", "type": "y"}}],
        "choices": [{"message": {"tool_calls": [{"function": {"arguments": json.dumps({"bob": 1, "BOB": 2})}}]}}],
    }
    out = json.loads(JsonRewriter(OPENAI_CHAT, Upper).feed(json.dumps(body).encode(), True))
    assert out["content"][0]["input"] == {"ALICE": "X", "TYPE": "Y"}  # free-form: even `type` is data
    assert json.loads(out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {"BOB": 1, "BOB_2": 2}
