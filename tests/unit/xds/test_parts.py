"""The compiler's building blocks: token buckets, Lua literals, globs, RBAC
conditions."""

from __future__ import annotations

import math

import pytest

from extproc.identity.who import Condition
from extproc.xds.lua import gate_source, lua_literal
from extproc.xds.patterns import glob_to_re2, globs_to_lua
from extproc.xds.plan import NotNative
from extproc.xds.ratelimit import MIN_FILL_INTERVAL, token_bucket
from extproc.xds.rbac import NEVER, _condition


@pytest.mark.parametrize(("requests", "period", "burst"), [(60, 60.0, 60), (3, 60.0, 3), (1000, 1.0, 50), (7, 1.0, 2)])
def test_token_bucket_refills_at_the_gcra_rate(requests: int, period: float, burst: int) -> None:
    bucket = token_bucket(requests, period, burst)
    interval = float(bucket["fill_interval"].rstrip("s"))
    assert interval >= MIN_FILL_INTERVAL - 1e-9
    assert bucket["max_tokens"] == burst
    assert math.isclose(bucket["tokens_per_fill"] / interval, requests / period, rel_tol=1e-6)


def test_lua_literal_escapes_everything_unusual() -> None:
    assert lua_literal({"a": [1, True, None, "x"]}) == '{["a"] = {1, true, nil, "x"}}'
    assert lua_literal('q"\\\n\u00e9') == '"q\\034\\092\\010\\195\\169"'
    assert lua_literal("]] ..os.exit()") == '"]] ..os.exit()"'  # data, never code
    with pytest.raises(TypeError):
        lua_literal(object())
    source = gate_source("pre", {"deny_all": True})
    assert source.startswith('local C = {["stage"] = "pre", ["deny_all"] = true}\n')
    assert "function envoy_on_request" in source


def test_globs() -> None:
    assert glob_to_re2("spiffe://example.org/ns/*") == "spiffe://example\\.org/ns/.*"
    assert glob_to_re2("a?b+") == "a.b\\+"
    assert globs_to_lua(["spiffe://x/ns/demo/*"]) == ["^spiffe://x/ns/demo/.*$"]
    with pytest.raises(NotNative):
        glob_to_re2("[ab]")


def test_conditions() -> None:
    tenant = _condition(Condition(field="tenant", equals="a%b"))
    assert tenant["header"]["name"] == "x-auth-tenant"
    assert tenant["header"]["string_match"]["safe_regex"]["regex"] == "a%25b"  # as published
    assert _condition(Condition(field="subject", equals=5)) == NEVER  # identity fields are strings
    level = _condition(Condition(field="claims.org.level", equals=3))
    assert level["metadata"]["path"] == [{"key": "payload"}, {"key": "org"}, {"key": "level"}]
    assert level["metadata"]["value"] == {"double_match": {"exact": 3.0}}
    flag = _condition(Condition(field="claims.admin", equals=True))
    assert flag["metadata"]["value"] == {"bool_match": True}
    absent = _condition(Condition(field="claims.tenant", present=False))
    assert "not_id" in absent
    with pytest.raises(NotNative):
        _condition(Condition(field="api_key_id", equals="k"))
