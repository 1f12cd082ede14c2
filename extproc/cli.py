"""The ``extproc`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from extproc import logs

_N = TypeVar("_N", int, float)


def _serve(args: argparse.Namespace) -> int:
    from extproc.server import ServerOptions, StartupError, run

    options = ServerOptions(
        host=args.host,
        port=args.port,
        policies=args.policies,
        workers=args.workers,
        reload_interval=args.reload_interval,
        grace=args.grace,
        drain_delay=args.drain_delay,
        max_concurrent=args.max_concurrent,
        max_failed_starts=args.max_failed_starts,
        last_good=args.last_good,
        quota_backend=args.quota_backend,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        decision_log=args.decision_log,
        decision_log_mask=tuple(args.decision_log_mask or ()),
    )
    try:
        if args.decision_log not in ("off", "-", ""):
            try:  # fail here, once, rather than in every worker
                open(args.decision_log, "a").close()
            except OSError as exc:
                raise StartupError(
                    f"cannot write the decision log {args.decision_log}: {exc.strerror or exc}"
                ) from None
        if args.bundle:
            from dataclasses import replace

            from extproc.bundle.cli import following

            with following(args) as policies:  # the verified bundle's directory, kept following the URL
                return run(replace(options, policies=policies))
        return run(options)
    except StartupError as exc:
        print(f"extproc: {exc}", file=sys.stderr)
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
    if args.json_schema or args.cases:
        from extproc.policytools.jsonschema import case_file_schema, policy_file_schema

        print(json.dumps(case_file_schema() if args.cases else policy_file_schema(), indent=2))
        return 0
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
    load: Callable[[], Any] = load_demo_key  # untyped: extproc.local is not under strict typing yet
    print(mint(load(), sub=args.sub, roles=roles, tenant=args.tenant, ttl=args.ttl, extra=extra))
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
    print(
        f"hash: {digest}\n      (put this in the policy: keys: [{{id: {args.id}, hash: {digest}, subject: {args.id}}}])"
    )
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    serving = health_pb2.HealthCheckResponse.SERVING
    try:
        with grpc.insecure_channel(f"{args.host}:{args.port}") as channel:
            reply, call = health_pb2_grpc.HealthStub(channel).Check.with_call(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
            status = reply.status
    except grpc.RpcError as exc:
        print(f"not serving: {exc.code().name}", file=sys.stderr)
        return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    # extproc.bundle.status: the server names the policy revision it serves.
    revision = dict(call.initial_metadata() or ()).get("x-extproc-policy-revision")
    print(name.lower() + (f" revision {revision}" if args.revision and revision else ""))
    return 0 if status == serving else 1


def _demo_upstream(args: argparse.Namespace) -> int:
    """The demo upstreams of `extproc up` as one long-running process (for
    compose and Kubernetes): the echo + mock model, and the demo MCP server
    and A2A agent where their packages are installed."""
    import signal
    import threading

    from extproc.local.echo import EchoServer

    echo = EchoServer(args.host, args.port).start()
    servers: list[Any] = [echo]  # each has stop()
    print(f"demo upstream (echo + mock model) on http://{args.host}:{echo.port}", flush=True)
    if args.mcp_port:
        try:
            from extproc.local.demo_mcp import DemoMcpServer

            servers.append(DemoMcpServer(args.host, args.mcp_port, stateless=True).start())
            print(f"demo MCP server on http://{args.host}:{args.mcp_port}/mcp", flush=True)
        except Exception as exc:  # noqa: BLE001  (optional: the demo works without it)
            print(f"demo MCP server not started: {exc}", file=sys.stderr, flush=True)
    if args.a2a_port:
        try:
            from extproc.local.demo_a2a import DemoA2aServer

            servers.append(DemoA2aServer(args.public_url.rstrip("/") + "/a2a/", args.host, args.a2a_port).start())
            print(f"demo A2A agent on http://{args.host}:{args.a2a_port}/a2a/", flush=True)
        except Exception as exc:  # noqa: BLE001  (a2a-sdk is optional: pip install 'extproc[a2a]')
            print(f"demo A2A agent not started: {exc}", file=sys.stderr, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()
    return 0


def _up(args: argparse.Namespace) -> int:
    from extproc.local.up import up

    return up(args)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every other start-up failure: the usage block hides the cause.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(
    kind: Callable[[str], _N], minimum: _N, maximum: _N | None = None, *, above: bool = False
) -> Callable[[str], _N]:
    """An argparse type: ``kind`` within bounds (``above``: strictly over ``minimum``)."""

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a {'number' if kind is float else 'whole number'}"
            ) from None
        if (value <= minimum if above else value < minimum) or (maximum is not None and value > maximum):
            bound = f"greater than {minimum}" if above else f"at least {minimum}"
            raise argparse.ArgumentTypeError(
                f"{text} out of range: must be {bound}" + (f" and at most {maximum}" if maximum is not None else "")
            )
        return value

    return parse


_PORT = _number(int, 0, 65535)
_PORT_OR_NONE = _number(int, 1, 65535)


def _xds(args: argparse.Namespace) -> int:
    from extproc.xds.__main__ import main as xds_main

    return xds_main(list(args.xds_args))


def build_parser() -> argparse.ArgumentParser:
    from extproc.admission import DEFAULT_MAX_CONCURRENT
    from extproc.bundle.cli import add_bundle_commands, add_serve_arguments
    from extproc.supervisor import DEFAULT_MAX_FAILED_STARTS

    parser = _Parser(prog="extproc", description="Governance processor for Envoy.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ext_authz/ext_proc gRPC server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_PORT, default=50051)
    serve.add_argument("--policies", default="policies", help="policy directory (hot-reloaded)")
    serve.add_argument(
        "--workers",
        type=_number(int, 1, 256),
        default=1,
        help="processes sharing the port (SO_REUSEPORT, among themselves only)",
    )
    serve.add_argument(
        "--reload-interval",
        type=_number(float, 0, above=True),
        default=1.0,
        help="seconds between policy change checks",
    )
    serve.add_argument(
        "--grace", type=_number(float, 0), default=10.0, help="seconds to drain in-flight streams on SIGTERM"
    )
    serve.add_argument(
        "--drain-delay",
        type=_number(float, 0),
        default=2.0,
        help="seconds to report NOT_SERVING, still answering, before closing the port on SIGTERM "
        "(default 2: twice the shipped Envoy configs' health-check interval)",
    )
    serve.add_argument(
        "--max-concurrent",
        type=_number(int, 1),
        default=DEFAULT_MAX_CONCURRENT,
        help="per worker: checks and ext_proc messages in progress; past it new requests get an "
        f"immediate 503 with Retry-After instead of a timeout (default {DEFAULT_MAX_CONCURRENT})",
    )
    serve.add_argument(
        "--max-failed-starts",
        type=_number(int, 1),
        default=DEFAULT_MAX_FAILED_STARTS,
        help="with --workers: give up (exit 1) after this many workers in a row die within "
        f"seconds of starting (default {DEFAULT_MAX_FAILED_STARTS})",
    )
    serve.add_argument("--last-good", help=argparse.SUPPRESS)  # set by the supervisor for its workers
    serve.add_argument(
        "--quota-backend",
        default=os.environ.get("EXTPROC_QUOTA_BACKEND", "memory"),
        help="memory (default), or a redis://, rediss:// or redis+cluster:// URL shared by all replicas "
        "(docs/quota.md)",
    )
    serve.add_argument(
        "--metrics-port",
        type=_PORT_OR_NONE,
        default=os.environ.get("EXTPROC_METRICS_PORT") or None,
        help="serve Prometheus /metrics on this port (default: off; with --workers, one endpoint for all workers)",
    )
    serve.add_argument(
        "--metrics-host", default=os.environ.get("EXTPROC_METRICS_HOST"), help="address for /metrics (default: --host)"
    )
    serve.add_argument(
        "--decision-log",
        default=os.environ.get("EXTPROC_DECISION_LOG", "off"),
        metavar="-|PATH|off",
        help="one JSON line per decision to stdout (-) or appended to PATH (default: off)",
    )
    serve.add_argument(
        "--decision-log-mask",
        action="append",
        metavar="HEADER",
        default=[p for p in os.environ.get("EXTPROC_DECISION_LOG_MASK", "").split(",") if p],
        help="another header name (or fnmatch pattern) the decision log erases; repeatable",
    )
    add_serve_arguments(serve)
    serve.set_defaults(func=_serve)

    health = sub.add_parser("health", help="ask a processor's grpc.health.v1 service; exit 0 if SERVING")
    health.add_argument("--host", default="127.0.0.1")
    health.add_argument("--port", type=_PORT, default=50051)
    health.add_argument("--service", default="", help="a service name; default: the server as a whole")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds")
    health.add_argument("--revision", action="store_true", help="also print the policy revision it serves")
    health.set_defaults(func=_health)

    demo = sub.add_parser("demo-upstream", help="run the demo upstream (echo + mock model) alone")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--mcp-port", type=int, default=0, help="also the demo MCP server here (0: no)")
    demo.add_argument("--a2a-port", type=int, default=0, help="also the demo A2A agent here (0: no)")
    demo.add_argument(
        "--public-url",
        default="http://localhost:10000",
        help="the gateway's URL as clients see it (the A2A agent card names it)",
    )
    demo.set_defaults(func=_demo_upstream)

    up = sub.add_parser("up", help="run processor + Envoy + demo upstream locally (no Docker)")
    up.add_argument("--listen-port", type=_PORT_OR_NONE, default=10000, help="Envoy's listener on 127.0.0.1")
    up.add_argument("--policies", default=None, help="policy directory (default: ./policies, else the bundled demo)")
    up.add_argument("--mtls-port", type=_PORT_OR_NONE, default=10443, help="Envoy's mTLS listener on 127.0.0.1")
    up.add_argument("--certs", default=".certs", help="demo certificates (generated if missing)")
    up.add_argument("--workers", type=_number(int, 1, 256), default=1)
    up.add_argument("--redis", metavar="URL", help="count quotas in Redis (redis://host:port) instead of in memory")
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
    schema.add_argument(
        "--json-schema",
        action="store_true",
        help="print a JSON Schema for policy files instead (for editors: docs/gitops.md)",
    )
    schema.add_argument("--cases", action="store_true", help="print the JSON Schema for test-case files")
    schema.set_defaults(func=_schema)
    from extproc.policytools.commands import add_commands

    add_commands(policy_sub)
    add_bundle_commands(policy_sub)

    xds = sub.add_parser(
        "xds",
        help="the xDS control plane: `xds serve` pushes policy compiled to Envoy-native filters, `xds render` shows it",
        add_help=False,  # `extproc xds --help` is the control plane's own help
    )
    xds.add_argument("xds_args", nargs=argparse.REMAINDER)
    xds.set_defaults(func=_xds)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["xds"]:  # its own parser, flags such as --help included
        from extproc.xds.__main__ import main as xds_main

        return xds_main(argv[1:])
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)
