"""token_budget: every client- or upstream-controlled number that feeds a
reservation or a charge is bounded, budget arithmetic never goes negative,
and budgets key on the model the gateway resolved."""

import asyncio
import json

import pytest

from extproc.audit.record import facts
from extproc.capabilities.model_access import ModelAccess
from extproc.capabilities.token_budget import TokenBudget, _cost
from extproc.context import HttpRequest, Identity, Mode, Phase, RequestContext
from extproc.llm.usage import MAX_REPORTED_TOKENS, normalize_usage
from extproc.pipeline import resolve_route, run_phase
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.runtime import Runtime

ALICE = Identity(subject="alice", roles=frozenset({"reader"}), methods=frozenset({"jwt"}))


def make_route(tokens: int, model_access: bool = True):
    runtime = Runtime()
    caps = [
        TokenBudget(
            TokenBudget.Config(
                budgets=[{"name": "daily", "key": ["consumer", "model"], "tokens": tokens, "per": "1d"}]
            ),
            Mode.ENFORCE,
            runtime,
        )
    ]
    if model_access:
        caps.append(ModelAccess(ModelAccess.Config(rules=[{"models": ["demo-*", "other"]}]), Mode.ENFORCE))
    return CompiledRoute("llm", "test:1", caps, None)


async def ask(route, body: dict, identity=ALICE) -> tuple[RequestContext, object]:
    ctx = RequestContext(
        PolicySet("rev", {"llm": route}),
        HttpRequest("POST", "/v1/chat/completions", "gw", {"content-type": "application/json"}),
    )
    ctx.identity = identity
    resolve_route(ctx, "llm")
    ctx.request_body = json.dumps({"messages": [{"role": "user", "content": "hi"}], **body}).encode()
    return ctx, await run_phase(ctx, Phase.REQUEST_BODY)


async def respond(ctx, payload: dict) -> None:
    ctx.response_status, ctx.response_headers = 200, {"content-type": "application/json"}
    assert await run_phase(ctx, Phase.RESPONSE_HEADERS) is None
    ctx.response_chunk, ctx.response_end = json.dumps(payload).encode(), True
    assert await run_phase(ctx, Phase.RESPONSE_BODY) is None
    for _ in range(5):  # settlement runs in the background
        await asyncio.sleep(0)


def remaining(ctx) -> int:
    return int(ctx.response_headers_out.set["x-token-budget-remaining-daily"])


async def test_a_glob_rule_is_one_budget_not_one_per_client_chosen_name():
    route = make_route(1000)
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 600})
    assert deny is None
    _, deny = await ask(route, {"model": "demo-b", "max_tokens": 600})
    assert deny is not None and deny.status == 429 and deny.code == "token_budget_exceeded"
    ctx, deny = await ask(route, {"model": "other", "max_tokens": 600})  # another rule: its own budget
    assert deny is None


async def test_without_model_resolution_every_model_shares_the_budget():
    route = make_route(1000, model_access=False)
    assert (await ask(route, {"model": "m-1", "max_tokens": 600}))[1] is None
    assert (await ask(route, {"model": "m-2", "max_tokens": 600}))[1].status == 429


async def test_a_missing_key_part_shares_a_bucket_instead_of_skipping_the_budget():
    route = make_route(500, model_access=False)
    anonymous = Identity()
    assert (await ask(route, {"model": "m", "max_tokens": 400}, anonymous))[1] is None
    assert (await ask(route, {"model": "m", "max_tokens": 400}, anonymous))[1].status == 429


@pytest.mark.parametrize(
    "body",
    [
        {"max_tokens": -(10**30)},
        {"max_tokens": -1},
        {"max_tokens": 1024.5},
        {"max_tokens": 64.0},
        {"max_completion_tokens": -10},
        {"max_output_tokens": 10**12},
        {"n": -1},
        {"n": 0},
        {"max_tokens": "5"},
    ],
)
async def test_client_numerics_are_validated_before_any_reservation(body):
    route = make_route(1000)
    ctx, deny = await ask(route, {"model": "demo-a", "content": "x" * 100, **body})
    assert deny.status == 400 and json.loads(deny.body)["error"]["type"] == "invalid_request_error"
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 10})
    assert deny is None and remaining(ctx) <= 1000  # nothing was reserved, nothing credited


