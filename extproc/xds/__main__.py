"""``python -m extproc.xds serve|render``: the control plane and its explain."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

import yaml

from extproc.policy.loader import PolicyLoadError, load_policy_dir
from extproc.runtime import Runtime
from extproc.xds.compiler import Endpoint, Options, compile_policy
from extproc.xds.render import explain, resources_dict, static_bootstrap


def _options(args: argparse.Namespace, quota_backend: str) -> Options:
    return Options(
        listen=Endpoint.parse(args.listen),
        upstream=Endpoint.parse(args.upstream),
        processor=Endpoint.parse(args.processor),
        quota_backend=quota_backend,
        native=not args.processor_only,
        mtls_listen=Endpoint.parse(args.mtls_listen) if args.mtls_listen else None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_ca=args.tls_ca,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m extproc.xds")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "serve the compiled policy over ADS"), ("render", "print the plan and config")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--policies", required=True, help="policy directory (or file)")
        cmd.add_argument("--listen", default="127.0.0.1:10000", help="the gateway listener Envoy opens")
        cmd.add_argument("--upstream", default="127.0.0.1:8080", help="the upstream cluster")
        cmd.add_argument("--processor", default="127.0.0.1:50051", help="extproc serve, for processor routes")
        cmd.add_argument("--quota-backend", default=None, help="memory (native local_ratelimit) or redis")
        cmd.add_argument("--processor-only", action="store_true", help="compile nothing natively")
        cmd.add_argument("--mtls-listen", default=None, help="also open the mutual-TLS listener here")
        cmd.add_argument("--tls-cert", default="/etc/extproc/certs/server.pem", help="server certificate (mTLS)")
        cmd.add_argument("--tls-key", default="/etc/extproc/certs/server.key", help="its key")
        cmd.add_argument("--tls-ca", default="/etc/extproc/certs/ca.pem", help="CA client certificates must chain to")
    serve = sub.choices["serve"]
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=18000, help="the ADS port Envoy bootstraps against")
    serve.add_argument("--reload-interval", type=float, default=0.2, help="seconds between policy scans")
    render = sub.choices["render"]
    render.add_argument("--format", choices=("yaml", "json"), default="yaml")
    render.add_argument("--static", action="store_true", help="a complete static Envoy config, routes inlined")
    render.add_argument("--plan-only", action="store_true", help="only the per-route plan")
    return parser


def _render(args: argparse.Namespace) -> int:
    runtime = Runtime(quota_backend=args.quota_backend or "memory")
    try:
        policy = load_policy_dir(args.policies, runtime)
    except PolicyLoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    snapshot = compile_policy(policy, _options(args, runtime.quota_backend))
    print(explain(snapshot))
    if args.plan_only:
        return 0
    config = static_bootstrap(snapshot) if args.static else resources_dict(snapshot)
    print("---")
    if args.format == "json":
        print(json.dumps(config, indent=2))
    else:
        print(yaml.safe_dump(config, sort_keys=False, width=120))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "render":
        return _render(args)
    from extproc.xds.server import serve

    return asyncio.run(serve(args, _options))


if __name__ == "__main__":
    sys.exit(main())
