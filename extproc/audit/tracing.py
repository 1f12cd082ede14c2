"""Audit spans: one OpenTelemetry span per governed request, a child of the
span Envoy opened for its gRPC call to the processor.

Configured only from the standard OpenTelemetry environment variables:

* on when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
  is set; off when neither is, when ``OTEL_SDK_DISABLED=true`` or when
  ``OTEL_TRACES_EXPORTER=none``;
* ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the service
  (default ``extproc``);
* ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` choose the sampler
  (default ``parentbased_always_on``: Envoy's sampling decision is followed);
* ``OTEL_EXPORTER_OTLP_*`` (headers, timeout, certificates, compression) and
  ``OTEL_BSP_*`` (queue size, batch size, delay) tune the OTLP/gRPC exporter
  and the batch processor.

Export happens on the SDK's batch thread: a request only appends its span to
a bounded queue. A full queue drops the span (never blocks), and so does a
failed export; both are counted (``extproc_spans_dropped_total``).

Span shape: name ``"<filter> <route>"`` (``ext_authz api``), kind SERVER,
from the request's arrival to its end (ext_authz: the decision; ext_proc:
the end of the stream, i.e. the whole exchange), status ERROR only for
internal errors (a denial is a correct outcome). Attributes: see
``_span_attributes``; one event per capability decision.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from extproc.audit.config import DEFAULT_SERVICE_NAME, package_version, tracing_endpoint  # noqa: F401
from extproc.audit.record import AuditRecord
from extproc.context import RequestContext

# on_drop(reason, count): spans lost, for the metrics
OnDrop = Callable[[str, int], None]

log = logging.getLogger("extproc.tracing")
_PROPAGATOR = TraceContextTextMapPropagator()
_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"


class _RateLimit(logging.Filter):
    """At most one record per ``interval`` seconds: an unreachable collector
    must not flood the processor's log with a line per failed batch."""

    def __init__(self, interval: float = 60.0):
        super().__init__()
        self.interval = interval
        self._last = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            if self.suppressed:
                record.msg = f"{record.msg} ({self.suppressed} similar messages suppressed)"
                self.suppressed = 0
            return True
        self.suppressed += 1
        return False


