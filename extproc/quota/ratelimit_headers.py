"""Rate limit response headers.

``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-
headers (structured-field lists, one item per limit)::

    RateLimit-Policy: "per-consumer";q=60;w=60, "per-tenant";q=1000;w=3600
    RateLimit: "per-consumer";r=0;t=60, "per-tenant";r=998;t=8

``q``/``w``: the limit (requests per window of ``w`` seconds). ``r``: requests
that would be admitted right now. ``t``: seconds until the full quota is
available again (with GCRA quota comes back continuously: one request every
``w/q`` seconds, so ``Retry-After`` on a 429 is usually much shorter than
``t``). ``Retry-After`` (RFC 9110) is whole seconds, at least 1.
"""

from __future__ import annotations

import math

from extproc.quota.backend import RateSpec, RateStatus

POLICY = "ratelimit-policy"
STATUS = "ratelimit"
RETRY_AFTER = "retry-after"


def policy_item(name: str, spec: RateSpec) -> str:
    # Limit names are restricted to [a-z0-9_.-] by the config schema, so they
    # need no escaping inside the quoted string.
    return f'"{name}";q={spec.requests};w={math.ceil(spec.period)}'


def status_item(name: str, status: RateStatus) -> str:
    return f'"{name}";r={status.remaining};t={math.ceil(status.reset)}'


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
