"""``quota``: rate limits and concurrency limits.

Each limit counts requests by a key (consumer, tenant, API key, route,
principal, a header...) and caps their rate (GCRA: ``requests`` per ``per``,
at most ``burst`` at once), their concurrency (requests in flight), or both.
All limits of the capability are checked in one atomic backend call: a
request refused by any limit consumes nothing from the others.

Runs after authentication and authorization (priority 700 < 900/1000) so
keys see the established identity and refused requests are never counted.
See docs/quota.md for the full reference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator, model_validator

from extproc import audit
from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Mode, RequestContext
from extproc.quota import BackendUnavailable, Outcome, QuotaBackend, backend_for, fallback_for
from extproc.quota import ratelimit_headers as rl
from extproc.quota.backend import RateCheck, RateSpec, SlotCheck, SlotSpec
from extproc.quota.durations import parse_duration
from extproc.quota.keys import MISSING, PREFIX, cluster_tag, compile_part, encode_value, normalize_part
from extproc.runtime import DEFAULT_RUNTIME, Runtime

log = logging.getLogger("extproc.quota")

LIMIT_NAME = r"^[a-z0-9][a-z0-9_.\-]{0,62}$"
UNAVAILABLE = Deny(
    503,
    "quota_unavailable",
    "quota backend unavailable (on_backend_error: fail_closed)",
    headers=((rl.RETRY_AFTER, "1"),),
)


class RateConfig(CapabilityConfig):
    requests: int = Field(gt=0, description="Requests admitted per window.")
    per: str = Field(description="The window: 10s, 1m, 1h, 1d (at least 1s).")
    burst: int | None = Field(None, gt=0, description="Requests admitted at once; default: `requests`.")

    @field_validator("per")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value, minimum=1.0)
        return value

    def spec(self) -> RateSpec:
        return RateSpec.of(self.requests, parse_duration(self.per), self.burst)


class LimitConfig(CapabilityConfig):
    name: str = Field(pattern=LIMIT_NAME, description="Names the counter and the RateLimit header item.")
    key: list[str] = Field(
        description="What to count by: consumer, tenant, api_key, route, principal, "
        "header:<name>. Empty: one counter for everyone."
    )
    rate: RateConfig | None = None
    concurrency: int | None = Field(None, gt=0, description="Requests in flight at once (ext_proc routes only).")
    lease: str = Field("5m", description="A concurrency slot never released (processor crash) frees itself after this.")
    missing_key: Literal["shared", "skip", "deny"] = Field(
        "shared",
        description="A request without a key part: shared (one counter for all such requests), "
        "skip (this limit does not apply), deny (403).",
    )

    @field_validator("key")
    @classmethod
    def _parts(cls, value: list[str]) -> list[str]:
        parts = [normalize_part(p) for p in value]
        if len(set(parts)) != len(parts):
            raise ValueError("key lists a part twice")
        return parts

    @field_validator("lease")
    @classmethod
    def _lease(cls, value: str) -> str:
        parse_duration(value, minimum=1.0)
        return value

    @model_validator(mode="after")
    def _something_to_limit(self) -> LimitConfig:
        if self.rate is None and self.concurrency is None:
            raise ValueError("give rate, concurrency or both")
        return self


class QuotaConfig(CapabilityConfig):
    limits: list[LimitConfig] = Field(min_length=1)
    on_backend_error: Literal["fail_open", "fail_closed"] = Field(
        "fail_open",
        description="Shared backend unreachable: fail_open enforces the limits per processor "
        "from local memory; fail_closed refuses requests with 503.",
    )

    @field_validator("limits")
    @classmethod
    def _unique_names(cls, value: list[LimitConfig]) -> list[LimitConfig]:
        names = [limit.name for limit in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"limit names must be unique (repeated: {', '.join(duplicates)})")
        return value


class _Limit:
    """One limit, compiled: everything but the key values is fixed here."""

    __slots__ = ("missing", "missing_deny", "name", "parts", "policy_item", "rate", "rate_infix", "slot", "slot_infix")

    def __init__(self, config: LimitConfig, part_index: dict[str, int]):
        self.name = config.name
        self.parts = tuple(part_index[p] for p in config.key)
        self.rate = config.rate.spec() if config.rate else None
        self.slot = SlotSpec(config.concurrency, parse_duration(config.lease)) if config.concurrency else None
        self.missing = config.missing_key
        # Keys are PREFIX + "{" + tag + infix + values (see extproc.quota.keys).
        self.rate_infix = f"}}:r:{self.name}:"
        self.slot_infix = f"}}:c:{self.name}:"
        self.policy_item = rl.policy_item(self.name, self.rate) if self.rate else ""
        self.missing_deny = Deny(
            403, "forbidden", f"quota limit {self.name}: the request has no {', '.join(config.key)} to count by"
        )


class _Plan:
    """One request's checks; kept until on_log when it takes concurrency
    slots, to know which to give back and where."""

    __slots__ = ("backends", "rated", "rates", "slots", "slotted")

    def __init__(self, backend: QuotaBackend):
        self.rated: list[_Limit] = []
        self.rates: list[RateCheck] = []
        self.slotted: list[_Limit] = []
        self.slots: list[SlotCheck] = []
        self.backends: tuple[QuotaBackend, ...] = (backend,)


@register
class Quota(Capability[QuotaConfig]):
    name = "quota"
    priority = 700
    Config = QuotaConfig

    def __init__(self, config: QuotaConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        self._backend = backend_for(runtime)
        self._fallback = fallback_for(runtime, self._backend, config.on_backend_error)
        # Each distinct key part is evaluated once per request, whatever the
        # number of limits using it.
        distinct = list(dict.fromkeys(p for limit in config.limits for p in limit.key))
        index = {p: i for i, p in enumerate(distinct)}
        self._part_fns = tuple(compile_part(p) for p in distinct)
        self._limits = tuple(_Limit(limit, index) for limit in config.limits)
        shared = set(distinct).intersection(*(limit.key for limit in config.limits))
        self._tag_parts = tuple(index[p] for p in distinct if p in shared)
        self._state_key = f"quota:{id(self)}"
        self._warned_ext_authz = False

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        plan = self._plan(ctx)
        if plan is None or isinstance(plan, Deny):
            return plan
        if plan.slots:
            # Recorded before the call: if it times out or is cancelled after
            # Redis took the slots, on_log still gives them back.
            ctx.state[self._state_key] = plan
        outcome = await self._check(ctx, plan)
        if outcome is None:
            return UNAVAILABLE
        _note_outcome(ctx, plan, outcome)
        if not outcome.allowed:
            ctx.state.pop(self._state_key, None)
            return self._refusal(plan, outcome)
        if plan.rated:
            ctx.set_response_header(rl.POLICY, ", ".join([limit.policy_item for limit in plan.rated]))
            ctx.set_response_header(rl.STATUS, _status_header(plan.rated, outcome))
        return None

    def _plan(self, ctx: RequestContext) -> _Plan | Deny | None:
        """The backend keys of this request's limits; None if none applies."""
        raw = [fn(ctx) for fn in self._part_fns]
        values = [encode_value(v) if v else MISSING for v in raw]
        head = PREFIX + "{" + cluster_tag([values[i] for i in self._tag_parts])
        plan = _Plan(self._backend)
        for limit in self._limits:
            if limit.missing != "shared" and not all(raw[i] for i in limit.parts):
                if limit.missing == "deny":
                    return limit.missing_deny
                continue  # skip: this limit does not apply to the request
            suffix = ":".join([values[i] for i in limit.parts])
            if limit.rate is not None:
                plan.rated.append(limit)
                plan.rates.append((head + limit.rate_infix + suffix, limit.rate))
            if limit.slot is not None and self._slots_possible(ctx, limit):
                plan.slotted.append(limit)
                plan.slots.append((head + limit.slot_infix + suffix, limit.slot, os.urandom(8).hex()))
        return plan if plan.rates or plan.slots else None

    async def _check(self, ctx: RequestContext, plan: _Plan) -> Outcome | None:
        """The backend's verdict; the fallback's when the backend is down and
        the policy fails open; None when it fails closed."""
        try:
            return await self._backend.check(plan.rates, plan.slots)
        except Exception as exc:
            if not isinstance(exc, BackendUnavailable):
                log.exception("quota backend error", extra={"decision_id": ctx.decision_id})
        if self._fallback is None:
            return None
        # Slots may have been taken by a call that timed out after Redis ran
        # it: release in both, leases that were never taken are no-ops.
        plan.backends = (self._fallback, self._backend)
        return await self._fallback.check(plan.rates, plan.slots)

    def _slots_possible(self, ctx: RequestContext, limit: _Limit) -> bool:
        # ext_authz has no end-of-request signal: a slot could only be given
        # back the moment the check returns, so the limit would cap concurrent
        # checks, not requests. Say so loudly instead of pretending it holds.
        if ctx.filter != "ext_authz":
            return True
        if not self._warned_ext_authz:
            self._warned_ext_authz = True
            log.error(
                "quota limit %r: concurrency limits need an ext_proc route (ext_authz cannot tell when a "
                "request ends); not enforced on route %r",
                limit.name,
                ctx.route.name if ctx.route else None,
            )
        return False

    @staticmethod
    def _refusal(plan: _Plan, outcome: Outcome) -> Deny:
        over_rate = [limit.name for limit, s in zip(plan.rated, outcome.rates, strict=False) if s.retry_after > 0]
        over_slots = [
            limit.name
            for limit, n in zip(plan.slotted, outcome.slots_in_use, strict=False)
            if limit.slot is not None and n >= limit.slot.limit
        ]
        # Every limit must admit the request, so the client waits for the slowest.
        # A concurrency limit frees up when some request ends: a second is a hint.
        wait = max([s.retry_after for s in outcome.rates] + ([1.0] if over_slots else []), default=1.0)
        headers = [(rl.RETRY_AFTER, rl.retry_after(wait))]
        if plan.rated:
            headers.append((rl.POLICY, ", ".join([limit.policy_item for limit in plan.rated])))
            headers.append((rl.STATUS, _status_header(plan.rated, outcome)))
        if over_rate:
            reason = f"rate limit exceeded: {', '.join(over_rate + over_slots)}"
            code = "rate_limited"
        else:
            reason = f"concurrency limit reached: {', '.join(over_slots)}"
            code = "concurrency_limited"
        return Deny(429, code, reason, headers=tuple(headers))

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        # Nothing to decide here. Having this phase keeps Envoy's ext_proc
        # stream open past the request headers: with nothing left to send,
        # Envoy would end the stream (and so run on_log, releasing the
        # concurrency slot) while the upstream is still working. With it the
        # slot is held until the response headers, or to the very end of the
        # response when Envoy also sends the response body or trailers
        # (docs/quota.md, "Concurrency limits").
        return None

    def on_log(self, ctx: RequestContext) -> None:
        plan = ctx.state.pop(self._state_key, None)
        if plan is not None:
            leases = [(key, lease) for key, _spec, lease in plan.slots]
            for backend in plan.backends:
                backend.release_soon(leases)


def _note_outcome(ctx: RequestContext, plan: _Plan, outcome: Outcome) -> None:
    """The audit facts: the limit that decided (the first one over, or the
    rate limit closest to running out) and what is left of it."""
    if not plan.rated:
        if plan.slotted:
            audit.note(ctx, "quota.limit", plan.slotted[0].name)
            audit.note(ctx, "quota.cost", 1 if outcome.allowed else 0)
        return
    over = [i for i, status in enumerate(outcome.rates) if status.retry_after > 0]
    i = over[0] if over else min(range(len(outcome.rates)), key=lambda k: outcome.rates[k].remaining)
    audit.note(ctx, "quota.limit", plan.rated[i].name)
    audit.note(ctx, "quota.cost", 1 if outcome.allowed else 0)
    audit.note(ctx, "quota.remaining", outcome.rates[i].remaining)


def _status_header(rated: Sequence[_Limit], outcome: Outcome) -> str:
    return ", ".join([rl.status_item(limit.name, status) for limit, status in zip(rated, outcome.rates, strict=False)])
