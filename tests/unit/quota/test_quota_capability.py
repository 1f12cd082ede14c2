"""The ``quota`` capability on real backends: config validation, keys,
headers, refusals, concurrency release, failure policies, monitor mode."""

from __future__ import annotations

import asyncio
import logging
import textwrap

import pytest
from pydantic import ValidationError

from extproc.capabilities.quota import Quota, QuotaConfig
from extproc.context import Identity, Mode, Phase, RequestContext
from extproc.pipeline import finish, run_phase
from extproc.policy.loader import load_policy_dir
from extproc.runtime import Runtime
from tests import builders
from tests.redis_server import free_port, patient

PER_CONSUMER = {"name": "per-consumer", "key": ["consumer"], "rate": {"requests": 3, "per": "1h"}}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def runtime(request):
    url = "memory" if request.param == "memory" else patient(request.getfixturevalue("redis_server").url)
    runtime = Runtime(quota_backend=url)
    yield runtime
    await runtime.aclose()


@pytest.fixture
async def memory_runtime():
    runtime = Runtime(quota_backend="memory")
    yield runtime
    await runtime.aclose()


def quota(runtime: Runtime, *limits: dict, mode: Mode = Mode.ENFORCE, **options) -> Quota:
    return Quota(QuotaConfig.model_validate({"limits": list(limits), **options}), mode, runtime)


def request(
    cap: Quota, route: str = "api", headers: dict | None = None, via: str = "ext_proc", **identity
) -> RequestContext:
    return builders.context(cap, "GET", "/x", headers, route_name=route, via=via, who=Identity(**identity))


async def statuses(cap: Quota, n: int, **kwargs) -> list[int]:
    """Statuses of ``n`` complete requests, one after the other."""
    out = []
    for _ in range(n):
        ctx = request(cap, **kwargs)
        deny = await cap.on_request_headers(ctx)
        finish(ctx)
        out.append(200 if deny is None else deny.status)
    return out


@pytest.mark.parametrize(
    "config, message",
    [
        ({"limits": []}, "at least 1"),
        ({"limits": [{"name": "a", "key": ["consumer"]}]}, "give rate, concurrency or both"),
        ({"limits": [{"name": "a", "key": ["user"], "concurrency": 1}]}, "unknown key part 'user'"),
        ({"limits": [{"name": "a", "key": ["header"], "concurrency": 1}]}, "needs an argument"),
        ({"limits": [{"name": "a", "key": ["header:bad name"], "concurrency": 1}]}, "invalid header name"),
        ({"limits": [{"name": "a", "key": ["consumer", "consumer"], "concurrency": 1}]}, "twice"),
        ({"limits": [{"name": "a", "key": [], "rate": {"requests": 1, "per": "1 week"}}]}, "invalid duration"),
        ({"limits": [{"name": "a", "key": [], "rate": {"requests": 1, "per": "500ms"}}]}, "at least 1s"),
        ({"limits": [{"name": "a", "key": [], "rate": {"requests": 0, "per": "1m"}}]}, "greater than 0"),
        ({"limits": [{"name": "A b", "key": [], "concurrency": 1}]}, "pattern"),
        (
            {"limits": [{"name": "a", "key": [], "concurrency": 1}, {"name": "a", "key": [], "concurrency": 2}]},
            "unique",
        ),
        ({"limits": [{"name": "a", "key": [], "concurrency": 1, "missing_key": "allow"}]}, "shared"),
        ({"limits": [{"name": "a", "key": [], "concurrency": 1}], "on_backend_error": "ignore"}, "fail_open"),
        ({"limits": [{"name": "a", "key": [], "concurrency": 1, "window": "1m"}]}, "Extra inputs"),
    ],
)
def test_invalid_configs_are_explained(config, message):
    with pytest.raises(ValidationError, match=message):
        QuotaConfig.model_validate(config)


def test_key_parts_are_normalized():
    config = QuotaConfig.model_validate(
        {"limits": [{"name": "a", "key": ["header:X-Org", "tenant"], "concurrency": 1}]}
    )
    assert config.limits[0].key == ["header:x-org", "tenant"]


async def test_admitted_requests_carry_ratelimit_headers_then_429(runtime):
    cap = quota(runtime, PER_CONSUMER)
    for remaining in (2, 1, 0):
        ctx = request(cap, subject="alice")
        assert await cap.on_request_headers(ctx) is None
        out = ctx.response_headers_out.set
        assert out["ratelimit-policy"] == '"per-consumer";q=3;w=3600'
        assert out["ratelimit"] == f'"per-consumer";r={remaining};t={1200 * (3 - remaining)}'
    deny = await cap.on_request_headers(request(cap, subject="alice"))
    assert (deny.status, deny.code) == (429, "rate_limited")
    assert "per-consumer" in deny.reason
    headers = dict(deny.headers)
    assert headers["retry-after"] == "1200"  # an hour / 3: when one request comes back
    assert headers["ratelimit-policy"] == '"per-consumer";q=3;w=3600'
    assert headers["ratelimit"] == '"per-consumer";r=0;t=3600'