class CountingExporter(SpanExporter):
    """Wraps the OTLP exporter to count the spans of batches it failed to
    deliver (after the exporter's own retries)."""

    def __init__(self, inner: SpanExporter, on_drop: OnDrop) -> None:
        self.inner = inner
        self._on_drop = on_drop

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            log.debug("span export raised", exc_info=True)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._on_drop("export_failed", len(spans))
        return result

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        # The OTLP exporter takes a timeout; SpanExporter's signature does not.
        shutdown: Callable[..., None] = self.inner.shutdown
        try:
            shutdown(timeout_millis=timeout_millis)
        except TypeError:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch processor (bounded queue, export thread) that counts,
    instead of logging a warning for, every span a full queue drops."""

    def __init__(self, exporter: SpanExporter, on_drop: OnDrop, **kwargs: Any) -> None:
        super().__init__(exporter, **kwargs)
        self._on_drop = on_drop

    def on_end(self, span: ReadableSpan) -> None:
        if not (span.context and span.context.trace_flags.sampled):
            return
        batch = getattr(self, "_batch_processor", None)
        queue = getattr(batch, "_queue", None)
        limit = getattr(batch, "_max_queue_size", None)
        if queue is not None and limit is not None and len(queue) >= limit:
            self._on_drop("queue_full", 1)
            return
        super().on_end(span)


class Tracing:
    """The tracer provider and what each request's span is made of."""

    def __init__(
        self, endpoint: str, instance_id: str, on_drop: OnDrop | None, exporter: SpanExporter | None = None
    ) -> None:
        self.endpoint = endpoint
        self.dropped = {"queue_full": 0, "export_failed": 0}
        self._on_drop_metric = on_drop
        detected = Resource.create({})
        attributes = {SERVICE_VERSION: package_version(), SERVICE_INSTANCE_ID: instance_id}
        if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME  # neither OTEL_SERVICE_NAME nor the resource named it
        self.resource = detected.merge(Resource(attributes))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
            exporter_log = logging.getLogger(_EXPORTER_LOGGER)
            exporter_log.setLevel(logging.ERROR)  # its per-retry warnings: the final failure is enough
            exporter_log.addFilter(_RateLimit())
        self.provider = TracerProvider(resource=self.resource)  # sampler from OTEL_TRACES_SAMPLER
        self.processor = CountingBatchSpanProcessor(CountingExporter(exporter, self._dropped), self._dropped)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("extproc.audit", package_version())
        self.service_name = self.resource.attributes.get(SERVICE_NAME, DEFAULT_SERVICE_NAME)

    def _dropped(self, reason: str, count: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count
        if self._on_drop_metric is not None:
            self._on_drop_metric(reason, count)

    def emit(self, ctx: RequestContext, record: AuditRecord, start_ns: int, end_ns: int) -> tuple[str, str] | None:
        """Record the request's span; returns (trace_id, span_id) in hex when
        it is sampled, for the decision log."""
        carrier = ctx.trace
        if carrier is None:
            traceparent = ctx.request.headers.get("traceparent")
            if traceparent:
                carrier = {"traceparent": traceparent, "tracestate": ctx.request.headers.get("tracestate", "")}
        parent = _PROPAGATOR.extract(carrier) if carrier else None
        name = f"{record.filter} {record.route or 'unmatched'}"
        span = self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER, start_time=start_ns)
        if not span.is_recording():  # not sampled (Envoy's decision, by default): nothing more to build
            span.end(end_time=end_ns)
            return None
        span.set_attributes(_span_attributes(ctx, record))
        revision = record.revision
        for outcome in record.capabilities:
            event = {
                "extproc.capability": outcome.capability,
                "extproc.mode": outcome.mode,
                "extproc.decision": outcome.decision,
                "extproc.policy.revision": revision,
            }
            if outcome.code:
                event["extproc.code"] = outcome.code
            if outcome.reason:
                event["extproc.reason"] = outcome.reason
            span.add_event(f"{outcome.capability}: {outcome.decision}", event, timestamp=end_ns)
        if record.decision == "error":
            span.set_status(Status(StatusCode.ERROR, record.code or "internal_error"))
        span.end(end_time=end_ns)
        sc = span.get_span_context()
        return f"{sc.trace_id:032x}", f"{sc.span_id:016x}"

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush what is queued, waiting at most ``timeout`` seconds (an
        unreachable collector must not hold up the process's exit)."""
        done = threading.Thread(target=self.provider.shutdown, name="extproc-tracing-shutdown", daemon=True)
        done.start()
        done.join(timeout)


def _span_attributes(ctx: RequestContext, record: AuditRecord) -> dict[str, Any]:
    """The allow-list of a request span's attributes."""
    request = ctx.request
    attributes: dict[str, Any] = {
        "extproc.decision_id": record.decision_id,
        "extproc.decision": record.decision,
        "extproc.filter": record.filter,
        "extproc.route": record.route or "",
        "extproc.policy.revision": record.revision,
        "http.request.method": request.method,
        "url.path": request.path,  # normalized, never the query
    }
    host, sep, port = request.host.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):  # host:port, not a bare IPv6 address
        attributes["server.address"], attributes["server.port"] = host, int(port)
    elif request.host:
        attributes["server.address"] = request.host
    if record.status is not None:
        attributes["extproc.status_code"] = record.status
        attributes["extproc.code"] = record.code or ""
        if record.reason:
            attributes["extproc.reason"] = record.reason
    if record.upstream_status is not None:
        attributes["http.response.status_code"] = record.upstream_status
    identity = record.identity
    if "subject" in identity:
        attributes["enduser.id"] = identity["subject"]
    for key, value in identity.items():
        if key != "subject":
            attributes[f"extproc.identity.{key}"] = value
    attributes.update(record.facts)
    return attributes
