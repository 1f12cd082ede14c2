"""Switches the audit trail on for one server process and feeds it.

``Telemetry.start(options)`` reads the options (``--metrics-port``,
``--decision-log``) and the ``OTEL_*`` environment, starts what is asked
for and installs itself as ``extproc.audit.SINK``. With nothing asked for it
installs nothing, so ``pipeline.finish`` skips the audit entirely.

Per request, ``__call__`` (from ``pipeline.finish``) only notes the time and
schedules the work with ``loop.call_soon``: building the record, the span,
the decision-log entry and the metric updates run after the response has
been handed to gRPC, never in front of it. Nothing here raises into a
request: a failure is logged (rate-limited) and the request is unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass
from time import perf_counter_ns
from types import ModuleType
from typing import TYPE_CHECKING, Any

from extproc import audit
from extproc.audit.record import AuditRecord, build
from extproc.context import RequestContext

if TYPE_CHECKING:
    import threading
    from wsgiref.simple_server import WSGIServer

    from extproc.audit.decision_log import DecisionLog
    from extproc.audit.tracing import Tracing
    from extproc.policy.store import PolicyStore

log = logging.getLogger("extproc.audit")


@dataclass(frozen=True, slots=True)
class TelemetryOptions:
    metrics_port: int | None = None  # serve /metrics here (single process)
    metrics_host: str = "127.0.0.1"
    decision_log: str = "off"  # off | - (stdout) | a file path
    decision_log_mask: tuple[str, ...] = ()
    # Set for a supervised worker when the supervisor serves the summed
    # metrics (multiprocess mode): record metrics, do not serve them.
    metrics_multiprocess: bool = False


def instance_id() -> str:
    return f"{socket.gethostname()}/{os.getpid()}"


class Telemetry:
    def __init__(self, options: TelemetryOptions) -> None:
        self.options = options
        self.tracing: Tracing | None = None
        self.decision_log: DecisionLog | None = None
        self.metrics_enabled = False
        self._metrics_server: tuple[WSGIServer, threading.Thread] | None = None
        self._m: ModuleType | None = None  # extproc.audit.metrics, imported when metrics are on
        # prometheus_client's labelled children (untyped) by (metric, labels)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._errors = 0
        self._last_error_log = 0.0
        self._reloads_seen = (0, 0)

    @classmethod
    def start(cls, options: TelemetryOptions) -> Telemetry:
        self = cls(options)
        try:
            self._start()
        except BaseException:
            self.close()  # nothing half-started stays behind (a metrics server thread, a writer)
            raise
        if self.enabled:
            audit.SINK = self
            audit.TRACING = self.tracing is not None
        return self

    def _start(self) -> None:
        options = self.options
        iid = instance_id()
        from extproc.audit.config import DEFAULT_SERVICE_NAME, package_version, tracing_endpoint

        if options.metrics_port is not None or options.metrics_multiprocess:
            from extproc.audit import metrics

            self._m = metrics
            self.metrics_enabled = True
            if options.metrics_port is not None and not options.metrics_multiprocess:
                self._metrics_server = metrics.serve_http(options.metrics_port, options.metrics_host)
                log.info("metrics on", extra={"address": f"{options.metrics_host}:{self.metrics_port}"})

        endpoint = tracing_endpoint()
        if endpoint:
            try:
                from extproc.audit.tracing import Tracing

                tracing = self.tracing = Tracing(endpoint, iid, self._span_dropped)
                log.info("tracing on", extra={"endpoint": endpoint, "service": tracing.service_name})
            except ImportError as exc:
                # xds-protos ships an old copy of opentelemetry/proto that can
                # overwrite opentelemetry-proto's (grpc/grpc#42926).
                log.error(
                    "tracing disabled: the OTLP exporter cannot be imported (%s). If it names "
                    "opentelemetry.proto, reinstall opentelemetry-proto: pip install --force-reinstall "
                    "--no-deps opentelemetry-proto",
                    exc,
                )

        if options.decision_log and options.decision_log != "off":
            from extproc.audit.decision_log import DecisionLog

            service = (
                self.tracing.service_name
                if self.tracing is not None
                else os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
            )
            labels = {"service": str(service), "instance_id": iid, "version": package_version()}
            self.decision_log = DecisionLog(
                options.decision_log, labels, options.decision_log_mask, on_drop=self._log_dropped
            )
            log.info("decision log on", extra={"destination": options.decision_log})

    @property
    def enabled(self) -> bool:
        return self.tracing is not None or self.decision_log is not None or self.metrics_enabled

    @property
    def metrics_port(self) -> int | None:
        if self._metrics_server is None:
            return None
        return self._metrics_server[0].server_address[1]

    # -- per request --------------------------------------------------------

    def __call__(self, ctx: RequestContext) -> None:
        end = perf_counter_ns()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._emit(ctx, end)
            return
        loop.call_soon(self._emit, ctx, end)

    def _emit(self, ctx: RequestContext, end_perf: int) -> None:
        try:
            record = build(ctx)
            end_ns = time.time_ns() - (perf_counter_ns() - end_perf)
            start_ns = end_ns - max(0, end_perf - ctx.started_ns)
            ids = None
            if self.tracing is not None:
                ids = self.tracing.emit(ctx, record, start_ns, end_ns)
            if self.decision_log is not None:
                trace_id, span_id = ids if ids else (None, None)
                self.decision_log.submit(self.decision_log.entry(ctx, record, end_ns, trace_id, span_id))
            if self.metrics_enabled:
                self._observe(record)
        except Exception:
            self._errors += 1
            now = time.monotonic()
            if now - self._last_error_log > 60:
                self._last_error_log = now
                log.exception(
                    "audit step failed (%d so far); the request was not affected",
                    self._errors,
                    extra={"decision_id": getattr(ctx, "decision_id", "-")},
                )

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _observe(self, record: AuditRecord) -> None:
        m = self._m
        if m is None:
            return
        self._child(m.DECISIONS, record.filter, record.route or "-", record.decision).inc()
        for outcome in record.capabilities:
            self._child(m.CAPABILITY_DECISIONS, outcome.capability, outcome.mode, outcome.decision).inc()
        if record.decision_ns:
            self._child(m.DECISION_SECONDS, record.filter).observe(record.decision_ns / 1e9)

    def _span_dropped(self, reason: str, count: int) -> None:
        if self._m is not None:
            self._m.SPANS_DROPPED.labels(reason).inc(count)

    def _log_dropped(self) -> None:
        if self._m is not None:
            self._m.DECISION_LOG_DROPPED.inc()

    # -- policy reloads ---------------------------------------------------------

    def sync_policy_reloads(self, store: PolicyStore) -> None:
        """Carry PolicyStore's reload counters into the metrics."""
        if self._m is None:
            return
        ok, failed = store.reloads_ok, store.reloads_failed
        seen_ok, seen_failed = self._reloads_seen
        if ok > seen_ok:
            self._m.POLICY_RELOADS.labels("ok").inc(ok - seen_ok)
        if failed > seen_failed:
            self._m.POLICY_RELOADS.labels("failed").inc(failed - seen_failed)
        self._reloads_seen = (ok, failed)

    async def watch_policy_reloads(self, store: PolicyStore, interval: float) -> None:
        if self._m is not None:
            # Make both series exist from the start (a dashboard shows 0, not "no data").
            self._m.POLICY_RELOADS.labels("ok")
            self._m.POLICY_RELOADS.labels("failed")
        while True:
            self.sync_policy_reloads(store)
            await asyncio.sleep(interval)

    # -- shutdown -------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        if audit.SINK is self:
            audit.SINK = None
            audit.TRACING = False
        if self.decision_log is not None:
            self.decision_log.close(timeout)
        if self.tracing is not None:
            self.tracing.shutdown(timeout)
        if self._metrics_server is not None:
            server, _thread = self._metrics_server
            server.shutdown()
            server.server_close()
            self._metrics_server = None
