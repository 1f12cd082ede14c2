"""Memory-backend request-rate ``quota`` → Envoy's local_ratelimit, per Envoy.

GCRA with ``requests`` per ``per`` and ``burst`` is a token bucket holding
``burst`` tokens refilled one every ``per/requests`` seconds; Envoy refills
at most every 50 ms, so fast rates refill several tokens at a time. Keys are
the identity headers the gate published, one dynamic bucket per value; a
request without the key part counts in the route's default bucket
(``missing_key: shared``) or is not limited (``skip``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from extproc.capabilities.base import Capability
from extproc.capabilities.quota import QuotaConfig
from extproc.context import Mode
from extproc.quota import ratelimit_headers as rl
from extproc.quota.durations import parse_duration
from extproc.xds.plan import NotNative

FILTER = "envoy.filters.http.local_ratelimit"
MIN_FILL_INTERVAL = 0.05
# How many distinct key values (consumers...) each route keeps buckets for.
MAX_DYNAMIC_DESCRIPTORS = 10_000
_KEY_HEADERS = {"consumer": "x-auth-subject", "tenant": "x-auth-tenant", "principal": "x-auth-principal"}
# A bucket nobody can empty: "skip" leaves key-less requests unlimited.
_UNLIMITED = {"max_tokens": 1_000_000_000, "tokens_per_fill": 1_000_000_000, "fill_interval": "1s"}


@dataclass(slots=True)
class RateLimitNative:
    per_route: dict[str, Any]
    rate_limits: list[dict[str, Any]]
    response_headers: list[tuple[str, str]]


def token_bucket(requests: int, period: float, burst: int) -> dict[str, Any]:
    interval = period / requests
    per_fill = 1 if interval >= MIN_FILL_INTERVAL else math.ceil(MIN_FILL_INTERVAL / interval)
    fill = interval * per_fill
    return {"max_tokens": burst, "tokens_per_fill": per_fill, "fill_interval": f"{fill:.9f}s"}


def compile_quota(capability: Capability[Any], backend: str) -> RateLimitNative:
    config = capability.config
    assert isinstance(config, QuotaConfig)
    if backend != "memory":
        raise NotNative(f"the {backend} backend counts across processors: quota stays in the processor")
    if capability.mode is Mode.MONITOR:
        raise NotNative("monitor-mode quota (local_ratelimit cannot count without enforcing)")
    if len(config.limits) != 1:
        raise NotNative("several limits are checked atomically by the processor")
    limit = config.limits[0]
    if limit.concurrency is not None or limit.rate is None:
        raise NotNative("concurrency limits need the processor")
    if limit.missing_key == "deny":
        raise NotNative("missing_key: deny")
    parts = [p for p in limit.key if p != "route"]  # per-route config: the route is implied
    if len(parts) > 1:
        raise NotNative("keys of several parts")
    rate = limit.rate
    spec = rate.spec()
    period = parse_duration(rate.per)
    bucket = token_bucket(rate.requests, period, rate.burst or rate.requests)
    per_route: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": "extproc_quota",
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "token_bucket": bucket,
    }
    rate_limits: list[dict[str, Any]] = []
    if parts:
        part = parts[0]
        name, _, argument = part.partition(":")
        header = _KEY_HEADERS.get(name) or (argument if name == "header" else None)
        if header is None:
            raise NotNative(f"key part {part} (no native identity header)")
        per_route["descriptors"] = [{"entries": [{"key": name, "value": ""}], "token_bucket": bucket}]
        per_route["max_dynamic_descriptors"] = MAX_DYNAMIC_DESCRIPTORS
        rate_limits = [{"actions": [{"request_headers": {"header_name": header, "descriptor_key": name}}]}]
        per_route["rate_limits"] = rate_limits
        if limit.missing_key == "skip":
            per_route["token_bucket"] = _UNLIMITED
    retry_after = rl.retry_after(period / rate.requests)
    policy = rl.policy_item(limit.name, spec)
    per_route["response_headers_to_add"] = [
        {"header": {"key": rl.RETRY_AFTER, "value": retry_after}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": rl.POLICY, "value": policy}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
    ]
    return RateLimitNative(per_route=per_route, rate_limits=rate_limits, response_headers=[(rl.POLICY, policy)])