async def test_n_choices_multiply_the_reservation():
    route = make_route(1000)
    assert (await ask(route, {"model": "demo-a", "max_tokens": 300, "n": 4}))[1].status == 429
    assert (await ask(route, {"model": "demo-a", "max_tokens": 300, "n": 3}))[1] is None


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -(10**9), "completion_tokens": -5},
        {"prompt_tokens": -(10**30), "completion_tokens": 1},
        {"prompt_tokens": True, "completion_tokens": 2.5},
        {"input_tokens": -7, "output_tokens": -7},
    ],
)
async def test_reported_usage_can_never_refund_more_than_was_reserved(usage):
    route = make_route(1000)
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 100})
    assert deny is None
    await respond(ctx, {"choices": [{"message": {"role": "assistant", "content": "ok"}}], "usage": usage})
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 100})
    assert deny is None and remaining(ctx) <= 1000 - 100


def test_budget_arithmetic_is_non_negative_by_construction():
    budget = TokenBudget.Config(
        budgets=[{"name": "b", "key": [], "tokens": 10, "per": "1m", "count": "weighted", "prompt_weight": 2.0}]
    ).budgets[0]
    assert _cost(budget, -(10**30), -5) == 0
    assert normalize_usage({"prompt_tokens": -3, "completion_tokens": 10**40}) == {
        "prompt": 0,
        "completion": MAX_REPORTED_TOKENS,
        "total": MAX_REPORTED_TOKENS,
    }
    assert normalize_usage({"prompt_tokens": False}) is None


async def test_settled_usage_reaches_the_audit_record_as_documented_facts():
    route = make_route(1000)
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 100, "stream": False})
    assert deny is None
    await respond(
        ctx,
        {
            "model": "demo-a-2025",
            "choices": [{"message": {"content": "ok"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
        },
    )
    record = facts(ctx)
    assert record["gen_ai.usage.input_tokens"] == 12 and record["gen_ai.usage.output_tokens"] == 30
    assert record["extproc.llm.total_tokens"] == 42
    assert record["gen_ai.request.model"] == "demo-a" and record["gen_ai.response.model"] == "demo-a-2025"
    assert record["extproc.llm.api"] == "openai.chat" and record["extproc.llm.stream"] is False


async def respond_raw(ctx, raw: bytes, headers: dict) -> None:
    ctx.response_status, ctx.response_headers = 200, headers
    assert await run_phase(ctx, Phase.RESPONSE_HEADERS) is None
    ctx.response_chunk, ctx.response_end = raw, True
    assert await run_phase(ctx, Phase.RESPONSE_BODY) is None
    for _ in range(5):
        await asyncio.sleep(0)


async def test_usage_is_read_through_compression_and_an_unreadable_body_keeps_the_reservation():
    import gzip

    route = make_route(1000)
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 300})
    assert deny is None and "accept-encoding" in ctx.request_headers_out.remove
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
    await respond_raw(ctx, gzip.compress(body), {"content-type": "application/json", "content-encoding": "gzip"})
    assert facts(ctx)["extproc.llm.total_tokens"] == 2
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 300})
    await respond_raw(ctx, b"\x1b\x00brotli", {"content-type": "application/json", "content-encoding": "br"})
    assert facts(ctx)["gen_ai.usage.output_tokens"] == 300  # nothing readable: charged what was reserved


async def test_a_stream_without_usage_is_charged_for_everything_generated():
    route = make_route(10_000)
    ctx, deny = await ask(route, {"model": "demo-a", "max_tokens": 2000, "stream": True})
    assert deny is None
    events = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [{"index": 0, "function": {"arguments": "x" * 400}}],
                        "reasoning_content": "y" * 400,
                    },
                    "finish_reason": None,
                }
            ]
        }
    ]
    raw = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
    await respond_raw(ctx, raw, {"content-type": "text/event-stream"})
    assert facts(ctx)["gen_ai.usage.output_tokens"] == 200  # 800 characters, not the 0 of `content`
