"""The ``extproc`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys

from extproc import logs


def _serve(args: argparse.Namespace) -> int:
    from extproc.policy.loader import PolicyLoadError
    from extproc.server import ServerOptions, run

    options = ServerOptions(host=args.host, port=args.port, policies=args.policies, workers=args.workers,
                            reload_interval=args.reload_interval, grace=args.grace,
                            quota_backend=args.quota_backend)
    try:
        return run(options)
    except PolicyLoadError as exc:
        print(f"extproc: policy in {args.policies} is invalid:\n{exc}", file=sys.stderr)
        return 2


def _validate(args: argparse.Namespace) -> int:
    from extproc.policy.loader import PolicyLoadError, load_policy_dir

    try:
        policy = load_policy_dir(args.directory)
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    print(f"ok: {len(policy.files)} file(s), {len(policy.routes)} route(s), revision {policy.revision}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from extproc.capabilities.base import describe

    print(json.dumps(describe(), indent=2))
    return 0


def _up(args: argparse.Namespace) -> int:
    from extproc.local.up import up

    return up(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="extproc", description="Governance processor for Envoy.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ext_authz/ext_proc gRPC server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--policies", default="policies", help="policy directory (hot-reloaded)")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--reload-interval", type=float, default=1.0, help="seconds between policy change checks")
    serve.add_argument("--grace", type=float, default=10.0, help="seconds to drain in-flight streams on SIGTERM")
    serve.add_argument("--quota-backend", default=os.environ.get("EXTPROC_QUOTA_BACKEND", "memory"),
                       help="memory (default) or a redis:// URL shared by all replicas")
    serve.set_defaults(func=_serve)

    up = sub.add_parser("up", help="run processor + Envoy + demo upstream locally (no Docker)")
    up.add_argument("--listen-port", type=int, default=10000, help="Envoy's listener on 127.0.0.1")
    up.add_argument("--policies", default=None, help="policy directory (default: ./policies, else the bundled demo)")
    up.add_argument("--workers", type=int, default=1)
    up.set_defaults(func=_up)

    policy = sub.add_parser("policy", help="policy tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    validate = policy_sub.add_parser("validate", help="check a policy directory or file; non-zero on errors")
    validate.add_argument("directory")
    validate.set_defaults(func=_validate)
    schema = policy_sub.add_parser("schema", help="print each capability's config JSON schema")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    return args.func(args)
