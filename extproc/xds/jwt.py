"""``jwt`` → Envoy's jwt_authn (signature, issuer, audience, expiry, JWKS
fetching and caching) plus the gate's identity stage (allowed algorithms,
required claims, claim mapping and the x-auth-* headers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from extproc.capabilities.base import Capability
from extproc.capabilities.jwt_auth import JwtConfig
from extproc.xds import discovery
from extproc.xds.plan import NotNative

FILTER = "envoy.filters.http.jwt_authn"
PAYLOAD_KEY = "payload"
HEADER_KEY = "header"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(slots=True)
class JwtNative:
    """One route's share of the jwt_authn filter and of the gate."""

    providers: dict[str, dict[str, Any]]
    requirement: dict[str, Any]
    token_header: dict[str, Any]
    issuers: dict[str, dict[str, Any]]
    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)


def compile_jwt(route: str, capability: Capability[Any]) -> JwtNative:
    config = capability.config
    assert isinstance(config, JwtConfig)
    if len(config.sources) != 1 or config.sources[0].header is None:
        raise NotNative("only a single header token source is compiled (cookies, query and several sources run here)")
    source = config.sources[0]
    assert source.header is not None
    providers: dict[str, dict[str, Any]] = {}
    issuers: dict[str, dict[str, Any]] = {}
    clusters: dict[str, dict[str, Any]] = {}
    for index, issuer in enumerate(config.issuers):
        name = f"{route}#{index}"
        provider: dict[str, Any] = {
            "issuer": issuer.issuer,
            "audiences": list(issuer.audiences),
            "from_headers": [{"name": source.header, "value_prefix": source.prefix}],
            "forward": config.forward_token,
            "payload_in_metadata": PAYLOAD_KEY,
            "header_in_metadata": HEADER_KEY,
            "clock_skew_seconds": int(issuer.leeway),
            "require_expiration": "exp" in issuer.required_claims,
        }
        if config.cache_size:
            provider["jwt_cache_config"] = {"jwt_cache_size": config.cache_size}
        jwks = issuer.jwks
        if jwks.file is not None:
            path = capability.runtime.resolve_path(jwks.file)
            try:
                provider["local_jwks"] = {"inline_string": path.read_text()}
            except OSError as exc:
                raise NotNative(f"JWKS file unreadable: {exc}") from None
        else:
            document = jwks.discovery_url()
            url = jwks.url or discovery.jwks_uri(document or "", issuer.issuer, jwks.refresh_interval)
            cluster_name, cluster = jwks_cluster(url)
            clusters[cluster_name] = cluster
            provider["remote_jwks"] = {
                "http_uri": {"uri": url, "cluster": cluster_name, "timeout": "5s"},
                "cache_duration": f"{jwks.refresh_interval}s",
                "async_fetch": {},
            }
        providers[name] = provider
        issuers[issuer.issuer] = {
            "issuer": issuer.issuer,
            "algorithms": dict.fromkeys(issuer.algorithms, True),
            "required": list(issuer.required_claims),
            "claims": issuer.claims.model_dump(),
        }
    alternatives: list[dict[str, Any]] = [{"provider_name": name} for name in providers]
    if not config.required:
        alternatives.append({"allow_missing": {}})
    requirement = alternatives[0] if len(alternatives) == 1 else {"requires_any": {"requirements": alternatives}}
    return JwtNative(
        providers=providers,
        requirement=requirement,
        token_header={"name": source.header, "prefix": source.prefix, "max_bytes": config.max_token_bytes},
        issuers=issuers,
        clusters=clusters,
    )


def jwks_cluster(url: str) -> tuple[str, dict[str, Any]]:
    """A DNS cluster for a remote JWKS host (TLS for https)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    name = f"jwks|{host}|{port}"
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STRICT_DNS",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
                # Keys decide who is authenticated: verify the JWKS host.
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": {"filename": SYSTEM_CA_BUNDLE},
                        "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": host}}],
                    }
                },
            },
        }
    return name, cluster
