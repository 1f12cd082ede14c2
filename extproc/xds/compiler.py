"""Policy → Envoy: a ``PolicySet`` compiled into one consistent snapshot of
Envoy v3 resources (the gateway listener, its route table, the clusters they
name) plus a per-route plan saying what runs natively and why.

A route runs natively when every one of its capabilities has an exact native
form (``jwt``, ``rbac``, ``mtls``, ``header_match``, ``headers``, memory
``quota``); then Envoy's own filters govern it and the processor is never
called. Otherwise the whole route keeps ext_authz (or ext_proc, when it
needs bodies), bound to its policy route by name exactly as in
``envoy/gateway.yaml``: one engine decides a request, never half of each.

Filter chain (each filter disabled by default, enabled per route by its
per-route config; the order is the processor's priority order):

    extproc.pre (Lua)  → jwt_authn → extproc.identity (Lua) → extproc.rbac_deny
    → extproc.rbac_allow → extproc.header_match (Lua) → local_ratelimit
    → extproc.response (Lua) → ext_authz → ext_proc → router
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extproc.capabilities.base import Capability
from extproc.capabilities.header_match import HeaderMatchConfig, HeaderRule
from extproc.capabilities.headers import HeadersConfig
from extproc.capabilities.mtls import MtlsConfig
from extproc.context import Mode, Phase
from extproc.headers import ROUTING_OVERRIDE_HEADERS
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.policy.schema import RouteMatch
from extproc.xds import jwt, ratelimit, rbac
from extproc.xds.lua import gate_source
from extproc.xds.patterns import glob_to_re2, globs_to_lua
from extproc.xds.plan import NotNative, Placement, RouteEngine, RoutePlan
from extproc.xds.refusals import local_reply_config
from extproc.xds.resources import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, TYPE_ORDER, static_cluster, to_message
from extproc.xds.snapshot import Snapshot
from extproc.xds.source import route_matches

LISTENER = "gateway"
MTLS_LISTENER = "gateway_mtls"
ROUTE_CONFIG = "gateway"
UPSTREAM = "upstream"
GOVERNANCE = "governance"
PRE, IDENTITY, HEADER_MATCH = "extproc.pre", "extproc.identity", "extproc.header_match"
RESPONSE = "extproc.response"
RBAC_DENY, RBAC_ALLOW = "extproc.rbac_deny", "extproc.rbac_allow"
EXT_AUTHZ, EXT_PROC = "envoy.filters.http.ext_authz", "envoy.filters.http.ext_proc"
NATIVE_CAPABILITIES = frozenset({"jwt", "rbac", "mtls", "header_match", "headers", "quota"})
_TYPES = "type.googleapis.com/envoy.extensions.filters"
LUA_PER_ROUTE = f"{_TYPES}.http.lua.v3.LuaPerRoute"
BODY_PHASES = (Phase.REQUEST_BODY, Phase.RESPONSE_BODY)


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected HOST:PORT, got {text!r}")
        return cls(host, int(port))


@dataclass(frozen=True, slots=True)
class Options:
    listen: Endpoint = Endpoint("127.0.0.1", 10000)
    upstream: Endpoint = Endpoint("127.0.0.1", 8080)
    processor: Endpoint = Endpoint("127.0.0.1", 50051)
    quota_backend: str = "memory"
    route_timeout: str = "15s"
    processor_timeout: str = "0.25s"
    native: bool = True  # False: every route through the processor (the reference engine)
    # The mutual-TLS listener (as gateway_mtls in envoy/gateway.yaml): the
    # peer's verified URI SAN is what the `mtls` capability reads.
    mtls_listen: Endpoint | None = None
    tls_cert: str = "/etc/extproc/certs/server.pem"
    tls_key: str = "/etc/extproc/certs/server.key"
    tls_ca: str = "/etc/extproc/certs/ca.pem"


@dataclass(slots=True)
class _NativeRoute:
    """One route's per-filter configs and route-level edits."""

    per_filter: dict[str, dict[str, Any]] = field(default_factory=dict)
    pre: dict[str, Any] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    request_headers_to_add: list[dict[str, Any]] = field(default_factory=list)
    request_headers_to_remove: list[str] = field(default_factory=list)
    response_set: list[tuple[str, str]] = field(default_factory=list)
    response_remove: list[str] = field(default_factory=list)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    requirement: dict[str, Any] | None = None
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)


