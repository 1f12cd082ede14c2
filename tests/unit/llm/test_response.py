import json

from extproc.llm.request import ANTHROPIC_MESSAGES, OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_RESPONSES
from extproc.llm.response import JsonRewriter, SseRewriter, usage_of


class HoldAll:
    """A worst-case transform: releases nothing until the stream ends."""

    def __init__(self):
        self.buf = ""

    def feed(self, text):
        self.buf += text
        return ""

    def flush(self):
        out, self.buf = self.buf.upper(), ""
        return out


class Upper:
    def feed(self, text):
        return text.upper()

    def flush(self):
        return ""


def sse(*payloads, done=True):
    out = "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)
    return (out + ("data: [DONE]\n\n" if done else "")).encode()


def chat_chunk(content=None, finish=None, index=0):
    delta = {} if content is None else {"content": content}
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def events(raw: bytes):
    return [block for block in raw.decode().split("\n\n") if block]


def chat_text(raw: bytes) -> str:
    text = ""
    for block in events(raw):
        data = block.split("data: ", 1)[1]
        if data != "[DONE]":
            for choice in json.loads(data)["choices"]:
                text += choice.get("delta", {}).get("content") or ""
    return text


def test_chat_stream_held_text_is_released_into_the_finish_chunk():
    rewriter = SseRewriter(OPENAI_CHAT, HoldAll)
    body = sse(chat_chunk("hel"), chat_chunk("lo"), chat_chunk(finish="stop"))
    out = b"".join(rewriter.feed(body[i : i + 5], False) for i in range(0, len(body), 5)) + rewriter.feed(b"", True)
    assert chat_text(out) == "HELLO"
    assert events(out)[-1] == "data: [DONE]"
    last = json.loads(events(out)[-2].split("data: ", 1)[1])
    assert last["choices"][0]["finish_reason"] == "stop" and last["choices"][0]["delta"]["content"] == "HELLO"


def test_events_flow_as_they_complete():
    rewriter = SseRewriter(OPENAI_CHAT, Upper)
    first = rewriter.feed(sse(chat_chunk("ab"), done=False)[:-1], False)
    assert first == b""  # the event is not complete yet
    assert chat_text(rewriter.feed(b"\n", False)) == "AB"


def test_stream_ending_without_finish_still_flushes():
    rewriter = SseRewriter(OPENAI_CHAT, HoldAll)
    out = rewriter.feed(sse(chat_chunk("abc"), done=False), True)
    assert chat_text(out) == "ABC"


def test_choices_are_separate_streams_and_usage_is_captured():
    rewriter = SseRewriter(OPENAI_CHAT, HoldAll)
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    out = rewriter.feed(
        sse(
            chat_chunk("a", index=0),
            chat_chunk("b", index=1),
            chat_chunk(finish="stop", index=0),
            chat_chunk(finish="stop", index=1),
            {"id": "c", "choices": [], "usage": usage},
        ),
        True,
    )
    finals = [json.loads(e.split("data: ", 1)[1]) for e in events(out)[2:4]]
    assert [f["choices"][0]["delta"]["content"] for f in finals] == ["A", "B"]
    assert rewriter.usage == usage


def test_completions_stream():
    rewriter = SseRewriter(OPENAI_COMPLETIONS, HoldAll)
    chunks = [{"choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in ("ab", "cd")]
    chunks.append({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    out = rewriter.feed(sse(*chunks), True)
    texts = [json.loads(e.split("data: ", 1)[1])["choices"][0]["text"] for e in events(out)[:-1]]
    assert texts == ["", "", "ABCD"]


def test_anthropic_stream_releases_before_block_stop():
    rewriter = SseRewriter(ANTHROPIC_MESSAGES, HoldAll)
    raw = "".join(
        f"event: {t}\ndata: {json.dumps(d)}\n\n"
        for t, d in [
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi "}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "you"}},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_stop", {"type": "message_stop"}),
        ]
    ).encode()
    out = events(rewriter.feed(raw, True))
    assert out[2].startswith("event: content_block_delta")
    assert json.loads(out[2].split("data: ", 1)[1])["delta"]["text"] == "HI YOU"
    assert out[3].startswith("event: content_block_stop")


def test_responses_api_stream():
    rewriter = SseRewriter(OPENAI_RESPONSES, HoldAll)
    raw = "".join(
        f"event: {d['type']}\ndata: {json.dumps(d)}\n\n"
        for d in [
            {"type": "response.output_text.delta", "item_id": "i", "content_index": 0, "delta": "ab"},
            {"type": "response.output_text.done", "item_id": "i", "content_index": 0, "text": "ab"},
            {
                "type": "response.completed",
                "response": {
                    "output": [{"content": [{"type": "output_text", "text": "ab"}]}],
                    "usage": {"input_tokens": 1},
                },
            },
        ]
    ).encode()
    out = [json.loads(e.split("data: ", 1)[1]) for e in events(rewriter.feed(raw, True))]
    assert [o.get("delta") for o in out if o["type"] == "response.output_text.delta"] == ["", "AB"]
    assert out[2]["text"] == "AB"
    assert out[3]["response"]["output"][0]["content"][0]["text"] == "AB"
    assert rewriter.usage == {"input_tokens": 1}


def test_json_response_held_until_complete():
    rewriter = JsonRewriter(OPENAI_CHAT, Upper)
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {"total_tokens": 3}})
    assert rewriter.feed(body[:10].encode(), False) == b""
    out = json.loads(rewriter.feed(body[10:].encode(), True))
    assert out["choices"][0]["message"]["content"] == "HI"
    assert usage_of(rewriter.body) == {"total_tokens": 3}


def test_non_json_is_transformed_as_text():
    # An error page or a plain-text answer still carries model/upstream text.
    assert JsonRewriter(OPENAI_CHAT, Upper).feed(b"plain text", True) == b"PLAIN TEXT"
