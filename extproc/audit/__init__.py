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

import warnings
from collections.abc import Callable, Iterable
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


class UndeclaredAuditFact(UserWarning):
    """A capability wrote an audit fact that ``extproc.audit.record`` does not
    declare: it would be dropped from every record. The test suite turns this
    warning into an error (pyproject.toml), so a misspelt or forgotten key
    fails the capability's tests instead of silently vanishing."""


_DECLARED: set[str] = set()


class AuditFacts(dict[str, Any]):
    """``ctx.state["audit"]``: a dict that checks each key it is given
    against the declared facts (once per key and process)."""

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> None:
        _check_declared(key)
        super().__setitem__(key, value)

    def setdefault(self, key: str, default: Any = None) -> Any:
        _check_declared(key)
        return super().setdefault(key, default)


def _check_declared(key: str) -> None:
    if key in _DECLARED:
        return
    from extproc.audit.record import declared  # the allow-list; imported on first use only

    if declared(key):
        _DECLARED.add(key)
    else:
        warnings.warn(
            f"audit fact {key!r} is not declared in extproc.audit.record and will never be recorded",
            UndeclaredAuditFact,
            stacklevel=3,
        )


def facts_of(ctx: RequestContext) -> dict[str, Any]:
    """This request's audit facts, created on first use."""
    facts = ctx.state.get(AUDIT_STATE_KEY)
    if not isinstance(facts, dict):
        facts = ctx.state[AUDIT_STATE_KEY] = AuditFacts()
    return facts


def note(ctx: RequestContext, key: str, value: Any) -> None:
    """Record one audit fact for this request (a capability's helper):
    ``note(ctx, "llm.output_tokens", 42)``. Only keys declared in
    ``extproc.audit.record`` are ever exported; see ``UndeclaredAuditFact``."""
    facts_of(ctx)[key] = value


def trace_carrier(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str] | None:
    """Envoy's W3C trace context from gRPC invocation metadata (Envoy's gRPC
    client injects it for both ext_authz and ext_proc calls), or None."""
    carrier: dict[str, str] | None = None
    for key, value in metadata or ():
        if key in _TRACE_KEYS:
            if carrier is None:
                carrier = {}
            carrier[key] = value if isinstance(value, str) else value.decode("latin-1")
    return carrier
