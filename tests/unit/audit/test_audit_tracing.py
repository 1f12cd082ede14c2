"""Audit spans: parentage from Envoy's traceparent, the attribute allow-list,
dropped spans counted, configuration from OTEL_* variables."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from extproc import audit
from extproc.audit.config import tracing_endpoint
from extproc.audit.record import build
from extproc.audit.tracing import CountingBatchSpanProcessor, Tracing
from extproc.context import Deny, RequestContext
from tests import builders

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ENVOY_SPAN = "b7ad6b7169203331"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def context(trace=True) -> RequestContext:
    headers = {"authorization": f"Bearer {TOKEN}", "x-contact": "eve@example.com"}
    ctx = builders.context(
        builders.route(name="api"),
        "GET",
        "/api/users/7?email=eve@example.com",
        headers,
        host="gw.example:8443",
        via="ext_authz",
        who=builders.identity("alice", roles=["reader"], claims={"email": "alice@example.com"}),
    )
    if trace:
        ctx.trace = {"traceparent": f"00-{TRACE_ID}-{ENVOY_SPAN}-01", "tracestate": ""}
    return ctx


@pytest.fixture
def tracing(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "extproc-unit")
    exporter = InMemorySpanExporter()
    t = Tracing("unused", "host/1", None, exporter=exporter)
    yield t, exporter
    t.shutdown()


def test_span_is_a_child_of_envoys_and_carries_only_allowed_attributes(tracing):
    t, exporter = tracing
    ctx = context()
    audit.note(ctx, "llm.model", "gpt-4o-mini")
    with pytest.warns(audit.UndeclaredAuditFact):
        audit.note(ctx, "prompt", "raw prompt text")  # not allow-listed
    ids = t.emit(ctx, build(ctx), 1_000, 2_000)
    t.provider.force_flush()
    (span,) = exporter.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID and f"{span.parent.span_id:016x}" == ENVOY_SPAN
    assert ids == (TRACE_ID, f"{span.context.span_id:016x}")
    assert span.name == "ext_authz api" and span.start_time == 1_000 and span.end_time == 2_000
    assert span.resource.attributes["service.name"] == "extproc-unit"
    assert dict(span.attributes) == {
        "extproc.decision_id": ctx.decision_id,
        "extproc.decision": "allow",
        "extproc.filter": "ext_authz",
        "extproc.route": "api",
        "extproc.policy.revision": "rev1",
        "http.request.method": "GET",
        "url.path": "/api/users/7",
        "server.address": "gw.example",
        "server.port": 8443,
        "enduser.id": "alice",
        "extproc.identity.roles": ("reader",),
        "extproc.identity.methods": ("jwt",),
        "gen_ai.request.model": "gpt-4o-mini",
    }
    everything = repr(span.to_json())
    for secret in (TOKEN, "eve@example.com", "alice@example.com", "raw prompt text"):
        assert secret not in everything


def test_denial_events_and_error_status(tracing):
    t, exporter = tracing
    ctx = context()
    ctx.deny = Deny(500, "internal_error", "capability raised")
    t.emit(ctx, build(ctx), 1, 2)
    t.provider.force_flush()
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["extproc.decision"] == "error" and span.attributes["extproc.status_code"] == 500


def test_without_envoys_context_the_request_headers_traceparent_is_used_else_a_root(tracing):
    t, exporter = tracing
    ctx = context(trace=False)
    ctx.request.headers["traceparent"] = f"00-{TRACE_ID}-{ENVOY_SPAN}-01"
    t.emit(ctx, build(ctx), 1, 2)
    ctx = context(trace=False)
    t.emit(ctx, build(ctx), 1, 2)
    t.provider.force_flush()
    child, root = exporter.get_finished_spans()
    assert f"{child.context.trace_id:032x}" == TRACE_ID and root.parent is None


def test_unsampled_parent_is_followed(tracing):
    t, exporter = tracing
    ctx = context()
    ctx.trace = {"traceparent": f"00-{TRACE_ID}-{ENVOY_SPAN}-00"}
    assert t.emit(ctx, build(ctx), 1, 2) is None
    t.provider.force_flush()
    assert exporter.get_finished_spans() == ()


class _Blocking(SpanExporter):
    def __init__(self, result=SpanExportResult.SUCCESS):
        self.release = threading.Event()
        self.result = result

    def export(self, spans):
        self.release.wait(5)
        return self.result

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.release.set()


def test_full_queue_drops_and_counts_without_blocking(monkeypatch):
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "2")  # the standard knobs size the queue
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1")
    drops = []
    exporter = _Blocking()  # the export thread hangs: the queue fills up
    t = Tracing("unused", "host/1", lambda reason, n: drops.append((reason, n)), exporter=exporter)
    assert isinstance(t.processor, CountingBatchSpanProcessor)
    try:
        for _ in range(20):
            ctx = context()
            t.emit(ctx, build(ctx), 1, 2)
        assert t.dropped["queue_full"] >= 15
        assert ("queue_full", 1) in drops
    finally:
        exporter.release.set()
        t.shutdown()


def test_failed_exports_are_counted():
    exporter = _Blocking(SpanExportResult.FAILURE)
    exporter.release.set()
    t = Tracing("unused", "host/1", None, exporter=exporter)
    for _ in range(3):
        ctx = context()
        t.emit(ctx, build(ctx), 1, 2)
    t.provider.force_flush()
    assert t.dropped["export_failed"] == 3
    t.shutdown()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "http://c:4317"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4317", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
            "http://t:4317",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)
def test_tracing_is_on_only_with_an_endpoint(monkeypatch, env, expected):
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing_endpoint() == expected


def test_trace_carrier_from_grpc_metadata():
    metadata = (
        ("x-forwarded-for", "1.2.3.4"),
        ("traceparent", f"00-{TRACE_ID}-{ENVOY_SPAN}-01"),
        ("tracestate", ""),
        ("authorization", "Bearer nope"),
    )
    assert audit.trace_carrier(metadata) == {"traceparent": f"00-{TRACE_ID}-{ENVOY_SPAN}-01", "tracestate": ""}
    assert audit.trace_carrier(()) is None and audit.trace_carrier(None) is None


def test_opentelemetry_proto_is_not_shadowed_by_xds_protos():
    # xds-protos ships a stale opentelemetry/proto (grpc/grpc#42926); when it
    # is installed after opentelemetry-proto, the OTLP exporter cannot import.
    # `make` and the Dockerfile reinstall opentelemetry-proto last.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: F401
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope  # noqa: F401
