"""Every Envoy config we ship must be one Envoy accepts."""

from pathlib import Path

import pytest
import yaml

from extproc.local.envoy import render, uses_certs, validate

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted([*REPO.glob("envoy/**/*.yaml"), *REPO.glob("bench/**/envoy/*.yaml"), *REPO.glob("bench/envoy/*.yaml")])


def test_there_are_configs():
    assert any(p.name == "gateway.yaml" for p in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_envoy_accepts(config, demo_certs, tmp_path):
    if uses_certs(config):  # validation opens the TLS files: point them at real ones
        rendered = tmp_path / config.name
        rendered.write_text(yaml.safe_dump(render(config, certs_dir=demo_certs)))
        config = rendered
    result = validate(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_rejects_unknown_names():
    with pytest.raises(KeyError):
        render(REPO / "envoy/gateway.yaml", {"no-such-cluster": 1})


# -- what every shipped gateway config must say --------------------------------
#
# Shipped = the configs users run: envoy/*.yaml and the generated Kubernetes
# ConfigMap (bench/ configs measure Envoy itself and are not deployed). The
# checks walk each config's structure, so a new listener, filter or cluster
# that forgets one of these fails here.

from extproc.headers import ROUTING_OVERRIDE_HEADERS  # noqa: E402

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
EXT_AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
EXT_PROC = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
PROCESSOR_HEALTH_CHECK = {
    "interval": "1s",
    "timeout": "0.5s",
    "unhealthy_threshold": 1,
    "healthy_threshold": 1,
    "grpc_health_check": {},
}


def _rendered_by_the_control_plane() -> dict:
    """What `extproc xds serve` pushes for the demo policy, as one static
    config: its listeners must hold the same line as the hand-written ones."""
    import argparse

    from extproc.policy.loader import load_policy_dir
    from extproc.runtime import Runtime
    from extproc.xds.__main__ import _options
    from extproc.xds.compiler import compile_policy
    from extproc.xds.render import static_bootstrap

    policy = load_policy_dir(REPO / "policies", Runtime(quota_backend="memory"))
    args = argparse.Namespace(
        listen="127.0.0.1:10000",
        upstream="127.0.0.1:8080",
        processor="127.0.0.1:9001",
        processor_only=False,
        mtls_listen=None,
        tls_cert=None,
        tls_key=None,
        tls_ca=None,
    )
    return static_bootstrap(compile_policy(policy, _options(args, "memory")))


def _shipped() -> dict[str, dict]:
    configs = {
        str(p.relative_to(REPO)): yaml.safe_load(p.read_text())
        for p in sorted(REPO.glob("envoy/*.yaml"))
        if p.name != "xds-bootstrap.yaml"  # no listeners of its own: the control plane's are checked below
    }
    configmap = yaml.safe_load((REPO / "deploy/kubernetes/envoy-config.yaml").read_text())
    configs["deploy/kubernetes/envoy-config.yaml"] = yaml.safe_load(configmap["data"]["envoy.yaml"])
    configs["xds render (demo policy)"] = _rendered_by_the_control_plane()
    return configs


SHIPPED = _shipped()


def _typed(node, type_url: str) -> list[dict]:
    """Every mapping under ``node`` whose ``@type`` is ``type_url``."""
    found = []
    if isinstance(node, dict):
        if node.get("@type") == type_url:
            found.append(node)
        for value in node.values():
            found.extend(_typed(value, type_url))
    elif isinstance(node, list):
        for value in node:
            found.extend(_typed(value, type_url))
    return found


@pytest.mark.parametrize("name", SHIPPED)
def test_every_listener_rejects_underscore_headers_and_normalizes_paths(name):
    config = SHIPPED[name]
    managers = _typed(config, HCM)
    assert len(managers) >= len(config["static_resources"]["listeners"])
    for manager in managers:
        assert manager["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
        assert manager["normalize_path"] is True and manager["merge_slashes"] is True
        assert manager["path_with_escaped_slashes_action"] in ("UNESCAPE_AND_REDIRECT", "REJECT_REQUEST")
        removed = set(manager["route_config"]["request_headers_to_remove"])
        assert removed >= ROUTING_OVERRIDE_HEADERS, sorted(ROUTING_OVERRIDE_HEADERS - removed)
        # Envoy's own 503/504 (processor down, overloaded, too slow) carry Retry-After
        # (the control plane adds mappers of its own for native refusals).
        retry_mappers = [
            mapper
            for mapper in manager["local_reply_config"]["mappers"]
            if {
                f.get("status_code_filter", {}).get("comparison", {}).get("op"): f.get("status_code_filter", {})
                .get("comparison", {})
                .get("value", {})
                .get("default_value")
                for f in mapper.get("filter", {}).get("and_filter", {}).get("filters", [])
            }
            == {"GE": 503, "LE": 504}
        ]
        (mapper,) = retry_mappers
        assert mapper["headers_to_add"] == [
            {"header": {"key": "retry-after", "value": "1"}, "append_action": "ADD_IF_ABSENT"}
        ]


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    return float(duration[:-1])


@pytest.mark.parametrize("name", SHIPPED)
def test_every_processor_filter_fails_closed_with_503_to_a_health_checked_cluster(name):
    config = SHIPPED[name]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    filters = _typed(config, EXT_AUTHZ) + _typed(config, EXT_PROC)
    assert filters
    for processor_filter in filters:
        assert processor_filter.get("failure_mode_allow", False) is False  # absent: the proto default
        assert processor_filter["status_on_error"] == {"code": "ServiceUnavailable"}
        cluster = clusters[processor_filter["grpc_service"]["envoy_grpc"]["cluster_name"]]
        # A gone or draining replica is retried on another, only for failures
        # where the processor never saw the request (no double-counted quota).
        retry = processor_filter["grpc_service"]["retry_policy"]
        assert {"connect-failure", "refused-stream"} <= set(retry["retry_on"].split(","))
        assert not set(retry["retry_on"].split(",")) & {"5xx", "reset", "unavailable", "gateway-error", "internal"}
        # Envoy takes the back-off's max_interval as the per-try timeout
        # (envoyproxy/envoy#38847): shorter than the call's timeout, a slow
        # check fails early (a burst of 200 lost 150 to a 50 ms value).
        timeout = _seconds(processor_filter["grpc_service"]["timeout"])
        assert _seconds(retry["retry_back_off"]["max_interval"]) >= timeout
        (health_check,) = cluster["health_checks"]
        for key in ("interval", "timeout"):  # protobuf JSON writes 0.5s as 0.500s
            health_check = {**health_check, key: f"{_seconds(health_check[key]):g}s"}
        assert PROCESSOR_HEALTH_CHECK.items() <= health_check.items(), cluster["name"]
        # Before any traffic Envoy checks every no_traffic_interval (60 s by default).
        assert health_check.get("no_traffic_interval", "60s") == "1s"