@pytest.mark.parametrize(
    "part, identities",
    [
        ("consumer", ({"subject": "alice"}, {"subject": "bob"})),
        ("tenant", ({"tenant": "t1"}, {"tenant": "t2"})),
        ("api_key", ({"api_key_id": "k1"}, {"api_key_id": "k2"})),
        ("principal", ({"principal": "spiffe://a/x"}, {"principal": "spiffe://a/y"})),
    ],
)
async def test_each_key_part_separates_counters(runtime, part, identities):
    cap = quota(runtime, {"name": "l", "key": [part], "rate": {"requests": 1, "per": "1h"}})
    first, second = identities
    assert await statuses(cap, 2, **first) == [200, 429]
    assert await statuses(cap, 2, **second) == [200, 429]


async def test_route_and_header_parts(runtime):
    cap = quota(runtime, {"name": "l", "key": ["route", "header:x-org"], "rate": {"requests": 1, "per": "1h"}})
    assert await statuses(cap, 2, route="a", headers={"x-org": "o1"}) == [200, 429]
    assert await statuses(cap, 1, route="b", headers={"x-org": "o1"}) == [200]
    assert await statuses(cap, 1, route="a", headers={"x-org": "o2"}) == [200]


async def test_the_most_restrictive_limit_decides_and_refusal_costs_the_others_nothing(runtime):
    cap = quota(
        runtime,
        {"name": "burst", "key": ["consumer"], "rate": {"requests": 2, "per": "1m"}},
        {"name": "daily", "key": ["consumer"], "rate": {"requests": 100, "per": "1d"}},
    )
    for _ in range(2):
        assert await cap.on_request_headers(request(cap, subject="alice")) is None
    deny = await cap.on_request_headers(request(cap, subject="alice"))
    headers = dict(deny.headers)
    assert headers["ratelimit-policy"] == '"burst";q=2;w=60, "daily";q=100;w=86400'
    assert headers["ratelimit"].startswith('"burst";r=0;t=60, "daily";r=98;')
    assert headers["retry-after"] == "30"
    assert deny.reason == "rate limit exceeded: burst"


async def test_missing_key_shared_is_the_default_one_counter_for_all_anonymous_requests(runtime):
    cap = quota(runtime, {"name": "l", "key": ["consumer"], "rate": {"requests": 2, "per": "1h"}})
    assert await statuses(cap, 3) == [200, 200, 429]  # no identity: one shared bucket
    assert await statuses(cap, 1, subject="alice") == [200]


async def test_missing_key_skip_and_deny(runtime):
    skip = quota(
        runtime, {"name": "s", "key": ["consumer"], "rate": {"requests": 1, "per": "1h"}, "missing_key": "skip"}
    )
    assert await statuses(skip, 3) == [200, 200, 200]
    assert await statuses(skip, 2, subject="alice") == [200, 429]
    deny = quota(
        runtime,
        {"name": "d", "key": ["consumer", "tenant"], "rate": {"requests": 5, "per": "1h"}, "missing_key": "deny"},
    )
    refusal = await deny.on_request_headers(request(deny, subject="alice"))
    assert (refusal.status, refusal.code) == (403, "forbidden")
    assert "consumer, tenant" in refusal.reason
    assert await statuses(deny, 1, subject="alice", tenant="t") == [200]


async def wait_admitted(cap: Quota, **kwargs) -> RequestContext:
    # Releases to Redis are fire-and-forget from on_log: poll, bounded.
    for _ in range(200):
        ctx = request(cap, **kwargs)
        if await cap.on_request_headers(ctx) is None:
            return ctx
        await asyncio.sleep(0.01)
    raise AssertionError("slot never freed")


async def test_concurrency_slots_are_released_at_the_end_of_the_request(runtime):
    cap = quota(runtime, {"name": "inflight", "key": ["consumer"], "concurrency": 2})
    first, second = request(cap, subject="alice"), request(cap, subject="alice")
    assert await cap.on_request_headers(first) is None
    assert await cap.on_request_headers(second) is None
    deny = await cap.on_request_headers(request(cap, subject="alice"))
    assert (deny.status, deny.code) == (429, "concurrency_limited")
    assert dict(deny.headers) == {"retry-after": "1"}  # no RateLimit headers: no rate limit here
    finish(first)
    finish(first)  # on_log twice must not free a second slot
    third = await wait_admitted(cap, subject="alice")
    assert await cap.on_request_headers(request(cap, subject="alice")) is not None
    finish(second)
    finish(third)
    await wait_admitted(cap, subject="alice")


async def test_concurrency_is_not_enforced_on_ext_authz_and_says_so(memory_runtime, caplog):
    cap = quota(
        memory_runtime,
        {"name": "inflight", "key": [], "concurrency": 1},
        {"name": "rate", "key": [], "rate": {"requests": 3, "per": "1h"}},
    )
    with caplog.at_level(logging.ERROR, logger="extproc.quota"):
        results = await statuses(cap, 4, via="ext_authz")
    assert results == [200, 200, 200, 429]  # the rate limit still holds
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 1 and "need an ext_proc route" in errors[0]


