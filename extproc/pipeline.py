"""The core: resolve a request's route and run its capabilities phase by phase.

This module is deliberately small. It knows nothing about any capability; it
orders them (done at compile time), runs them, applies each one's staged
edits or (monitor mode, refusal, failure) drops them, turns
exceptions into a fail-closed 500 and records each decision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING

from extproc import audit
from extproc.context import CapabilityRecord, Deny, Mode, Phase, RequestContext
from extproc.identity.publish import strip_spoofable

if TYPE_CHECKING:
    from extproc.policy.model import CompiledRoute

log = logging.getLogger("extproc.pipeline")

INTERNAL_ERROR = Deny(500, "internal_error", "capability raised")
UNKNOWN_ROUTE = Deny(403, "forbidden", "route bound by Envoy is not in the policy")
UNMATCHED = Deny(403, "forbidden", "no policy route matches the request")

_MESSAGES = {
    400: "bad request",
    401: "authentication required",
    403: "access denied",
    404: "not found",
    413: "request body too large",
    429: "too many requests",
    500: "internal error",
    503: "service unavailable",
}


def resolve_route(ctx: RequestContext, bound_name: str | None) -> Deny | None:
    """Attach the route to ``ctx``. Envoy's binding (by name) wins over the
    policy's own path/host/method match; no route means deny unless the policy
    set ``defaults.unmatched: allow``."""
    policy = ctx.policy
    if bound_name:
        ctx.route = policy.route_named(bound_name)
        if ctx.route is None:
            ctx.records.append(CapabilityRecord("router", Mode.ENFORCE, "deny", f"unknown route {bound_name!r}"))
            return UNKNOWN_ROUTE
        return None
    ctx.route = policy.match(ctx.request)
    if ctx.route is None and not policy.unmatched_allow:
        ctx.records.append(CapabilityRecord("router", Mode.ENFORCE, "deny", "unmatched"))
        return UNMATCHED
    return None


def refuse_ambiguous_path(ctx: RequestContext) -> Deny | None:
    """A path whose meaning depends on who reads it is refused before any
    route matches it (extproc.paths lists the cases and their codes)."""
    refusal = ctx.request.path_refusal
    if refusal is None:
        return None
    ctx.records.append(CapabilityRecord("router", Mode.ENFORCE, "deny", refusal.reason, refusal.code))
    message = "request path too long" if refusal.status == 414 else "ambiguous request path"
    return Deny(refusal.status, refusal.code, refusal.reason, message=message)


async def start(
    ctx: RequestContext, bound_name: str | None, route_check: Callable[[RequestContext], Deny | None] | None = None
) -> Deny | None:
    """The request-headers step every request takes, whichever filter sent it:
    drop client-sent identity headers, refuse an ambiguous path, find the
    route (``route_check``: the filter's own objection to it), run its
    capabilities."""
    strip_spoofable(ctx)
    deny = refuse_ambiguous_path(ctx) or resolve_route(ctx, bound_name)
    if deny is None and ctx.route is not None and route_check is not None:
        deny = route_check(ctx)
    if deny is None and ctx.route is not None:
        ctx.request.path = ctx.route.authorized_path(ctx.request.path)
    if deny is None:
        deny = await run_phase(ctx, Phase.REQUEST_HEADERS)
    else:
        ctx.deny = deny
    ctx.decided_ns = perf_counter_ns()
    return deny


async def run_phase(ctx: RequestContext, phase: Phase) -> Deny | None:
    """Run ``phase``'s handlers in priority order. Each handler's edits are
    staged (see ``RequestContext.stage``) and applied here, in one place,
    only for an enforce-mode handler that neither denied nor failed."""
    route = ctx.route
    if route is None:
        return None
    ctx.begin_phase()
    deny = None
    try:
        deny = await _run_handlers(ctx, phase, route)
    finally:
        ctx.end_phase(completed=deny is None)
    return deny


async def _run_handlers(ctx: RequestContext, phase: Phase, route: CompiledRoute) -> Deny | None:
    for cap, handler in route.handlers[phase]:
        monitor = cap.mode is Mode.MONITOR
        ctx.dry_run = monitor
        ctx.begin_edits()
        try:
            verdict = await handler(ctx)
        except Exception:
            ctx.discard_edits()
            log.exception(
                "capability %s failed in %s",
                cap.name,
                phase.value,
                extra={"decision_id": ctx.decision_id, "route": route.name, "revision": ctx.revision},
            )
            ctx.records.append(CapabilityRecord(cap.name, cap.mode, "error", f"exception in {phase.value}"))
            if monitor:
                continue  # a monitor-mode capability can never block, not even by failing
            ctx.deny = INTERNAL_ERROR
            return INTERNAL_ERROR
        finally:
            ctx.dry_run = False
        if monitor or verdict is not None:
            ctx.discard_edits()
        else:
            ctx.commit_edits()
        if verdict is not None:
            ctx.records.append(CapabilityRecord(cap.name, cap.mode, "deny", verdict.reason, verdict.code))
            if not monitor:
                ctx.deny = verdict
                return verdict
    return None


def finish(ctx: RequestContext) -> None:
    """The audit/log step: every capability's ``on_log``, once per request,
    then the audit trail (spans, decision log, metrics) when one is on."""
    route = ctx.route
    if route is not None:
        for cap in route.capabilities:
            try:
                cap.on_log(ctx)
            except Exception:
                log.exception("capability %s failed in log", cap.name, extra={"decision_id": ctx.decision_id})
    sink = audit.SINK
    if sink is not None:
        sink(ctx)  # never raises; see extproc.audit.telemetry


def error_body(deny: Deny, decision_id: str) -> bytes:
    """The JSON body of a refusal: a stable code, a generic message and the id
    that finds the audit record. Never the reason: that helps attackers."""
    if deny.body is not None:
        return deny.body
    message = deny.message or _MESSAGES.get(deny.status, "request refused")
    return json.dumps(
        {"error": {"code": deny.code, "message": message, "decision_id": decision_id}}, separators=(",", ":")
    ).encode()
