"""The gRPC server: ext_authz, ext_proc and grpc.health.v1 on one port.

``serve`` runs one process. ``run`` adds ``--workers N``: N such processes
bound to the same port with SO_REUSEPORT (grpcio's default), so the kernel
spreads Envoy's connections over both cores. Python's GIL makes processes,
not threads, the unit of parallelism here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from extproc.audit.telemetry import Telemetry, TelemetryOptions
from extproc.policy.store import PolicyStore
from extproc.runtime import Runtime
from extproc.services.authz import AuthorizationService
from extproc.services.ext_proc import ExternalProcessorService

log = logging.getLogger("extproc.server")

SUPERVISED_ENV = "EXTPROC_SUPERVISOR_PID"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode (extproc.audit.metrics)
SERVICE_NAMES = (
    "envoy.service.auth.v3.Authorization",
    "envoy.service.ext_proc.v3.ExternalProcessor",
)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    policies: str = "policies"
    workers: int = 1
    reload_interval: float = 1.0
    grace: float = 10.0  # seconds in-flight streams get to finish on SIGTERM
    quota_backend: str = "memory"  # or a redis:// URL; see extproc.runtime
    # The audit trail (extproc.audit); tracing is configured by OTEL_* variables.
    metrics_port: int | None = None   # Prometheus /metrics; with workers, served by the supervisor
    metrics_host: str | None = None   # default: host
    decision_log: str = "off"         # off | - (stdout) | a file path
    decision_log_mask: tuple[str, ...] = ()  # more header names/patterns to erase


def _install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(options: ServerOptions, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    runtime = Runtime(quota_backend=options.quota_backend)
    store = PolicyStore(options.policies, runtime)
    telemetry = Telemetry.start(TelemetryOptions(
        metrics_port=options.metrics_port, metrics_host=options.metrics_host or options.host,
        decision_log=options.decision_log, decision_log_mask=options.decision_log_mask,
        metrics_multiprocess=bool(os.environ.get(SUPERVISED_ENV) and os.environ.get(MULTIPROC_ENV))))
    server = grpc.aio.server(options=[
        ("grpc.so_reuseport", 1),
        # Envoy multiplexes many ext_proc streams on one connection.
        ("grpc.max_concurrent_streams", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ])
    authz_grpc.add_AuthorizationServicer_to_server(AuthorizationService(store), server)
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(ExternalProcessorService(store), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    address = f"{options.host}:{options.port}"
    if server.add_insecure_port(address) == 0:
        telemetry.close()
        raise OSError(f"cannot bind {address}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, store.reload)
    except (NotImplementedError, RuntimeError, ValueError):
        pass  # not the main thread (embedded in tests or `extproc up`)
    watcher = asyncio.create_task(store.watch(options.reload_interval))
    reloads = asyncio.create_task(telemetry.watch_policy_reloads(store, options.reload_interval)) \
        if telemetry.metrics_enabled else None
    log.info("listening", extra={"address": address, "pid": os.getpid(), "revision": store.current.revision})
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("draining", extra={"grace_s": options.grace})
        # NOT_SERVING first, so health-checking load balancers stop sending
        # new streams while in-flight ones finish.
        await health_servicer.enter_graceful_shutdown()
        watcher.cancel()
        if reloads is not None:
            reloads.cancel()
        await server.stop(options.grace)
        telemetry.close()
        await runtime.aclose()
        log.info("stopped")


def _die_with_supervisor() -> None:
    # A worker whose supervisor is gone (even by SIGKILL) must not linger
    # holding the port with nobody to restart or stop it.
    if os.environ.get(SUPERVISED_ENV) != str(os.getppid()):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(os.environ[SUPERVISED_ENV]):  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(options: ServerOptions) -> int:
    if options.workers <= 1:
        _die_with_supervisor()
        _install_fast_loop()
        try:
            asyncio.run(serve(options))
        except KeyboardInterrupt:
            pass
        return 0
    return _run_workers(options)


def _run_workers(options: ServerOptions) -> int:
    if options.port == 0:
        raise SystemExit("--workers needs a fixed --port: each worker binds the same one")
    # Fresh interpreters rather than fork: gRPC's core does not survive fork.
    argv = [sys.executable, "-m", "extproc", "serve", "--host", options.host, "--port", str(options.port),
            "--policies", options.policies, "--workers", "1",
            "--reload-interval", str(options.reload_interval), "--grace", str(options.grace),
            "--quota-backend", options.quota_backend, "--decision-log", options.decision_log]
    for pattern in options.decision_log_mask:
        argv += ["--decision-log-mask", pattern]
    env = {**os.environ, SUPERVISED_ENV: str(os.getpid())}
    env.pop(MULTIPROC_ENV, None)
    metrics = None
    if options.metrics_port is not None:
        # One /metrics for all workers: they write to a shared directory, we serve the sum.
        from extproc.audit.metrics import MultiprocessExporter

        metrics = MultiprocessExporter(options.metrics_port, options.metrics_host or options.host)
        env.update(metrics.env())
    children = [subprocess.Popen(argv, env=env) for _ in range(options.workers)]
    stopping = False

    def forward(signum, _frame):
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    # Supervise: a worker that dies is replaced, so one crash costs the
    # in-flight requests of one process, not half the capacity for good.
    while not stopping:
        for i, child in enumerate(children):
            if child.poll() is not None and not stopping:
                log.error("worker exited; restarting", extra={"pid": child.pid, "code": child.returncode})
                if metrics is not None:
                    metrics.worker_exited(child.pid)
                children[i] = subprocess.Popen(argv, env=env)
        time.sleep(0.2)
    code = max(child.wait() for child in children)
    if metrics is not None:
        metrics.close()
    return code