async def test_fail_closed_refuses_with_503_when_redis_is_unreachable():
    runtime = Runtime(quota_backend=f"redis://127.0.0.1:{free_port()}?timeout=100ms")
    try:
        cap = quota(runtime, PER_CONSUMER, on_backend_error="fail_closed")
        deny = await cap.on_request_headers(request(cap, subject="alice"))
        assert (deny.status, deny.code) == (503, "quota_unavailable")
        assert dict(deny.headers)["retry-after"] == "1"
    finally:
        await runtime.aclose()


async def test_fail_open_still_limits_with_the_local_fallback():
    runtime = Runtime(quota_backend=f"redis://127.0.0.1:{free_port()}?timeout=100ms")
    try:
        cap = quota(runtime, PER_CONSUMER, {"name": "inflight", "key": ["consumer"], "concurrency": 1})
        held = request(cap, subject="alice")
        assert await cap.on_request_headers(held) is None
        assert (await cap.on_request_headers(request(cap, subject="alice"))).code == "concurrency_limited"
        finish(held)  # released in the fallback (and, best effort, in Redis)
        assert await statuses(cap, 3, subject="alice") == [200, 200, 429]
    finally:
        await runtime.aclose()


async def test_monitor_mode_counts_and_records_but_neither_refuses_nor_adds_headers(memory_runtime):
    cap = quota(memory_runtime, {"name": "l", "key": [], "rate": {"requests": 1, "per": "1h"}}, mode=Mode.MONITOR)
    for _ in range(2):
        ctx = request(cap)
        assert await run_phase(ctx, Phase.REQUEST_HEADERS) is None
        assert not ctx.response_headers_out
    assert [(r.capability, r.decision) for r in ctx.records] == [("quota", "deny")]


async def test_backend_keys_share_the_subjects_hash_tag(redis_server):
    runtime = Runtime(quota_backend=redis_server.url)
    try:
        per_subject = quota(
            runtime,
            {"name": "a", "key": ["consumer"], "rate": {"requests": 5, "per": "1h"}},
            {"name": "b", "key": ["consumer", "route"], "concurrency": 5},
        )
        await per_subject.on_request_headers(request(per_subject, subject="alice"))
        await per_subject.on_request_headers(request(per_subject, subject="spiffe://odd/value"))
        unrelated = quota(
            runtime,
            {"name": "c", "key": ["consumer"], "rate": {"requests": 5, "per": "1h"}},
            {"name": "d", "key": ["tenant"], "rate": {"requests": 5, "per": "1h"}},
        )
        await unrelated.on_request_headers(request(unrelated, subject="alice", tenant="t1"))
        with redis_server.client(decode_responses=True) as client:
            keys = set(client.keys("quota:*"))
    finally:
        await runtime.aclose()
    odd = next(k for k in keys if k.startswith("quota:{#") and ":r:a:" in k).split("}")[0][len("quota:{") :]
    assert keys == {
        "quota:{alice}:r:a:alice",
        "quota:{alice}:c:b:alice:api",
        f"quota:{{{odd}}}:r:a:{odd}",
        f"quota:{{{odd}}}:c:b:{odd}:api",  # values with separators are hashed
        "quota:{*}:r:c:alice",
        "quota:{*}:r:d:t1",  # no common part: one constant tag
    }


async def test_counters_survive_a_policy_reload(tmp_path, memory_runtime):
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent("""\
        routes:
          - name: api
            capabilities:
              - type: quota
                config:
                  limits: [{name: l, key: [], rate: {requests: 2, per: 1h}}]
    """)
    )
    results = []
    for _ in range(3):  # each load builds new capability instances, as a reload does
        policy = load_policy_dir(tmp_path, memory_runtime)
        ctx = builders.context(policy, "GET", "/x", route_name="api")
        results.append(await run_phase(ctx, Phase.REQUEST_HEADERS))
    assert [d.status if d else 200 for d in results] == [200, 200, 429]


async def test_the_audit_record_names_the_deciding_limit_and_what_is_left(runtime):
    from extproc.audit.record import build

    cap = quota(runtime, PER_CONSUMER, {"name": "per-tenant", "key": ["tenant"], "rate": {"requests": 10, "per": "1h"}})
    facts = []
    for _ in range(4):
        ctx = request(cap, subject="alice", tenant="t1")
        await cap.on_request_headers(ctx)
        facts.append(build(ctx).facts)
    assert facts[0] == {"extproc.quota.limit": "per-consumer", "extproc.quota.cost": 1, "extproc.quota.remaining": 2}
    assert facts[2]["extproc.quota.remaining"] == 0
    assert facts[3] == {"extproc.quota.limit": "per-consumer", "extproc.quota.cost": 0, "extproc.quota.remaining": 0}
