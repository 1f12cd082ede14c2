"""``token_budget``: LLM token budgets that hold under concurrency.

Before the request reaches the model, each budget reserves an estimate:
the prompt's tokens (about four characters each) plus the completion the
request allows (``max_tokens``, or the configured cap when it names none).
A request whose reservation does not fit the remaining budget is refused
(429 in the API's error shape) before the model runs. When the response
ends, the reservation is reconciled with the model's real ``usage`` (from
the JSON body or the final SSE chunk): the unused part is returned, an
overrun is charged. Reservations and reconciliations are atomic in the
backend, so N concurrent requests can overspend by at most what the ones
still in flight under-estimated — and with ``max_tokens`` known, not at all.

A response that ends without usage (the model errored, the client went
away mid-stream) keeps its reservation when the model may have run, and
is refunded when the upstream answered an error status before any body.
A client that hangs up once it has the final event (SDKs stop reading at
``[DONE]``) is settled from the usage already seen.

Every number that feeds the arithmetic is bounded: ``max_tokens`` (and its
aliases) and ``n`` are validated when the request is parsed (a non-negative
integer within ``MAX_COMPLETION_TOKENS``, else 400), the upstream's
``usage`` is clamped to ``[0, MAX_REPORTED_TOKENS]`` and every cost is
non-negative, so no reservation or reconciliation can credit a budget. The
``model`` key part is the model the gateway resolved (model_access's
matching pattern), and a key part a request lacks shares one bucket: a
budget never splits per client-chosen string, nor silently stops applying.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from extproc import audit
from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.capabilities.llm_common import parsed_or_deny
from extproc.context import Deny, Mode, RequestContext
from extproc.headers import content_encoding
from extproc.llm.errors import llm_error
from extproc.llm.usage import CHARS_PER_TOKEN, UsageTracker, estimate_prompt_tokens
from extproc.quota import BackendUnavailable, QuotaBackend, Reservation, backend_for, fallback_for
from extproc.quota import ratelimit_headers as rl
from extproc.quota.durations import parse_duration
from extproc.quota.keys import (
    MISSING,
    PREFIX,
    PartFn,
    cluster_tag,
    compile_part,
    encode_value,
    normalize_part,
    register_part,
)
from extproc.runtime import DEFAULT_RUNTIME, Runtime

log = logging.getLogger("extproc.token_budget")


def _model(_argument: str | None) -> PartFn:
    # The model as the gateway resolved it (the model_access pattern that
    # admitted it), never the client's free string: ``demo-a`` and ``demo-b``
    # under a ``demo-*`` rule share one budget. Unresolved (no model_access
    # on the route) reads as absent: one shared budget, not one per name.
    def part(ctx: RequestContext) -> str | None:
        return ctx.established.model_key

    return part


register_part("model", _model)


class BudgetConfig(CapabilityConfig):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,62}$")
    key: list[str] = Field(
        description="What to budget by: consumer, tenant, api_key, route, principal, model, "
        "header:<name>. Empty: one budget for everyone."
    )
    tokens: int = Field(gt=0, description="Tokens (or cost units) per period.")
    per: str = Field(description="The period, refilled continuously: 1m, 1h, 1d...")
    count: Literal["prompt", "completion", "total", "weighted"] = "total"
    prompt_weight: float = Field(1.0, ge=0, description="With count: weighted, cost per prompt token.")
    completion_weight: float = Field(1.0, ge=0, description="With count: weighted, cost per completion token.")

    @field_validator("key")
    @classmethod
    def _parts(cls, value: list[str]) -> list[str]:
        return [normalize_part(p) for p in value]

    @field_validator("per")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value, minimum=1.0)
        return value


class TokenBudgetConfig(CapabilityConfig):
    budgets: list[BudgetConfig] = Field(min_length=1)
    default_max_tokens: int = Field(
        1024, gt=0, description="Completion tokens assumed when a request sets no max_tokens."
    )
    max_body_bytes: int = Field(4 << 20, ge=1024)
    on_backend_error: Literal["fail_closed", "fail_open"] = "fail_closed"


@dataclass(slots=True)
class _Held:
    budget: BudgetConfig
    key: str
    reserved: int
    backend: QuotaBackend


class _State:
    __slots__ = ("body_seen", "completion_reserved", "held", "prompt_estimate", "settled", "tracker")

    def __init__(self, held: list[_Held], prompt_estimate: int, completion_reserved: int):
        self.held = held
        self.prompt_estimate = prompt_estimate
        self.completion_reserved = completion_reserved
        self.tracker: UsageTracker | None = None
        self.settled = False
        self.body_seen = False


def _cost(budget: BudgetConfig, prompt: int, completion: int) -> int:
    """Never negative, whatever the inputs: a charge can never be a refund."""
    prompt, completion = max(0, prompt), max(0, completion)
    if budget.count == "prompt":
        return prompt
    if budget.count == "completion":
        return completion
    if budget.count == "weighted":
        return round(prompt * budget.prompt_weight + completion * budget.completion_weight)
    return prompt + completion


@register
class TokenBudget(Capability[TokenBudgetConfig]):
    name = "token_budget"
    priority = 690  # after model_access and the request-rate quota
    Config = TokenBudgetConfig

    def __init__(
        self, config: TokenBudgetConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME
    ) -> None:
        super().__init__(config, mode, runtime)
        self._backend = backend_for(runtime)
        self._fallback = fallback_for(runtime, self._backend, config.on_backend_error)
        self._budgets = [(b, [compile_part(p) for p in b.key], parse_duration(b.per)) for b in config.budgets]
        self._state_key = f"token_budget:{id(self)}"

    def _key(self, budget: BudgetConfig, parts: list[PartFn], ctx: RequestContext) -> str:
        # A part this request lacks (no subject, no resolved model) shares
        # one bucket with every other request lacking it: a budget never
        # silently stops applying.
        encoded = [encode_value(v) if v else MISSING for v in (fn(ctx) for fn in parts)]
        # One tag per budget key: each reservation is its own atomic call.
        return f"{PREFIX}{{{cluster_tag(encoded)}}}:t:{budget.name}:{':'.join(encoded)}"

    async def _reserve(
        self, key: str, amount: int, budget: BudgetConfig, period: float
    ) -> tuple[Reservation | None, QuotaBackend | None]:
        try:
            return await self._backend.reserve(key, amount, budget.tokens, period), self._backend
        except Exception as exc:
            if not isinstance(exc, BackendUnavailable):
                log.exception("token budget backend error")
        if self._fallback is None:
            return None, None
        return await self._fallback.reserve(key, amount, budget.tokens, period), self._fallback

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        request = parsed_or_deny(ctx, self.config.max_body_bytes)
        if isinstance(request, Deny):
            return request
        prompt = estimate_prompt_tokens(request)
        # max_tokens and n were validated when the request was parsed
        # (bounded non-negative integers): the reservation is bounded too.
        per_choice = request.max_tokens if request.max_tokens is not None else self.config.default_max_tokens
        completion = per_choice * request.choices
        held: list[_Held] = []
        for budget, parts, period in self._budgets:
            key = self._key(budget, parts, ctx)
            amount = _cost(budget, prompt, completion)
            reservation, backend = await self._reserve(key, amount, budget, period)
            if reservation is None or backend is None or not reservation.granted:
                self._refund(held)
                if reservation is None or backend is None:
                    return llm_error(
                        request.api,
                        503,
                        "api_error",
                        "token budget temporarily unavailable",
                        reason="token budget backend unavailable (fail_closed)",
                        code="quota_unavailable",
                    )
                deficit = max(1, amount - max(0, reservation.remaining))
                wait = deficit * period / budget.tokens
                deny = llm_error(
                    request.api,
                    429,
                    "rate_limit_exceeded",
                    "token budget exhausted",
                    reason=f"token budget {budget.name}: needs {amount}, {reservation.remaining} left",
                    code="token_budget_exceeded",
                )
                return Deny(
                    deny.status,
                    deny.code,
                    deny.reason,
                    deny.message,
                    headers=((rl.RETRY_AFTER, rl.retry_after(wait)),),
                    body=deny.body,
                )
            held.append(_Held(budget, key, amount, backend))
            ctx.set_response_header(f"x-token-budget-remaining-{budget.name}", str(reservation.remaining))
        if held:
            # The response's usage must be readable to settle: ask for it uncompressed.
            ctx.remove_request_header("accept-encoding")
            ctx.state[self._state_key] = _State(held, prompt, completion)
        return None

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        state: _State | None = ctx.state.get(self._state_key)
        if state is None:
            return None
        content_type = ctx.response_headers.get("content-type", "")
        request = ctx.established.llm_request
        if request is None:  # on_request_body parsed it before holding a budget
            return None
        state.tracker = UsageTracker(
            request.api, content_type.startswith("text/event-stream"), encoding=content_encoding(ctx.response_headers)
        )
        return None

    async def on_response_body(self, ctx: RequestContext) -> Deny | None:
        state: _State | None = ctx.state.get(self._state_key)
        if state is None or state.tracker is None or state.settled:
            return None
        state.body_seen = True
        state.tracker.feed(ctx.response_chunk, ctx.response_end)
        if ctx.response_end:
            self._settle(ctx, state)
        return None

    def _actual(self, state: _State) -> tuple[int, int]:
        usage = state.tracker.usage if state.tracker else None
        if usage is not None:
            return usage["prompt"], usage["completion"]
        if state.tracker is not None and state.tracker.unreadable:
            return state.prompt_estimate, state.completion_reserved  # unreadable: the reservation stands
        # No usage reported (a stream without include_usage): count what we saw.
        completion = state.tracker.completion_chars // CHARS_PER_TOKEN if state.tracker else 0
        return state.prompt_estimate, completion

    def _settle(self, ctx: RequestContext, state: _State) -> None:
        # In the background, not awaited: the response need not wait for the
        # backend, and a client hanging up (which cancels this request's
        # handler) must not cancel the settlement with it.
        state.settled = True
        prompt, completion = self._actual(state)
        audit.note(ctx, "llm.input_tokens", prompt)
        audit.note(ctx, "llm.output_tokens", completion)
        audit.note(ctx, "llm.total_tokens", prompt + completion)
        model = state.tracker.model if state.tracker else None
        if model:
            audit.note(ctx, "llm.response_model", model)
        for h in state.held:
            _spawn(h.backend.reconcile(h.key, h.reserved, _cost(h.budget, prompt, completion)))

    def _refund(self, held: list[_Held]) -> None:
        for h in held:
            _spawn(h.backend.reconcile(h.key, h.reserved, 0))

    def on_log(self, ctx: RequestContext) -> None:
        state: _State | None = ctx.state.get(self._state_key)
        if state is None or state.settled:
            return
        if state.tracker is not None and state.tracker.usage is not None:
            # The client hung up after the final event (SDKs stop reading at
            # [DONE]): the usage is known, settle as usual.
            self._settle(ctx, state)
            return
        state.settled = True
        if not state.body_seen and ((ctx.response_status or 0) >= 400 or ctx.response_status is None):
            # The model answered an error, or never answered: nothing was generated.
            self._refund(state.held)
        # Otherwise the stream broke off mid-response: the reservation stands.


_background: set[asyncio.Task[Any]] = set()


async def _logged(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except Exception:  # noqa: BLE001 - background settlement: the reservation stands
        log.warning("token budget settlement failed; the reservation stands")


def _spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run a refund from synchronous code (``on_log``) without blocking it."""
    try:
        task = asyncio.get_running_loop().create_task(_logged(coro))
    except RuntimeError:
        coro.close()
        return
    _background.add(task)
    task.add_done_callback(_background.discard)
