"""token_budget: every client- or upstream-controlled number that feeds a
reservation or a charge is bounded, budget arithmetic never goes negative,
and budgets key on the model the gateway resolved. Then the lifecycle of a
budget through the pipeline, from the policy a user writes: reserve,
refuse with Retry-After in the API's shape, settle on the model's usage,
refund what an upstream error never used, monitor mode, what it counts."""

import asyncio
import json

import pytest

from extproc.audit.record import build, facts
from extproc.capabilities.model_access import ModelAccess
from extproc.capabilities.token_budget import TokenBudget, _cost
from extproc.context import Identity, Mode, Phase, RequestContext
from extproc.llm.usage import MAX_REPORTED_TOKENS, normalize_usage
from extproc.pipeline import finish, run_phase
from extproc.policy.model import CompiledRoute
from extproc.runtime import Runtime
from tests import builders

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


async def ask(route, body: dict, identity=ALICE, path: str = builders.CHAT) -> tuple[RequestContext, object]:
    ctx = builders.context(route, "POST", path, who=identity, body={"messages": [builders.user("hi")], **body})
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
    _, deny = await ask(route, {"model": "demo-a", "max_tokens": 600})
    assert deny is None
    _, deny = await ask(route, {"model": "demo-b", "max_tokens": 600})
    assert deny is not None and deny.status == 429 and deny.code == "token_budget_exceeded"
    _, deny = await ask(route, {"model": "other", "max_tokens": 600})  # another rule: its own budget
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


# -- the lifecycle, from a policy file ------------------------------------------------------


def budget_route(tokens: int = 1000, mode: str = "enforce", count: str = "total", **options) -> CompiledRoute:
    extra = "".join(f"\n{' ' * 18}{name}: {value}" for name, value in options.items())
    return builders.compile_route(
        f"""\
        routes:
          - name: llm
            capabilities:
              - type: token_budget
                mode: {mode}
                config:
                  budgets: [{{name: daily, key: [consumer], tokens: {tokens}, per: 1d, count: {count}}}]{extra}
        """
    )


def usage(prompt: int, completion: int, model: str = "m") -> dict:
    return {
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


async def settled() -> None:
    for _ in range(5):  # settlements and refunds run in the background
        await asyncio.sleep(0)


async def settle(ctx: RequestContext, answer: dict) -> None:
    await builders.respond(ctx, answer)
    await settled()


async def prompt_estimate(route: CompiledRoute) -> int:
    """What the budget reserves for ask()'s prompt, read off a fresh budget of 1000."""
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 0})
    assert deny is None
    return 1000 - remaining(ctx)


async def test_a_reservation_that_does_not_fit_is_a_429_with_retry_after_in_the_api_shape():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 700})
    assert deny is None
    first_left = remaining(ctx)
    assert 0 < first_left < 300  # 700 completion tokens and the prompt's estimate reserved
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 700})
    assert deny is not None and deny.status == 429 and deny.code == "token_budget_exceeded"
    assert builders.error_json(deny)["error"] == {
        "message": "token budget exhausted",
        "type": "rate_limit_exceeded",
        "param": None,
        "code": "token_budget_exceeded",
    }
    retry_after = dict(deny.headers)["retry-after"]
    assert int(retry_after) > 0  # about the time the deficit takes to refill, in seconds
    (decision,) = build(ctx).capabilities
    assert decision.decision == "deny" and "needs" in decision.reason
    # Another caller has a budget of its own.
    assert (await ask(route, {"model": "m", "max_tokens": 700}, identity=builders.identity("bob")))[1] is None


async def test_anthropic_callers_get_the_429_in_anthropics_shape():
    route = budget_route(100)
    body = {"model": "claude-3-5-haiku", "max_tokens": 500}
    _, deny = await ask(route, body, path="/v1/messages")
    assert deny is not None and deny.status == 429
    assert builders.error_json(deny) == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "token budget exhausted"},
    }


async def test_settling_on_the_models_usage_returns_the_unused_reservation():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 700})
    assert deny is None
    reserved = 1000 - remaining(ctx)
    assert reserved > 700  # the allowance and the prompt's estimate
    await settle(ctx, usage(5, 20))
    assert facts(ctx)["extproc.llm.total_tokens"] == 25
    # 25 spent of 1000: another such request fits, and says what is left.
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 700})
    assert deny is None
    assert remaining(ctx) == 1000 - 25 - reserved


