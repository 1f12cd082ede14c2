"""A snapshot as readable config: the per-route plan, and the resources as a
static Envoy bootstrap (the route table inlined) that ``envoy --mode
validate`` accepts and that runs without the control plane."""

from __future__ import annotations

import copy
from typing import Any

from extproc.xds.resources import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, to_dict
from extproc.xds.snapshot import Snapshot

HCM = "envoy.filters.network.http_connection_manager"


def resources_dict(snapshot: Snapshot) -> dict[str, list[dict[str, Any]]]:
    names = {CLUSTER_TYPE: "clusters", LISTENER_TYPE: "listeners", ROUTE_TYPE: "routes"}
    return {names[t]: [to_dict(m) for m in messages] for t, messages in snapshot.resources.items()}


def static_bootstrap(snapshot: Snapshot, admin_port: int = 9901) -> dict[str, Any]:
    resources = resources_dict(snapshot)
    routes = {r["name"]: r for r in resources["routes"]}
    listeners = copy.deepcopy(resources["listeners"])
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                if network_filter["name"] != HCM:
                    continue
                hcm = network_filter["typed_config"]
                rds = hcm.pop("rds")
                hcm["route_config"] = routes[rds["route_config_name"]]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": resources["clusters"]},
    }


def explain(snapshot: Snapshot) -> str:
    lines = [f"revision {snapshot.revision}, xDS version {snapshot.version}"]
    for plan in snapshot.plans:
        lines.append(f"route {plan.route}: {plan.engine}" + (f" ({plan.reason})" if plan.reason else ""))
        for p in plan.capabilities:
            lines.append(f"  {p.capability:<13} {p.mode:<8} {p.engine}" + (f"  {p.reason}" if p.reason else ""))
    return "\n".join(lines)
