"""The gRPC server: ext_authz, ext_proc and grpc.health.v1 on one port.

``serve`` runs one process. ``run`` adds ``--workers N``: N such processes
on the same port with SO_REUSEPORT, so the kernel spreads Envoy's
connections over the cores (Python's GIL makes processes, not threads, the
unit of parallelism here), kept alive by ``extproc.supervisor``. Only those
workers may share the port: ``extproc.portclaim`` keeps everyone else off.

Every way start-up can fail (a busy port, an invalid policy, a bad quota
backend URL, an unbindable metrics port) raises ``StartupError`` with a
one-line message; the CLI prints it and exits 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as ext_proc_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.admission import DEFAULT_MAX_CONCURRENT, AdmissionGate
from extproc.audit.telemetry import Telemetry, TelemetryOptions
from extproc.bundle.status import RevisionHealthServicer, publish_revision
from extproc.guard import offload
from extproc.policy.loader import PolicyLoadError
from extproc.policy.store import PolicyStore
from extproc.portclaim import PortClaim, PortInUse
from extproc.runtime import Runtime
from extproc.services.admitted import AdmittedAuthorization, AdmittedExternalProcessor
from extproc.supervisor import (
    DEFAULT_MAX_FAILED_STARTS,
    MULTIPROC_ENV,
    SUPERVISED_ENV,
    LastGoodPolicy,
    Supervisor,
    report_ready,
    worker_env,
)

log = logging.getLogger("extproc.server")

SERVICE_NAMES = (
    "envoy.service.auth.v3.Authorization",
    "envoy.service.ext_proc.v3.ExternalProcessor",
)


class StartupError(Exception):
    """The server cannot start; the message is one line for a human."""


@dataclass(frozen=True, slots=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    policies: str = "policies"
    workers: int = 1
    reload_interval: float = 1.0
    grace: float = 10.0  # seconds in-flight streams get to finish on SIGTERM
    # Seconds between reporting NOT_SERVING and closing the listener, so
    # health-checking Envoys see it and move traffic first (the CLI's
    # default is 2 s, twice the shipped configs' health-check interval).
    drain_delay: float = 0.0
    max_concurrent: int = DEFAULT_MAX_CONCURRENT  # per worker; see extproc.admission
    max_failed_starts: int = DEFAULT_MAX_FAILED_STARTS  # see extproc.supervisor
    last_good: str | None = None  # start on this copy, then follow ``policies`` (set by the supervisor)
    quota_backend: str = "memory"  # or a redis:// URL; see extproc.runtime
    # The audit trail (extproc.audit); tracing is configured by OTEL_* variables.
    metrics_port: int | None = None  # Prometheus /metrics; with workers, served by the supervisor
    metrics_host: str | None = None  # default: host
    decision_log: str = "off"  # off | - (stdout) | a file path
    decision_log_mask: tuple[str, ...] = ()  # more header names/patterns to erase


def _install_fast_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _supervised() -> bool:
    return os.environ.get(SUPERVISED_ENV) == str(os.getppid())


def policy_problem(directory: str, exc: Exception) -> str:
    if isinstance(exc, PolicyLoadError):
        first, more = exc.errors[0], len(exc.errors) - 1
        tail = f" (and {more} more: extproc policy validate {directory})" if more else ""
        return f"the policy in {directory} is invalid: {first}{tail}"
    return f"cannot read the policy in {directory}: {getattr(exc, 'strerror', None) or exc}"


def check_quota_backend(url: str) -> None:
    """A bad URL fails start-up, not the first request that needs a quota."""
    from extproc.quota import open_backend

    try:
        open_backend(url)  # parses only; connecting waits for the first use
    except (ValueError, ImportError) as exc:
        raise StartupError(f"--quota-backend: {exc}") from None  # the backend's errors carry no credentials


def _open_store(options: ServerOptions, runtime: Runtime) -> PolicyStore:
    if not options.last_good:
        try:
            return PolicyStore(options.policies, runtime)
        except (PolicyLoadError, OSError) as exc:
            raise StartupError(policy_problem(options.policies, exc)) from None
    # A supervised worker starts on the supervisor's copy of the last policy
    # the workers accepted, then follows the live directory through the same
    # hot reload as its siblings: a replacement worker never fails, nor
    # serves something they refused, because the directory broke since.
    try:
        return PolicyStore(options.policies, runtime, start_from=options.last_good)
    except (PolicyLoadError, OSError) as exc:
        raise StartupError(policy_problem(options.last_good, exc)) from None


async def serve(options: ServerOptions, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    supervised = _supervised()
    async with AsyncExitStack() as cleanup:
        if not supervised and options.port != 0:
            try:
                cleanup.callback(PortClaim(options.host, options.port, for_workers=False).release)
            except PortInUse as exc:
                raise StartupError(str(exc)) from None
        check_quota_backend(options.quota_backend)
        offload.serving()  # this process's policy loads may start the guard's model process
        runtime = Runtime(quota_backend=options.quota_backend)
        cleanup.push_async_callback(runtime.aclose)
        try:
            telemetry = Telemetry.start(
                TelemetryOptions(
                    metrics_port=options.metrics_port,
                    metrics_host=options.metrics_host or options.host,
                    decision_log=options.decision_log,
                    decision_log_mask=options.decision_log_mask,
                    metrics_multiprocess=bool(supervised and os.environ.get(MULTIPROC_ENV)),
                )
            )
        except OSError as exc:
            raise StartupError(
                f"cannot start the metrics endpoint on port {options.metrics_port}: {exc.strerror or exc}"
            ) from None
        cleanup.callback(telemetry.close)
        store = _open_store(options, runtime)
        await _serve_store(options, store, telemetry, supervised, ready, stop)


async def _serve_store(
    options: ServerOptions,
    store: PolicyStore,
    telemetry: Telemetry,
    supervised: bool,
    ready: asyncio.Event | None,
    stop: asyncio.Event | None,
) -> None:
    server = grpc.aio.server(
        options=[
            # Only among a supervisor's workers (see extproc.portclaim); a lone
            # server keeps the port to itself.
            ("grpc.so_reuseport", 1 if supervised else 0),
            # Envoy multiplexes many ext_proc streams on one connection.
            ("grpc.max_concurrent_streams", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ]
    )
    gate = AdmissionGate(options.max_concurrent)
    authz_grpc.add_AuthorizationServicer_to_server(AdmittedAuthorization(store, gate), server)
    ext_proc_grpc.add_ExternalProcessorServicer_to_server(AdmittedExternalProcessor(store, gate), server)
    health_servicer = RevisionHealthServicer(store)  # replies name the serving policy revision
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    address = f"{options.host}:{options.port}"
    try:
        server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises (it never returns 0) when the bind fails
        raise StartupError(f"cannot listen on {address}: address in use or not available") from None
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
    revision_gauge = asyncio.create_task(publish_revision(store, options.reload_interval))
    lag = asyncio.create_task(gate.watch_loop())
    reloads = (
        asyncio.create_task(telemetry.watch_policy_reloads(store, options.reload_interval))
        if telemetry.metrics_enabled
        else None
    )
    log.info(
        "listening",
        extra={
            "address": address,
            "pid": os.getpid(),
            "revision": store.current.revision,
            "max_concurrent": options.max_concurrent,
        },
    )
    if ready is not None:
        ready.set()
    if supervised:
        report_ready()
    try:
        await stop.wait()
    finally:
        log.info("draining", extra={"delay_s": options.drain_delay, "grace_s": options.grace})
        # NOT_SERVING first, while still answering everything: health-checking
        # Envoys stop opening new streams here once their next check sees it.
        await health_servicer.enter_graceful_shutdown()
        if options.drain_delay > 0:
            await asyncio.sleep(options.drain_delay)
        watcher.cancel()
        revision_gauge.cancel()
        lag.cancel()
        if reloads is not None:
            reloads.cancel()
        await server.stop(options.grace)
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


def _worker_argv(options: ServerOptions) -> list[str]:
    # Fresh interpreters rather than fork: gRPC's core does not survive fork.
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    level = level if level in ("debug", "info", "warning", "error") else "info"
    argv = [
        sys.executable,
        "-m",
        "extproc",
        "--log-level",
        level,
        "serve",
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--policies",
        options.policies,
        "--workers",
        "1",
        "--reload-interval",
        str(options.reload_interval),
        "--grace",
        str(options.grace),
        "--drain-delay",
        str(options.drain_delay),
        "--max-concurrent",
        str(options.max_concurrent),
        "--quota-backend",
        options.quota_backend,
        "--decision-log",
        options.decision_log,
    ]
    for pattern in options.decision_log_mask:
        argv += ["--decision-log-mask", pattern]
    return argv


def _run_workers(options: ServerOptions) -> int:
    if options.port == 0:
        raise StartupError("--workers needs a fixed --port: each worker binds the same one")
    try:
        claim = PortClaim(options.host, options.port, for_workers=True)
    except PortInUse as exc:
        raise StartupError(str(exc)) from None
    metrics = policies = None
    try:
        check_quota_backend(options.quota_backend)
        try:
            policies = LastGoodPolicy(options.policies)
        except PolicyLoadError as exc:
            raise StartupError(policy_problem(options.policies, exc)) from None
        extra_env: dict[str, str] = {}
        if options.metrics_port is not None:
            # One /metrics for all workers: they write to a shared directory, we serve the sum.
            from extproc.audit.metrics import MultiprocessExporter

            try:
                metrics = MultiprocessExporter(options.metrics_port, options.metrics_host or options.host)
            except OSError as exc:
                raise StartupError(
                    f"cannot start the metrics endpoint on port {options.metrics_port}: {exc.strerror or exc}"
                ) from None
            extra_env.update(metrics.env())
        supervisor = Supervisor(
            _worker_argv(options),
            options.workers,
            policies,
            worker_env(extra_env),
            max_failed_starts=options.max_failed_starts,
            reload_interval=options.reload_interval,
            on_worker_exit=metrics.worker_exited if metrics is not None else None,
        )
        supervisor.install_signal_handlers()
        return supervisor.run()
    finally:
        if metrics is not None:
            metrics.close()
        if policies is not None:
            policies.close()
        claim.release()
