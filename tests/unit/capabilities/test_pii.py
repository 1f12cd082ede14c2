"""The ``pii`` capability through the pipeline: request redaction, block,
monitor mode, responses (JSON and SSE), folded evasions, values split across
parts and messages, and the audit facts it publishes."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from extproc.audit.record import build
from extproc.capabilities.pii import Pii
from extproc.context import Mode, Phase, RequestContext
from extproc.pipeline import run_phase
from tests import builders
from tests.unit.guard.samples import PEM_BODY

CHAT = "/v1/chat/completions"


def capability(mode=Mode.ENFORCE, **config) -> Pii:
    return builders.capability(Pii, config, mode)


def context(cap: Pii, messages: list, path: str = CHAT) -> RequestContext:
    return builders.chat(cap, messages, path=path, route_name="llm")


async def send(cap: Pii, messages: list):
    ctx = context(cap, messages)
    deny = await run_phase(ctx, Phase.REQUEST_BODY)
    sent = json.loads(ctx.request_body)["messages"]
    return ctx, deny, sent


user = builders.user


async def test_request_values_are_redacted_and_counted_in_the_audit_record():
    ctx, deny, sent = await send(capability(), [user("mail jane.doe@example.com or call (415) 555-0123")])
    assert deny is None and ctx.request_body_replaced
    assert sent[0]["content"] == "mail [EMAIL_1] or call [PHONE_1]"
    facts = build(ctx).facts
    assert facts["extproc.pii.email"] == 1 and facts["extproc.pii.phone"] == 1
    assert facts["extproc.guard.action"] == "redact"
    assert "jane" not in repr(build(ctx))


async def test_a_block_entity_refuses_with_the_api_error_shape_and_records_block():
    ctx, deny, _ = await send(
        capability(entities={"CREDIT_CARD": "block", "EMAIL": "redact"}),
        [user("card 4111 1111 1111 1111, mail a@example.com")],
    )
    assert deny is not None and deny.status == 400
    body = json.loads(deny.body)
    assert body["error"]["code"] == "content_policy" and "4111" not in deny.body.decode()
    facts = build(ctx).facts
    assert facts["extproc.guard.action"] == "block"
    assert facts["extproc.pii.credit_card"] == 1 and facts["extproc.pii.email"] == 1


async def test_monitor_mode_records_the_facts_but_changes_no_traffic():
    ctx, deny, sent = await send(
        capability(Mode.MONITOR, entities={"EMAIL": "redact", "US_SSN": "block"}),
        [user("mail jane@example.com ssn 078-05-1120")],
    )
    assert deny is None and not ctx.request_body_replaced
    assert sent[0]["content"] == "mail jane@example.com ssn 078-05-1120"
    record = build(ctx)
    assert record.facts["extproc.pii.email"] == 1 and record.facts["extproc.pii.us_ssn"] == 1
    assert record.facts["extproc.guard.action"] == "block"  # what it decided
    assert [(o.capability, o.mode, o.decision) for o in record.capabilities] == [("pii", "monitor", "deny")]


@pytest.mark.parametrize(
    "disguised,entity",
    [
        ("ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "EMAIL"),  # fullwidth
        ("jane\ufe6bexample\u3002com", "EMAIL"),  # small @, ideographic dot
        ("ja\u200bne@exa\u00admple.com", "EMAIL"),  # zero-width space, soft hyphen
        ("jane@bücher.de", "EMAIL"),  # IDN domain
        ("jane@пример.рф", "EMAIL"),
        ("٤١١١ ١١١١ ١١١١ ١١١١", "CREDIT_CARD"),  # Arabic-Indic digits
        ("４１１１\u2013１１１１\u2013１１１１\u2013１１１１", "CREDIT_CARD"),  # fullwidth, en dashes
        ("4111.1111.1111.1111", "CREDIT_CARD"),  # dotted groups
        ("4\u200d111 1111 1111 1\ufe0f111", "CREDIT_CARD"),  # zero-width joiner, variation selector
        ("078\u00a005\u20091120", "US_SSN"),  # NBSP, thin space
        ("078\u201205\u20141120", "US_SSN"),  # figure dash, em dash
        ("(415)\u202f555\u20110123", "PHONE"),  # narrow NBSP, non-breaking hyphen
    ],
)
async def test_folded_evasions_are_redacted_to_the_last_original_character(disguised, entity):
    _, deny, sent = await send(capability(), [user(f"value: {disguised} end")])
    assert deny is None
    assert sent[0]["content"] == f"value: [{entity}_1] end"


@pytest.mark.parametrize(
    "armor",
    [
        "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----",
        "-----BEGIN PRI\u200bVATE KEY-----\n{body}\n-----END PRIVATE KEY-----",  # zero-width in the armor
        "-----begin rsa private key-----\n{body}\n-----end rsa private key-----",  # lower case
        "----BEGIN PRIVATE KEY----\n{body}\n----END PRIVATE KEY----",  # four dashes
        "\u2014\u2014\u2014\u2014\u2014BEGIN PRIVATE KEY\u2014\u2014\u2014\u2014\u2014\n{body}",  # em dashes, no END
    ],
)
async def test_secret_blocks_in_dodged_armor_are_blocked(armor):
    ctx, deny, _ = await send(
        capability(entities={"PRIVATE_KEY": "block"}), [user("key:\n" + armor.format(body=PEM_BODY))]
    )
    assert deny is not None and deny.status == 400
    assert build(ctx).facts["extproc.pii.private_key"] == 1


async def test_a_value_split_across_content_parts_is_redacted_in_each_part():
    _, deny, sent = await send(
        capability(),
        [
            user(
                [
                    {"type": "text", "text": "write to jane.doe"},
                    {"type": "text", "text": "@example.com today"},
                ]
            )
        ],
    )
    assert deny is None
    assert [p["text"] for p in sent[0]["content"]] == ["write to [EMAIL_1]", "[EMAIL_1] today"]


async def test_a_value_split_across_messages_is_redacted_in_each_message():
    _, deny, sent = await send(capability(), [user("my card is 4111 1111"), user(" 1111 1111 thanks")])
    assert deny is None
    assert [m["content"] for m in sent] == ["my card is [CREDIT_CARD_1]", "[CREDIT_CARD_1] thanks"]


async def test_a_key_header_and_body_in_two_messages_are_blocked():
    _, deny, _ = await send(
        capability(entities={"PRIVATE_KEY": "block"}),
        [user("-----BEGIN RSA PRIVATE KEY-----"), user(PEM_BODY + "\n-----END RSA PRIVATE KEY-----")],
    )
    assert deny is not None and deny.status == 400


async def test_a_value_inside_one_part_is_found_whatever_its_neighbour_ends_with():
    # Joined, "...4111" + "4111 1111 1111 1111" hides the card's start: each
    # part is scanned alone too.
    _, _, sent = await send(capability(), [user("order 4111"), user("4111 1111 1111 1111")])
    assert sent[1]["content"] == "[CREDIT_CARD_1]"


async def test_large_bodies_are_scanned_off_the_event_loop_with_the_same_result():
    filler = "lorem ipsum dolor sit amet " * 2000
    _, deny, sent = await send(capability(), [user(filler + "jane@example.com " + filler)])
    assert deny is None and sent[0]["content"] == filler + "[EMAIL_1] " + filler


# -- responses -------------------------------------------------------------


async def respond(cap: Pii, messages: list, content_type: str, chunks: list[bytes], **headers: str):
    ctx = context(cap, messages)
    assert await run_phase(ctx, Phase.REQUEST_BODY) is None
    ctx.response_status = 200
    ctx.response_headers = {"content-type": content_type, **headers}
    assert await run_phase(ctx, Phase.RESPONSE_HEADERS) is None
    out, denies = [], []
    for i, chunk in enumerate(chunks):
        ctx.response_chunk, ctx.response_end = chunk, i == len(chunks) - 1
        ctx.response_chunk_replaced = False
        deny = await run_phase(ctx, Phase.RESPONSE_BODY)
        denies.append(deny)
        out.append(ctx.response_chunk)
    return ctx, b"".join(out), denies


def completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
    ).encode()


def sse(*deltas: str) -> list[bytes]:
    events = [
        b"data: "
        + json.dumps(
            {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": d}}]}
        ).encode()
        + b"\n\n"
        for d in deltas
    ]
    return [*events, b"data: [DONE]\n\n"]


def sse_text(raw: bytes) -> str:
    text = ""
    for line in raw.decode().splitlines():
        if line.startswith("data: {"):
            event = json.loads(line[6:])
            text += "".join(c.get("delta", {}).get("content") or "" for c in event.get("choices", []))
    return text


async def test_json_responses_restore_pseudonyms_and_redact_new_values():
    cap = capability(entities={"EMAIL": "pseudonymize", "PHONE": "redact"})
    ctx, raw, denies = await respond(
        cap,
        [user("reply to jane@example.com")],
        "application/json",
        [completion("Sure, [EMAIL_1]. Also call +44 20 7946 0958.")],
    )
    assert denies == [None]
    text = json.loads(raw)["choices"][0]["message"]["content"]
    assert text == "Sure, jane@example.com. Also call [PHONE_1]."
    facts = build(ctx).facts
    assert facts["extproc.pii.email"] == 1 and facts["extproc.pii.phone"] == 1


async def test_streamed_responses_catch_a_folded_value_split_across_deltas():
    cap = capability()
    ctx, raw, _ = await respond(
        cap, [user("hi")], "text/event-stream", sse("write to ｊａｎｅ", "＠ｅｘａｍｐｌｅ", "．ｃｏｍ now")
    )
    assert sse_text(raw) == "write to [EMAIL_1] now"
    assert build(ctx).facts["extproc.pii.email"] == 1


async def test_a_block_entity_in_a_stream_ends_it_with_an_error_event():
    cap = capability(entities={"PRIVATE_KEY": "block"})
    ctx, raw, _ = await respond(
        cap,
        [user("hi")],
        "text/event-stream",
        sse("here: -----BEGIN PRIVATE KEY-----\n", PEM_BODY, "\n-----END PRIVATE KEY-----", " more"),
    )
    assert b"event: error" in raw and b"MIIE" not in raw
    assert build(ctx).facts["extproc.guard.action"] == "block"


async def test_a_value_after_an_object_key_is_redacted_without_the_key():
    # Tool-call arguments are JSON: the key "to" and the email after it are
    # neighbouring parts, and joined they read "toalice@example.com".
    _, deny, sent = await send(
        capability(),
        [
            user("send it"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {
                            "name": "send_mail",
                            "arguments": json.dumps({"to": "alice@example.com", "subject": "hi"}),
                        },
                    }
                ],
            },
        ],
    )
    assert deny is None
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"to": "[EMAIL_1]", "subject": "hi"}


# -- responses in any coding and content type ---------------------------------


def gzipped(chunks: list[bytes], pieces: int = 3) -> list[bytes]:
    """The body gzip-compressed, cut into ``pieces`` chunks at arbitrary points."""
    raw = gzip.compress(b"".join(chunks))
    step = max(1, len(raw) // pieces)
    return [raw[i : i + step] for i in range(0, len(raw), step)]


async def test_the_request_asks_for_an_uncompressed_answer():
    cap = capability(entities={"EMAIL": "redact"})
    ctx = context(cap, [user("hello")])
    ctx.request.headers["accept-encoding"] = "gzip, br"
    assert await run_phase(ctx, Phase.REQUEST_BODY) is None
    assert "accept-encoding" in ctx.request_headers_out.remove


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "deflate"])
async def test_a_compressed_json_answer_is_decoded_and_sanitized(encoding):
    cap = capability(entities={"EMAIL": "redact"})
    body = [completion("Write to leak@example.com today.")]
    chunks = gzipped(body) if "gzip" in encoding else [zlib.compress(body[0])]
    ctx, raw, denies = await respond(cap, [user("hi")], "application/json", chunks, **{"content-encoding": encoding})
    assert denies == [None] * len(chunks)
    assert json.loads(raw)["choices"][0]["message"]["content"] == "Write to [EMAIL_1] today."
    assert "content-encoding" in ctx.response_headers_out.remove  # the client gets it decoded


async def test_a_compressed_stream_is_decoded_and_sanitized_as_it_flows():
    cap = capability(entities={"EMAIL": "redact"})
    _, raw, denies = await respond(
        cap,
        [user("hi")],
        "text/event-stream",
        gzipped(sse("mail ", "leak@exa", "mple.com now"), pieces=5),
        **{"content-encoding": "gzip"},
    )
    assert set(denies) == {None}
    assert sse_text(raw) == "mail [EMAIL_1] now" and b"leak@" not in raw


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "compress"])
async def test_an_answer_in_a_coding_that_cannot_be_read_is_withheld(encoding):
    cap = capability(entities={"EMAIL": "redact"})
    ctx = context(cap, [user("hi")])
    assert await run_phase(ctx, Phase.REQUEST_BODY) is None
    ctx.response_status = 200
    ctx.response_headers = {"content-type": "application/json", "content-encoding": encoding}
    deny = await run_phase(ctx, Phase.RESPONSE_HEADERS)
    assert deny is not None and (deny.status, deny.code) == (502, "content_policy")


async def test_a_corrupt_compressed_answer_is_withheld_not_passed():
    cap = capability(entities={"EMAIL": "redact"})
    _ctx, _raw, denies = await respond(
        cap,
        [user("hi")],
        "application/json",
        [b"\x1f\x8b\x08\x00garbage leak@example.com"],
        **{"content-encoding": "gzip"},
    )
    # Envoy answers the deny instead of the upstream's body.
    assert denies[-1] is not None and (denies[-1].status, denies[-1].code) == (502, "content_policy")


@pytest.mark.parametrize("content_type", ["text/plain", "text/html", "", "application/x-ndjson"])
async def test_an_answer_of_another_content_type_is_sanitized_as_text(content_type):
    cap = capability(entities={"EMAIL": "redact", "US_SSN": "redact"})
    _ctx, raw, denies = await respond(
        cap, [user("hi")], content_type, [b"contact leak@example.com, ", b"ssn 123-45-6789"]
    )
    assert set(denies) == {None}
    assert raw == b"contact [EMAIL_1], ssn [US_SSN_1]"