def _overwrite(name: str, value: str) -> dict[str, Any]:
    return {"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _lua(stage: str, settings: dict[str, Any]) -> dict[str, Any]:
    return {"@type": LUA_PER_ROUTE, "source_code": {"inline_string": gate_source(stage, settings)}}


def _header_rule(rule: HeaderRule) -> dict[str, Any]:
    if rule.regex is not None:
        raise NotNative("regex header rules (Python regex semantics) run in the processor")
    out: dict[str, Any] = {"name": rule.name}
    if rule.present is not None:
        out["present"] = rule.present
    elif rule.exact is not None:
        out["exact"] = rule.exact
    else:
        out["prefix"] = rule.prefix
    return out


def _add_jwt(native: _NativeRoute, route: str, cap: Capability[Any]) -> None:
    compiled = jwt.compile_jwt(route, cap)
    native.providers.update(compiled.providers)
    native.requirement = compiled.requirement
    native.clusters.update(compiled.clusters)
    native.pre["token_header"] = compiled.token_header
    native.identity["jwt"] = {"issuers": compiled.issuers}
    native.per_filter[jwt.FILTER] = {
        "@type": f"{_TYPES}.http.jwt_authn.v3.PerRouteConfig",
        "requirement_name": route,
    }


def _add_mtls(native: _NativeRoute, route: str, cap: Capability[Any]) -> None:
    config = cap.config
    assert isinstance(config, MtlsConfig)
    settings = {"required": config.required, "principals": globs_to_lua(config.principals)}
    native.pre["mtls"] = settings
    native.identity["mtls"] = settings


def _add_rbac(native: _NativeRoute, route: str, cap: Capability[Any]) -> None:
    compiled = rbac.compile_rbac(cap)
    if compiled.deny is not None:
        native.per_filter[RBAC_DENY] = compiled.deny
    native.per_filter[RBAC_ALLOW] = compiled.allow


def _add_header_match(native: _NativeRoute, route: str, cap: Capability[Any]) -> None:
    config = cap.config
    assert isinstance(config, HeaderMatchConfig)
    settings = {
        "header_match": {
            "status": config.status,
            "allow": [_header_rule(r) for r in config.allow],
            "deny": [_header_rule(r) for r in config.deny],
        }
    }
    native.per_filter[HEADER_MATCH] = _lua("header_match", settings)


def _add_headers(native: _NativeRoute, route: str, cap: Capability[Any]) -> None:
    config = cap.config
    assert isinstance(config, HeadersConfig)
    native.request_headers_to_remove.extend(config.request.remove)
    native.request_headers_to_add.extend(_overwrite(k, v) for k, v in config.request.set.items())
    native.response_remove.extend(config.response.remove)
    native.response_set.extend(config.response.set.items())


_COMPILERS: dict[str, Callable[[_NativeRoute, str, Capability[Any]], None]] = {
    "jwt": _add_jwt,
    "mtls": _add_mtls,
    "rbac": _add_rbac,
    "header_match": _add_header_match,
    "headers": _add_headers,
}


def _native_route(route: CompiledRoute, options: Options) -> _NativeRoute:
    """Raises ``NotNative`` naming the first capability that has no native form."""
    native = _NativeRoute()
    seen: set[str] = set()
    for cap in route.capabilities:
        try:
            if cap.name not in NATIVE_CAPABILITIES:
                raise NotNative("no native form")
            if cap.name in seen:
                raise NotNative("attached twice to the route")
            seen.add(cap.name)
            if cap.mode is Mode.MONITOR and cap.name != "rbac":
                raise NotNative("monitor mode (only rbac has a native shadow mode)")
            if cap.name == "quota":
                compiled = ratelimit.compile_quota(cap, options.quota_backend)
                native.per_filter[ratelimit.FILTER] = compiled.per_route
                native.response_set.extend(compiled.response_headers)
            else:
                _COMPILERS[cap.name](native, route.name, cap)
        except NotNative as exc:
            raise NotNative(f"{cap.name}: {exc}") from None
    native.per_filter[PRE] = _lua("pre", native.pre)
    native.per_filter[IDENTITY] = _lua("identity", native.identity)
    if native.response_set or native.response_remove:
        edits = {"set": [list(pair) for pair in native.response_set], "remove": native.response_remove}
        native.per_filter[RESPONSE] = _lua("response", edits)
    return native


def plan_route(route: CompiledRoute, options: Options) -> tuple[RoutePlan, _NativeRoute | None]:
    def placements(engine: str, reason: str, failed: str | None = None) -> tuple[Placement, ...]:
        return tuple(
            Placement(
                c.name,
                c.mode.value,
                "native" if engine == "native" else "processor",
                reason if failed is None or c.name == failed else f"route runs in the processor ({failed})",
            )
            for c in route.capabilities
        )

    body_phases = [p.value for p in BODY_PHASES if route.needs(p)]
    why: str | None = None
    failed: str | None = None
    if body_phases:
        why = f"needs {', '.join(body_phases)}: ext_proc"
    elif not options.native:
        why = "native compilation off"
    elif route.case_insensitive:
        why = "case-insensitive match: capabilities judge the folded path"
    native: _NativeRoute | None = None
    if why is None:
        try:
            native = _native_route(route, options)
        except NotNative as exc:
            why = str(exc)
            failed = why.split(":", 1)[0]
    if native is not None:
        return RoutePlan(route.name, "native", placements("native", "")), native
    engine: RouteEngine = "ext_proc" if body_phases else "ext_authz"
    assert why is not None
    return RoutePlan(route.name, engine, placements("processor", why, failed), why), None


def _route_match(match: RouteMatch | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if match is None:
        return out
    if match.path_exact is not None:
        out["path"] = match.path_exact
    elif match.path_prefix is not None:
        out["prefix"] = match.path_prefix
    elif match.path_regex is not None:
        out["safe_regex"] = {"regex": match.path_regex}
    else:
        out["prefix"] = "/"
    if match.case_insensitive:
        out["case_sensitive"] = False
    headers = []
    if match.methods:
        headers.append({"name": ":method", "string_match": {"safe_regex": {"regex": "|".join(match.methods)}}})
    if match.hosts:
        hosts = "|".join(f"(?:{glob_to_re2(h)})" for h in match.hosts)
        headers.append({"name": ":authority", "string_match": {"safe_regex": {"regex": f"(?:{hosts})(?::[0-9]+)?"}}})
    if headers:
        out["headers"] = headers
    return out


def _processor_per_filter(route: str, engine: str) -> dict[str, dict[str, Any]]:
    if engine == "ext_proc":
        return {
            EXT_PROC: {
                "@type": f"{_TYPES}.http.ext_proc.v3.ExtProcPerRoute",
                "overrides": {
                    "processing_mode": {
                        "request_header_mode": "SEND",
                        "response_header_mode": "SEND",
                        "request_body_mode": "BUFFERED",
                        "response_body_mode": "STREAMED",
                        "request_trailer_mode": "SKIP",
                        "response_trailer_mode": "SKIP",
                    },
                    "grpc_initial_metadata": [{"key": "x-governance-route", "value": route}],
                },
            }
        }
    return {
        EXT_AUTHZ: {
            "@type": f"{_TYPES}.http.ext_authz.v3.ExtAuthzPerRoute",
            "check_settings": {"context_extensions": {"route": route}},
        }
    }


def _envoy_route(name: str, match: dict[str, Any], options: Options, **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "name": name,
        "match": match,
        "route": {"cluster": UPSTREAM, "timeout": options.route_timeout},
    }
    route.update({k: v for k, v in extra.items() if v})
    return route


@dataclass(slots=True)
class _Built:
    routes: list[dict[str, Any]] = field(default_factory=list)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    requirements: dict[str, dict[str, Any]] = field(default_factory=dict)
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    plans: list[RoutePlan] = field(default_factory=list)


def _build_routes(policy: PolicySet, options: Options, matches: dict[str, RouteMatch | None]) -> _Built:
    built = _Built()
    for route in policy.routes.values():
        plan, native = plan_route(route, options)
        if route.matcher is None:
            # Reachable only by a binding Envoy makes: nothing to bind it to here.
            plan = RoutePlan(
                route.name, "unexposed", plan.capabilities, "no match: not exposed by the generated routes"
            )
            built.plans.append(plan)
            continue
        built.plans.append(plan)
        match = _route_match(matches.get(route.name))
        if native is None:
            built.routes.append(
                _envoy_route(
                    route.name, match, options, typed_per_filter_config=_processor_per_filter(route.name, plan.engine)
                )
            )
            continue
        built.providers.update(native.providers)
        if native.requirement is not None:
            built.requirements[route.name] = native.requirement
        built.clusters.update(native.clusters)
        built.routes.append(
            _envoy_route(
                route.name,
                match,
                options,
                typed_per_filter_config=native.per_filter,
                request_headers_to_add=native.request_headers_to_add,
                request_headers_to_remove=native.request_headers_to_remove,
            )
        )
    # What no policy route claims: refused (403) or, with `unmatched: allow`,
    # passed with only the gate's path checks and header stripping.
    fallback = {PRE: _lua("pre", {"deny_all": not policy.unmatched_allow})}
    built.routes.append(_envoy_route("default", {"prefix": "/"}, options, typed_per_filter_config=fallback))
    return built


def _http_filters(built: _Built, options: Options) -> list[dict[str, Any]]:
    noop = {
        "@type": f"{_TYPES}.http.lua.v3.Lua",
        "default_source_code": {"inline_string": "function envoy_on_request(h) end"},
    }
    rbac_filter = {"@type": f"{_TYPES}.http.rbac.v3.RBAC"}
    processor = {
        "envoy_grpc": {"cluster_name": GOVERNANCE},
        "timeout": options.processor_timeout,
        "retry_policy": {
            "retry_on": "connect-failure,refused-stream,reset-before-request",
            "num_retries": 2,
            "retry_back_off": {"base_interval": "0.01s", "max_interval": options.processor_timeout},
        },
    }
    filters: list[dict[str, Any]] = [{"name": PRE, "disabled": True, "typed_config": noop}]
    if built.providers:
        filters.append(
            {
                "name": jwt.FILTER,
                "disabled": True,
                "typed_config": {
                    "@type": f"{_TYPES}.http.jwt_authn.v3.JwtAuthentication",
                    "providers": built.providers,
                    "requirement_map": built.requirements,
                },
            }
        )
    filters += [
        {"name": IDENTITY, "disabled": True, "typed_config": noop},
        {"name": RBAC_DENY, "disabled": True, "typed_config": rbac_filter},
        {"name": RBAC_ALLOW, "disabled": True, "typed_config": rbac_filter},
        {"name": HEADER_MATCH, "disabled": True, "typed_config": noop},
        {
            "name": ratelimit.FILTER,
            "disabled": True,
            "typed_config": {
                "@type": f"{_TYPES}.http.local_ratelimit.v3.LocalRateLimit",
                "stat_prefix": "extproc_quota",
            },
        },
        {"name": RESPONSE, "disabled": True, "typed_config": noop},
        {
            "name": EXT_AUTHZ,
            "disabled": True,
            "typed_config": {
                "@type": f"{_TYPES}.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "grpc_service": processor,
                "failure_mode_allow": False,
                "status_on_error": {"code": "ServiceUnavailable"},
            },
        },
        {
            "name": EXT_PROC,
            "disabled": True,
            "typed_config": {
                "@type": f"{_TYPES}.http.ext_proc.v3.ExternalProcessor",
                "grpc_service": processor,
                "failure_mode_allow": False,
                "status_on_error": {"code": "ServiceUnavailable"},
                "message_timeout": options.processor_timeout,
                "request_attributes": ["connection.uri_san_peer_certificate"],
                "allow_mode_override": True,
                "processing_mode": {
                    "request_header_mode": "SEND",
                    "response_header_mode": "SEND",
                    "request_body_mode": "NONE",
                    "response_body_mode": "NONE",
                    "request_trailer_mode": "SKIP",
                    "response_trailer_mode": "SKIP",
                },
            },
        },
        {"name": "envoy.filters.http.router", "typed_config": {"@type": f"{_TYPES}.http.router.v3.Router"}},
    ]
    return filters


def _hcm(built: _Built, options: Options, stat_prefix: str) -> dict[str, Any]:
    return {
        "@type": f"{_TYPES}.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
        "common_http_protocol_options": {"headers_with_underscores_action": "REJECT_REQUEST"},
        "request_headers_timeout": "10s",
        "stream_idle_timeout": "60s",
        "forward_client_cert_details": "SANITIZE",
        "local_reply_config": local_reply_config(),
        "rds": {"route_config_name": ROUTE_CONFIG, "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": _http_filters(built, options),
    }


def _listeners(built: _Built, options: Options) -> list[dict[str, Any]]:
    def listener(name: str, at: Endpoint, chain: dict[str, Any]) -> dict[str, Any]:
        hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": _hcm(built, options, name)}
        return {
            "name": name,
            "address": {"socket_address": {"address": at.host, "port_value": at.port}},
            "filter_chains": [{**chain, "filters": [hcm]}],
        }

    out = [listener(LISTENER, options.listen, {})]
    if options.mtls_listen is not None:
        tls = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True,
                "common_tls_context": {
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                    "tls_certificates": [
                        {
                            "certificate_chain": {"filename": options.tls_cert},
                            "private_key": {"filename": options.tls_key},
                        }
                    ],
                    "validation_context": {"trusted_ca": {"filename": options.tls_ca}},
                },
            },
        }
        out.append(listener(MTLS_LISTENER, options.mtls_listen, {"transport_socket": tls}))
    return out


def _route_configuration(built: _Built) -> dict[str, Any]:
    return {
        "name": ROUTE_CONFIG,
        # Headers that make some frameworks dispatch a request as something
        # other than what was authorized (extproc/headers.py).
        "request_headers_to_remove": sorted(ROUTING_OVERRIDE_HEADERS),
        "virtual_hosts": [{"name": LISTENER, "domains": ["*"], "routes": built.routes}],
    }


def _processor_cluster(options: Options) -> dict[str, Any]:
    cluster = static_cluster(GOVERNANCE, options.processor.host, options.processor.port, http2=True, timeout="0.25s")
    # As envoy/gateway.yaml: a dead or draining processor (NOT_SERVING for its
    # drain delay) leaves the pool within a second, so processor routes fail
    # fast with the filter's 503 instead of waiting out timeouts.
    cluster["health_checks"] = [
        {
            "timeout": "0.5s",
            "interval": "1s",
            "no_traffic_interval": "1s",
            "unhealthy_threshold": 1,
            "healthy_threshold": 1,
            "grpc_health_check": {},
        }
    ]
    return cluster


def compile_policy(policy: PolicySet, options: Options = Options()) -> Snapshot:
    built = _build_routes(policy, options, route_matches(policy))
    clusters = {
        UPSTREAM: static_cluster(UPSTREAM, options.upstream.host, options.upstream.port),
        GOVERNANCE: _processor_cluster(options),
        **built.clusters,
    }
    resources = {
        CLUSTER_TYPE: [to_message(CLUSTER_TYPE, c) for c in clusters.values()],
        LISTENER_TYPE: [to_message(LISTENER_TYPE, listener) for listener in _listeners(built, options)],
        ROUTE_TYPE: [to_message(ROUTE_TYPE, _route_configuration(built))],
    }
    digest = hashlib.sha256()
    for type_url in TYPE_ORDER:
        for message in resources[type_url]:
            digest.update(message.SerializeToString(deterministic=True))
    return Snapshot(
        version=f"{policy.revision}-{digest.hexdigest()[:8]}",
        revision=policy.revision,
        resources=resources,
        plans=tuple(built.plans),
    )
