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

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, RequestContext
from extproc.quota import BackendUnavailable, MemoryBackend, Outcome, QuotaBackend, backend_for, fallback_for
from extproc.quota import ratelimit_headers as rl
from extproc.quota.backend import Lease, RateSpec, SlotSpec
from extproc.quota.durations import parse_duration
from extproc.quota.keys import MISSING, PREFIX, cluster_tag, compile_part, encode_value, normalize_part
from extproc.runtime import DEFAULT_RUNTIME

log = logging.getLogger("extproc.quota")

LIMIT_NAME = r"^[a-z0-9][a-z0-9_.\-]{0,62}$"
# Set by the ext_authz servicer in ``ctx.attributes``: ext_authz has no
# end-of-request signal, so a concurrency slot could only be released the
# moment the check returns. Concurrency limits are skipped there (with an
# error log) rather than pretending to hold.
FILTER_ATTRIBUTE = "extproc.filter"
UNAVAILABLE = Deny(503, "quota_unavailable", "quota backend unavailable (on_backend_error: fail_closed)",
                   headers=((rl.RETRY_AFTER, "1"),))


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
    key: list[str] = Field(description="What to count by: consumer, tenant, api_key, route, principal, "
                                       "header:<name>. Empty: one counter for everyone.")
    rate: RateConfig | None = None
    concurrency: int | None = Field(None, gt=0, description="Requests in flight at once (ext_proc routes only).")
    lease: str = Field("5m", description="A concurrency slot never released (processor crash) frees itself after this.")
    missing_key: Literal["shared", "skip", "deny"] = Field(
        "shared", description="A request without a key part: shared (one counter for all such requests), "
                              "skip (this limit does not apply), deny (403).")

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
        "fail_open", description="Shared backend unreachable: fail_open enforces the limits per processor "
                                 "from local memory; fail_closed refuses requests with 503.")

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

    __slots__ = ("name", "parts", "rate", "slot", "missing", "rate_infix", "slot_infix", "policy_item",
                 "missing_deny")

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
        self.missing_deny = Deny(403, "forbidden", f"quota limit {self.name}: the request has no {', '.join(config.key)} to count by")


class _Held:
    """Concurrency slots a request holds, and where to give them back."""

    __slots__ = ("leases", "backends")

    def __init__(self, leases: list[Lease], backends: tuple[QuotaBackend, ...]):
        self.leases = leases
        self.backends = backends


@register
class Quota(Capability):
    name = "quota"
    priority = 700
    Config = QuotaConfig

    def __init__(self, config: QuotaConfig, mode, runtime=DEFAULT_RUNTIME):
        super().__init__(config, mode, runtime)
        self._backend = backend_for(runtime)
        # A local limiter to fall back on only makes sense for a shared backend.
        self._fallback = None if isinstance(self._backend, MemoryBackend) or config.on_backend_error == "fail_closed" \
            else fallback_for(runtime)
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
        raw = [fn(ctx) for fn in self._part_fns]
        values = [encode_value(v) if v else MISSING for v in raw]
        head = PREFIX + "{" + cluster_tag([values[i] for i in self._tag_parts])
        rated: list[_Limit] = []
        rates: list = []
        slotted: list[_Limit] = []
        slots: list = []
        for limit in self._limits:
            if limit.missing != "shared" and not all(raw[i] for i in limit.parts):
                if limit.missing == "deny":
                    return limit.missing_deny
                continue  # skip: this limit does not apply to the request
            suffix = ":".join([values[i] for i in limit.parts])
            if limit.rate is not None:
                rated.append(limit)
                rates.append((head + limit.rate_infix + suffix, limit.rate))
            if limit.slot is not None and self._slots_possible(ctx, limit):
                slotted.append(limit)
                slots.append((head + limit.slot_infix + suffix, limit.slot, os.urandom(8).hex()))
        if not rates and not slots:
            return None

        held = None
        if slots:
            # Recorded before the call: if it times out or is cancelled after
            # Redis took the slots, on_log still gives them back.
            held = ctx.state[self._state_key] = _Held([(key, lease) for key, _spec, lease in slots], (self._backend,))
        try:
            outcome = await self._backend.check(rates, slots)
        except Exception as exc:  # noqa: BLE001 - a backend must never fail the request by raising
            if not isinstance(exc, BackendUnavailable):
                log.exception("quota backend error", extra={"decision_id": ctx.decision_id})
            if self._fallback is None:
                return UNAVAILABLE
            outcome = await self._fallback.check(rates, slots)
            if held is not None:
                held.backends = (self._fallback, self._backend)
        if not outcome.allowed:
            ctx.state.pop(self._state_key, None)
            return self._refusal(rated, slotted, outcome)
        if rated:
            ctx.set_response_header(rl.POLICY, ", ".join([limit.policy_item for limit in rated]))
            ctx.set_response_header(rl.STATUS, _status_header(rated, outcome))
        return None

    def _slots_possible(self, ctx: RequestContext, limit: _Limit) -> bool:
        if ctx.attributes.get(FILTER_ATTRIBUTE) != "ext_authz":
            return True
        if not self._warned_ext_authz:
            self._warned_ext_authz = True
            log.error("quota limit %r: concurrency limits need an ext_proc route (ext_authz cannot tell when a "
                      "request ends); not enforced on route %r", limit.name, ctx.route.name if ctx.route else None)
        return False

    @staticmethod
    def _refusal(rated: Sequence[_Limit], slotted: Sequence[_Limit], outcome: Outcome) -> Deny:
        over_rate = [limit.name for limit, s in zip(rated, outcome.rates) if s.retry_after > 0]
        over_slots = [limit.name for limit, n in zip(slotted, outcome.slots_in_use) if n >= limit.slot.limit]
        # Every limit must admit the request, so the client waits for the slowest.
        # A concurrency limit frees up when some request ends: a second is a hint.
        wait = max([s.retry_after for s in outcome.rates] + ([1.0] if over_slots else []))
        headers = [(rl.RETRY_AFTER, rl.retry_after(wait))]
        if rated:
            headers.append((rl.POLICY, ", ".join([limit.policy_item for limit in rated])))
            headers.append((rl.STATUS, _status_header(rated, outcome)))
        if over_rate:
            reason = f"rate limit exceeded: {', '.join(over_rate + over_slots)}"
            code = "rate_limited"
        else:
            reason = f"concurrency limit reached: {', '.join(over_slots)}"
            code = "concurrency_limited"
        return Deny(429, code, reason, headers=tuple(headers))

    def on_log(self, ctx: RequestContext) -> None:
        held = ctx.state.pop(self._state_key, None)
        if held is not None:
            for backend in held.backends:
                backend.release_soon(held.leases)


def _status_header(rated: Sequence[_Limit], outcome: Outcome) -> str:
    return ", ".join([rl.status_item(limit.name, status) for limit, status in zip(rated, outcome.rates)])
