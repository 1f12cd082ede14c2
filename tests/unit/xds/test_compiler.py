"""The compiler's plan and the resources it builds, on real loaded policies."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extproc.local.envoy import envoy_binary
from extproc.policy.model import PolicySet
from extproc.xds.compiler import Options, compile_policy
from extproc.xds.render import explain, resources_dict, static_bootstrap
from extproc.xds.resources import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE
from tests.unit.xds.conftest import ISSUER, REPO, route

Load = Callable[..., PolicySet]
JWT = {"type": "jwt", "config": {"issuers": [ISSUER]}}
RBAC = {"type": "rbac", "config": {"rules": [{"name": "readers", "who": {"roles": ["reader"]}, "paths": ["/a/**"]}]}}


def _plans(policy: PolicySet, options: Options | None = None) -> dict[str, Any]:
    return {p.route: p for p in compile_policy(policy, options or Options()).plans}


def _routes(policy: PolicySet) -> dict[str, dict[str, Any]]:
    config = resources_dict(compile_policy(policy))
    (table,) = config["routes"]
    return {r["name"]: r for r in table["virtual_hosts"][0]["routes"]}


def test_header_only_capabilities_run_natively(load: Load) -> None:
    policy = load(route("a", "/a/", JWT, RBAC, {"type": "headers", "config": {"request": {"set": {"x-a": "1"}}}}))
    plan = _plans(policy)["a"]
    assert plan.engine == "native"
    assert [(p.capability, p.engine) for p in plan.capabilities] == [
        ("jwt", "native"),
        ("rbac", "native"),
        ("headers", "native"),
    ]
    envoy_route = _routes(policy)["a"]
    filters = set(envoy_route["typed_per_filter_config"])
    assert {"envoy.filters.http.jwt_authn", "extproc.rbac_allow", "extproc.pre", "extproc.identity"} <= filters
    assert "envoy.filters.http.ext_authz" not in filters  # native routes never call the processor
    assert envoy_route["request_headers_to_add"][0]["header"] == {"key": "x-a", "value": "1"}


def test_one_inexpressible_capability_keeps_the_whole_route_in_the_processor(load: Load) -> None:
    api_key = {"type": "api_key", "config": {"keys": [{"id": "k1", "hash": "sha256:" + "0" * 64, "subject": "c"}]}}
    policy = load(route("a", "/a/", api_key, RBAC))
    plan = _plans(policy)["a"]
    assert plan.engine == "ext_authz"
    reasons = {p.capability: p.reason for p in plan.capabilities}
    assert reasons["api_key"] == "api_key: no native form"
    assert "route runs in the processor (api_key)" in reasons["rbac"]
    per_filter = _routes(policy)["a"]["typed_per_filter_config"]
    assert per_filter["envoy.filters.http.ext_authz"]["check_settings"]["context_extensions"] == {"route": "a"}
    assert "extproc.pre" not in per_filter


def test_reasons_for_partial_native_forms(load: Load) -> None:
    regex_rule = {"type": "header_match", "config": {"deny": [{"name": "x-a", "regex": "a+"}]}}
    scopes = {"type": "rbac", "config": {"rules": [{"name": "r", "who": {"scopes": ["read"]}}]}}
    param = {
        "type": "rbac",
        "config": {
            "rules": [
                {
                    "name": "r",
                    "paths": ["/t/{tenant}/**"],
                    "who": {"conditions": [{"field": "tenant", "equals_param": "tenant"}]},
                }
            ]
        },
    }
    two_limits = {
        "type": "quota",
        "config": {
            "limits": [
                {"name": "a", "key": ["consumer"], "rate": {"requests": 1, "per": "1s"}},
                {"name": "b", "key": ["tenant"], "rate": {"requests": 1, "per": "1s"}},
            ]
        },
    }
    monitor_jwt = {**JWT, "mode": "monitor"}
    policy = load(
        route("regex", "/r/", regex_rule),
        route("scopes", "/s/", JWT, scopes),
        route("param", "/t/", JWT, param),
        route("limits", "/l/", JWT, two_limits),
        route("monitor", "/m/", monitor_jwt),
        route("folded", "/f/", JWT, case_insensitive=True),
    )
    plans = _plans(policy)
    assert "regex header rules" in plans["regex"].reason
    assert "scopes" in plans["scopes"].reason
    assert "equals_param" in plans["param"].reason
    assert "several limits" in plans["limits"].reason
    assert "monitor mode" in plans["monitor"].reason
    assert "case-insensitive" in plans["folded"].reason
    assert all(p.engine == "ext_authz" for p in plans.values())


def test_redis_quota_stays_in_the_processor(load: Load) -> None:
    quota = {"type": "quota", "config": {"limits": [{"name": "a", "key": [], "rate": {"requests": 5, "per": "1s"}}]}}
    policy = load(route("q", "/q/", quota))
    assert _plans(policy, Options(quota_backend="memory"))["q"].engine == "native"
    assert "redis backend" in _plans(policy, Options(quota_backend="redis"))["q"].reason


def test_body_routes_use_ext_proc_bound_by_name(load: Load) -> None:
    policy = load(route("llm", "/v1/", JWT, {"type": "prompt_guard", "config": {}}))
    assert _plans(policy)["llm"].engine == "ext_proc"
    per_filter = _routes(policy)["llm"]["typed_per_filter_config"]
    overrides = per_filter["envoy.filters.http.ext_proc"]["overrides"]
    assert overrides["grpc_initial_metadata"] == [{"key": "x-governance-route", "value": "llm"}]


def test_unmatched_default_route_and_monitor_rbac_shadow(load: Load) -> None:
    shadow = {**RBAC, "mode": "monitor"}
    policy = load(route("a", "/a/", JWT, shadow), defaults={"unmatched": "allow"})
    routes = _routes(policy)
    rbac = routes["a"]["typed_per_filter_config"]["extproc.rbac_allow"]["rbac"]
    assert "shadow_rules" in rbac and "rules" not in rbac
    default_gate = routes["default"]["typed_per_filter_config"]["extproc.pre"]["source_code"]["inline_string"]
    assert '["deny_all"] = false' in default_gate


def test_resources_and_versions(load: Load) -> None:
    policy = load(route("a", "/a/", JWT, RBAC))
    first, second = compile_policy(policy), compile_policy(policy)
    assert first.version == second.version  # equal resources, equal version: no spurious push
    assert first.version.startswith(policy.revision)
    assert set(first.resources) == {CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE}
    other = compile_policy(policy, Options(upstream=Options().processor))
    assert other.version != first.version
    assert "route a: native" in explain(first)


@pytest.mark.e2e  # runs Envoy (in validate mode)
def test_static_render_of_the_demo_policy_is_valid_envoy_config(load: Load, tmp_path: Path) -> None:
    from extproc.policy.loader import load_policy_dir
    from extproc.runtime import Runtime

    policy = load_policy_dir(REPO / "policies", Runtime(quota_backend="memory"))
    snapshot = compile_policy(policy)
    assert {p.route: p.engine for p in snapshot.plans}["api"] == "native"
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(static_bootstrap(snapshot)))
    result = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unreadable_oidc_discovery_keeps_the_route_in_the_processor(load: Load) -> None:
    unreachable = {**ISSUER, "jwks": {"discovery": "http://127.0.0.1:9"}}  # discard port: refused at once
    policy = load(route("a", "/a/", {"type": "jwt", "config": {"issuers": [unreachable]}}))
    plan = _plans(policy)["a"]
    assert plan.engine == "ext_authz"
    assert "OIDC discovery http://127.0.0.1:9/.well-known/openid-configuration unreadable" in plan.reason
