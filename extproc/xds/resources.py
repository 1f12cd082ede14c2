"""Envoy v3 resources: JSON-shaped dicts turned into xds-protos messages.

Building the dicts reads like Envoy's own YAML; ``ParseDict`` then checks
every field name and type against the protos, so a typo is an error at
compile time, not a NACK."""

from __future__ import annotations

import json
from typing import Any

# Imported for their descriptors: ParseDict resolves "@type" through them.
import envoy.extensions.access_loggers.filters.cel.v3.cel_pb2
import envoy.extensions.filters.http.ext_authz.v3.ext_authz_pb2
import envoy.extensions.filters.http.ext_proc.v3.ext_proc_pb2
import envoy.extensions.filters.http.jwt_authn.v3.config_pb2
import envoy.extensions.filters.http.local_ratelimit.v3.local_rate_limit_pb2
import envoy.extensions.filters.http.lua.v3.lua_pb2
import envoy.extensions.filters.http.rbac.v3.rbac_pb2
import envoy.extensions.filters.http.router.v3.router_pb2
import envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2
import envoy.extensions.transport_sockets.tls.v3.tls_pb2
import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401
from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_pb2 import RouteConfiguration
from google.protobuf import json_format  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
# The order Envoy needs them in: clusters before the listeners and routes
# that name them (make before break).
TYPE_ORDER = (CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE)
_MESSAGES: dict[str, type[Message]] = {
    LISTENER_TYPE: Listener,
    ROUTE_TYPE: RouteConfiguration,
    CLUSTER_TYPE: Cluster,
}


def to_message(type_url: str, resource: dict[str, Any]) -> Message:
    message = _MESSAGES[type_url]()
    json_format.ParseDict(resource, message)
    return message


def to_dict(message: Message) -> dict[str, Any]:
    # Through JSON: MessageToDict hands Any payloads back as OrderedDicts.
    parsed: dict[str, Any] = json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))
    return parsed


def static_cluster(name: str, host: str, port: int, http2: bool = False, timeout: str = "1s") -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