async def test_an_upstream_error_before_any_body_refunds_the_reservation():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 900})
    assert deny is None
    ctx.response_status, ctx.response_headers = 503, {"content-type": "application/json"}
    assert await run_phase(ctx, Phase.RESPONSE_HEADERS) is None
    finish(ctx)  # the audit step: on_log settles a request that ended without a body
    await settled()
    _, deny = await ask(route, {"model": "m", "max_tokens": 900})
    assert deny is None  # the whole reservation came back


async def test_a_stream_that_breaks_off_keeps_the_reservation():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 900, "stream": True})
    assert deny is None
    ctx.response_status, ctx.response_headers = 200, {"content-type": "text/event-stream"}
    assert await run_phase(ctx, Phase.RESPONSE_HEADERS) is None
    ctx.response_chunk, ctx.response_end = b'data: {"choices": [{"index": 0, "delta": {"content": "par"}}]}\n\n', False
    assert await run_phase(ctx, Phase.RESPONSE_BODY) is None
    finish(ctx)  # the client went away mid-stream: the model may have run on
    await settled()
    _, deny = await ask(route, {"model": "m", "max_tokens": 900})
    assert deny is not None and deny.status == 429


async def test_a_whole_json_answer_without_usage_is_charged_by_its_text():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 900})
    assert deny is None
    await settle(ctx, {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 400}}]})
    assert facts(ctx)["gen_ai.usage.output_tokens"] == 100  # four characters a token, as for streams


async def test_a_whole_anthropic_answer_without_usage_is_charged_by_its_content_blocks():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 900}, path="/v1/messages")
    assert deny is None
    answer = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "y" * 200}]}
    await settle(ctx, answer)
    assert facts(ctx)["gen_ai.usage.output_tokens"] == 50


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"choices": [', b"x" * (9 << 20)])
async def test_a_json_answer_that_cannot_be_read_keeps_the_reservation(body):
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 300})
    assert deny is None
    await builders.respond(ctx, [body])
    await settled()
    assert facts(ctx)["gen_ai.usage.output_tokens"] == 300  # nothing readable: charged what was reserved


async def test_a_streamed_answer_settles_on_the_usage_of_its_final_event():
    route = budget_route(1000)
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 900, "stream": True})
    assert deny is None
    chunk = {"choices": [{"index": 0, "delta": {"content": "hello"}, "finish_reason": None}]}
    final = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}}
    events = [f"data: {json.dumps(e)}\n\n".encode() for e in (chunk, final)] + [b"data: [DONE]\n\n"]
    await builders.respond(ctx, events, content_type="text/event-stream")
    await settled()
    record = facts(ctx)
    assert record["gen_ai.usage.input_tokens"] == 3 and record["gen_ai.usage.output_tokens"] == 7
    assert record["extproc.llm.stream"] is True
    _, deny = await ask(route, {"model": "m", "max_tokens": 900})
    assert deny is None  # 10 spent, not 900


async def test_monitor_mode_records_an_exhausted_budget_and_lets_the_request_through():
    route = budget_route(100, mode="monitor")
    ctx, deny = await ask(route, {"model": "m", "max_tokens": 500})
    assert deny is None
    assert [(o.capability, o.mode, o.decision) for o in build(ctx).capabilities] == [
        ("token_budget", "monitor", "deny")
    ]
    assert "x-token-budget-remaining-daily" not in ctx.response_headers_out.set


async def test_counting_prompt_tokens_only_ignores_the_completion_allowance():
    route = budget_route(1000, count="prompt")
    prompt = await prompt_estimate(route)
    for _ in range(3):
        ctx, deny = await ask(route, {"model": "m", "max_tokens": 5000})
        assert deny is None
    assert remaining(ctx) == 1000 - 4 * prompt


async def test_a_request_without_max_tokens_reserves_the_configured_default():
    prompt = await prompt_estimate(budget_route(1000))
    route = budget_route(1000, default_max_tokens=600)
    ctx, deny = await ask(route, {"model": "m"})
    assert deny is None and remaining(ctx) == 1000 - 600 - prompt
    _, deny = await ask(route, {"model": "m"})
    assert deny is not None and deny.status == 429
