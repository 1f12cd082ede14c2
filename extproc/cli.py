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


def _token(args: argparse.Namespace) -> int:
    from extproc.local.demo_keys import load_demo_key, mint

    extra = {}
    if args.agent_id:
        extra["agent_id"] = args.agent_id
    if args.scope:
        extra["scope"] = " ".join(args.scope)
    act = None
    for actor in reversed(args.act or []):  # --act outer --act inner → {"sub": outer, "act": {"sub": inner}}
        act = {"sub": actor, **({"act": act} if act else {})}
    if act:
        extra["act"] = act
    roles = [r for part in args.roles for r in part.split(",") if r]
    print(mint(load_demo_key(), sub=args.sub, roles=roles, tenant=args.tenant, ttl=args.ttl, extra=extra))
    return 0


def _certs(args: argparse.Namespace) -> int:
    from extproc.local.certs import DEMO_CLIENT_ID, generate

    paths = generate(args.out, args.spiffe_id or [DEMO_CLIENT_ID])
    for name, path in paths.items():
        print(f"{name:12} {path}")
    return 0


def _api_key(args: argparse.Namespace) -> int:
    from extproc.capabilities.api_key import new_key

    key, digest = new_key()
    print(f"key:  {key}\n      (give this to the consumer once; it is not stored anywhere)")
    print(f"hash: {digest}\n      (put this in the policy: keys: [{{id: {args.id}, hash: {digest}, subject: {args.id}}}])")
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
    up.add_argument("--mtls-port", type=int, default=10443, help="Envoy's mTLS listener on 127.0.0.1")
    up.add_argument("--certs", default=".certs", help="demo certificates (generated if missing)")
    up.add_argument("--workers", type=int, default=1)
    up.set_defaults(func=_up)

    token = sub.add_parser("token", help="mint a demo JWT that `extproc up`'s demo policy trusts")
    token.add_argument("--sub", default="alice")
    token.add_argument("--roles", action="append", default=[], help="comma-separated; repeatable")
    token.add_argument("--tenant")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.add_argument("--agent-id")
    token.add_argument("--scope", action="append")
    token.add_argument("--act", action="append", help="delegation chain, outermost actor first; repeatable")
    token.set_defaults(func=_token)

    certs = sub.add_parser("certs", help="generate a demo CA, server and client certificates for mTLS")
    certs.add_argument("--out", default=".certs")
    certs.add_argument("--spiffe-id", action="append", help="client certificate URI SAN; repeatable")
    certs.set_defaults(func=_certs)

    api_key = sub.add_parser("api-key", help="generate an API key and the hash a policy stores")
    api_key.add_argument("--id", default="consumer")
    api_key.set_defaults(func=_api_key)

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
