"""The audit trail: OpenTelemetry spans, the decision log and Prometheus metrics.

Every governed request ends in ``pipeline.finish(ctx)``, which hands the
finished ``RequestContext`` to ``SINK`` when one is installed. With nothing
configured ``SINK`` is ``None`` and the audit step costs one attribute read:
the telemetry modules (OpenTelemetry SDK, prometheus_client) are imported
only by ``extproc.audit.telemetry`` when something is switched on.

What a request's audit record may contain is an allow-list
(``extproc.audit.record``): never raw headers, tokens, bodies or prompts.

Capabilities add audit facts through one documented convention: the dict
``ctx.state["audit"]`` (see ``AUDIT_STATE_KEY`` and
``extproc.audit.record.AUDIT_KEYS``). Only the keys listed there, with
values of the listed type, ever leave the process; anything else is dropped.

``TRACING`` tells the gRPC services whether to capture Envoy's trace context
(``traceparent``) for the request; it is False unless tracing is on, so the
services do no extra work otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extproc.context import RequestContext

# Where capabilities put safe audit facts: ctx.state[AUDIT_STATE_KEY][key] = value.
AUDIT_STATE_KEY = "audit"

# Called once per finished request by pipeline.finish; None when auditing is off.
SINK: Callable[[RequestContext], None] | None = None
# Whether the services should copy the W3C trace context into ctx.trace.
TRACING = False

_TRACE_KEYS = ("traceparent", "tracestate")


def note(ctx: RequestContext, key: str, value: Any) -> None:
    """Record one audit fact for this request (a capability's helper):
    ``note(ctx, "llm.output_tokens", 42)``. Keys outside the allow-list are
    dropped when the record is built, so a typo loses the fact, never leaks."""
    facts = ctx.state.get(AUDIT_STATE_KEY)
    if not isinstance(facts, dict):
        facts = ctx.state[AUDIT_STATE_KEY] = {}
    facts[key] = value


def trace_carrier(metadata) -> dict[str, str] | None:
    """Envoy's W3C trace context from gRPC invocation metadata (Envoy's gRPC
    client injects it for both ext_authz and ext_proc calls), or None."""
    carrier = None
    for key, value in metadata or ():
        if key in _TRACE_KEYS:
            if carrier is None:
                carrier = {}
            carrier[key] = value if isinstance(value, str) else value.decode("latin-1")
    return carrier
