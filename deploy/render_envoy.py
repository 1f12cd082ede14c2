"""Derive the compose and Kubernetes Envoy configs from envoy/gateway.yaml.

envoy/gateway.yaml is the one hand-written gateway config (listeners,
filters, routes, tracing). Compose and Kubernetes run the same gateway with
other addresses, so their configs are generated from it, never edited:

    python deploy/render_envoy.py          # rewrite both after changing envoy/gateway.yaml
    python deploy/render_envoy.py --check  # exit 1 if they are stale (tests/test_deploy.py does this)

What changes:

* listeners bind 0.0.0.0 (containers are reached on their own address);
* clusters resolve service names (STRICT_DNS, IPv4) instead of 127.0.0.1:
  ``governance`` the processors (Kubernetes: a headless Service, so Envoy
  balances over every replica), ``upstream`` the demo upstream, ``otel``
  Jaeger's OTLP/gRPC port, any other cluster the demo upstream on its port;
* ``governance`` also ejects a replica that keeps failing (outlier
  detection; its grpc.health.v1 health check comes from the gateway config);
* compose exposes Envoy's admin on 0.0.0.0 (compose publishes it on the
  host's loopback only); Kubernetes keeps it on 127.0.0.1 and probes
  ``/healthz`` on the listener instead.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GATEWAY = REPO / "envoy" / "gateway.yaml"
COMPOSE = REPO / "envoy" / "gateway-compose.yaml"
KUBERNETES = REPO / "deploy" / "kubernetes" / "envoy-config.yaml"

COMPOSE_HOSTS = {"governance": "processor", "upstream": "upstream", "otel": "jaeger"}
KUBERNETES_HOSTS = {
    "governance": "extproc-headless.extproc.svc.cluster.local",
    "upstream": "demo-upstream.extproc.svc.cluster.local",
    "otel": "jaeger.extproc.svc.cluster.local",
}
DEFAULT_HOST = {"compose": "upstream", "kubernetes": "demo-upstream.extproc.svc.cluster.local"}

OUTLIER_DETECTION = {
    "consecutive_gateway_failure": 5,
    "interval": "5s",
    "base_ejection_time": "15s",
    "max_ejection_percent": 50,
}


def _header(target: str) -> str:
    return (f"# GENERATED from envoy/gateway.yaml by deploy/render_envoy.py for {target}: do not edit,\n"
            "# change envoy/gateway.yaml (it has the comments) and run `python deploy/render_envoy.py`.\n")


def derive(gateway: dict, target: str) -> dict:
    """The gateway config with ``target``'s (``compose`` or ``kubernetes``) addresses."""
    hosts = COMPOSE_HOSTS if target == "compose" else KUBERNETES_HOSTS
    config = copy.deepcopy(gateway)
    if target == "compose":
        config["admin"]["address"]["socket_address"]["address"] = "0.0.0.0"
    resources = config["static_resources"]
    for listener in resources["listeners"]:
        listener["address"]["socket_address"]["address"] = "0.0.0.0"
    for cluster in resources["clusters"]:
        name = cluster["name"]
        host = hosts.get(name, DEFAULT_HOST[target])
        rebuilt = {}
        for key, value in cluster.items():
            if key == "type":
                rebuilt["type"] = "STRICT_DNS"
                rebuilt["dns_lookup_family"] = "V4_ONLY"
                continue
            rebuilt[key] = value
        if name == "governance":
            rebuilt["outlier_detection"] = dict(OUTLIER_DETECTION)
        for group in rebuilt["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                endpoint["endpoint"]["address"]["socket_address"]["address"] = host
        cluster.clear()
        cluster.update(rebuilt)
    return config


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors/aliases (the listeners share one HCM in the
    source), multi-line strings as literal blocks."""

    def ignore_aliases(self, data) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(config: dict) -> str:
    return yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=False)


def compose_text(gateway: dict) -> str:
    return _header("compose.yaml") + _dump(derive(gateway, "compose"))


def kubernetes_text(gateway: dict) -> str:
    body = _dump(derive(gateway, "kubernetes"))
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "envoy-gateway", "namespace": "extproc", "labels": {"app.kubernetes.io/name": "envoy-gateway",
                                                                              "app.kubernetes.io/part-of": "extproc"}},
        "data": {"envoy.yaml": body},
    }
    return _header("deploy/kubernetes (the envoy-gateway ConfigMap)") + _dump(configmap)


def outputs() -> dict[Path, str]:
    gateway = yaml.safe_load(GATEWAY.read_text())
    return {COMPOSE: compose_text(gateway), KUBERNETES: kubernetes_text(gateway)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the generated files are current")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print("stale (run `python deploy/render_envoy.py`): " + ", ".join(str(p.relative_to(REPO)) for p in stale),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
