"""One HTTP request's JSON-RPC exchange, as both agent capabilities (MCP and
A2A) govern it: the same parse loop, the same refusal and the same audit, so
the two protocols cannot drift apart on how a decision is made or recorded.

Request: the body is parsed strictly (``wire.parse``) and every message is
judged by the capability's ``authorize``; a batch is refused as a unit when
any message in it is refused or invalid — the refused message answered with
its own error, every other request with "not executed" — and then every
audit record of the batch says ``deny`` (none of it reached the server).
Allowed messages reach ``ctx.records`` only once the whole body passed.

Response: the capability's ``transform`` sees every JSON-RPC message coming
back (``responses``); a body that cannot be read strictly is withheld and
the requests still awaiting an answer get an error instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from extproc.context import CapabilityRecord, Deny, RequestContext
from extproc.jsonrpc import wire
from extproc.jsonrpc.responses import JsonBody, SseBody, Transform, feed_response, open_response
from extproc.jsonrpc.wire import INTERNAL_ERROR, INVALID_REQUEST, POLICY_DENIED, Envelope, Invalid, Message

if TYPE_CHECKING:
    from extproc.capabilities.base import Capability

log = logging.getLogger("extproc.jsonrpc")


@dataclass(frozen=True, slots=True)
class Protocol:
    """What differs between the protocols sharing this machinery."""

    name: str  # "MCP", "A2A": log lines and reasons
    key: str  # "mcp", "a2a": ctx.state and audit key prefix
    invalid_status: int  # HTTP status answering a malformed body (the protocol's servers' own)
    decision_keys: tuple[str, ...] = ()  # flat audit keys carrying a call's decision
    is_notification: Callable[[str], bool] = lambda method: False


@dataclass(slots=True)
class Pending:
    """A request whose response is awaited."""

    id: Any
    method: str
    record: dict[str, Any] | None = None  # its audit record, completed from the response


@dataclass(slots=True)
class Exchange:
    """What one HTTP request's processing remembers between phases."""

    pending: dict[tuple[str, Any], Pending] = field(default_factory=dict)  # id_key -> Pending
    batch: bool = False
    reasons: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # this request's audit records
    allowed: list[str] = field(default_factory=list)  # summaries of allowed messages
    body: JsonBody | SseBody | None = None  # the response rewriter
    fed: bool = False  # the response body reached us (Envoy's route sends it)

    def expect(self, message: Message, method: str, record: dict[str, Any] | None = None) -> None:
        self.pending[wire.id_key(message.id)] = Pending(message.id, method, record)

    def take(self, message: dict[str, Any], keep: bool = False) -> Pending | None:
        """The pending request a response message answers, if any."""
        rid = message.get("id")
        if not wire.valid_id(rid):
            return None
        key = wire.id_key(rid)
        return self.pending.get(key) if keep else self.pending.pop(key, None)


E = TypeVar("E", bound=Exchange)
# authorize(ctx, exchange, message) -> None to let it through, else its error object
Authorize = Callable[[RequestContext, E, Message], Awaitable["dict[str, Any] | None"]]


def _state_key(protocol: Protocol, owner: object) -> str:
    # One exchange per capability instance: two of them on one route (a
    # monitor-mode copy beside an enforcing one) must never feed one rewriter twice.
    return f"{protocol.key}:{id(owner)}"


def exchange_of(ctx: RequestContext, protocol: Protocol, owner: object, factory: Callable[[], E]) -> E:
    """``owner``'s exchange for this request, created on first use (by
    ``factory``: ``Exchange`` or the capability's subclass of it)."""
    key = _state_key(protocol, owner)
    exchange: E | None = ctx.state.get(key)
    if exchange is None:
        exchange = factory()
        ctx.state[key] = exchange
    return exchange


def existing_exchange(ctx: RequestContext, protocol: Protocol, owner: object) -> Exchange | None:
    found: Exchange | None = ctx.state.get(_state_key(protocol, owner))
    return found


def record_call(ctx: RequestContext, exchange: Exchange, protocol: Protocol, record: dict[str, Any]) -> None:
    """Add one message's audit record (``<key>.calls``)."""
    wire.audit_of(ctx).setdefault(f"{protocol.key}.calls", []).append(record)
    exchange.records.append(record)


async def judge_request(
    cap: Capability[Any],
    ctx: RequestContext,
    exchange: E,
    protocol: Protocol,
    authorize: Authorize[E],
    *,
    max_body_bytes: int,
    max_batch: int,
    batches: bool = True,
) -> Deny | None:
    """Parse the request body and judge every message in it."""
    body = ctx.request_body or b""
    accept = ctx.request.headers.get("accept")
    if len(body) > max_body_bytes:
        return wire.refusal(
            wire.error_object(None, INVALID_REQUEST, "request too large"),
            status=413,
            code="body_too_large",
            reason=f"{protocol.name} body of {len(body)} bytes",
            accept=accept,
        )
    try:
        envelope = wire.parse(body, max_batch=max_batch, batches=batches, is_notification=protocol.is_notification)
    except wire.JsonRpcError as exc:
        wire.audit_of(ctx)[f"{protocol.key}.error"] = exc.code
        return wire.refusal(
            wire.error_object(exc.id, exc.code, exc.message),
            status=protocol.invalid_status,
            code="invalid_request",
            reason=f"malformed JSON-RPC ({exc.code}): {exc.message}",
            accept=accept,
        )
    exchange.batch = envelope.batch
    wire.audit_of(ctx)[f"{protocol.key}.methods"] = [m.method for m in envelope.messages() if m.method]
    errors: dict[int, dict[str, Any]] = {}
    for item in envelope.items:
        if isinstance(item, Invalid):
            errors[item.index] = wire.error_object(item.id, item.code, item.message)
            exchange.reasons.append(f"message {item.index}: {item.message}")
            continue
        error = await authorize(ctx, exchange, item)
        if error is not None:
            errors[item.index] = error
    if not errors:
        for summary in exchange.allowed:
            ctx.records.append(CapabilityRecord(cap.name, cap.mode, "allow", summary))
        return None
    return _refuse(ctx, exchange, protocol, envelope, errors, accept)


def _refuse(
    ctx: RequestContext,
    exchange: Exchange,
    protocol: Protocol,
    envelope: Envelope,
    errors: dict[int, dict[str, Any]],
    accept: str | None,
) -> Deny:
    if not envelope.batch:
        payload: dict[str, Any] | list[Any] = errors[0]
    else:
        payload = []
        for item in envelope.items:
            if item.index in errors:
                payload.append(errors[item.index])
            elif isinstance(item, Message) and item.kind == "request":
                payload.append(
                    wire.error_object(
                        item.id,
                        POLICY_DENIED,
                        "not executed: another message in this batch was refused",
                        {"decision_id": ctx.decision_id},
                    )
                )
    # Nothing of a refused body reaches the server: no message of it was allowed.
    for record in exchange.records:
        if record.get("decision") == "allow":
            record["decision"], record["reason"] = "deny", "batch refused: " + str(record.get("reason"))
    audit = wire.audit_of(ctx)
    for key in protocol.decision_keys:
        if key in audit:
            audit[key] = "deny"
    exchange.pending.clear()
    invalid = any(e["error"]["code"] != POLICY_DENIED for e in errors.values())
    status = protocol.invalid_status if invalid else 200
    return wire.refusal(
        payload,
        status=status,
        code="invalid_request" if invalid else "forbidden",
        reason="; ".join(exchange.reasons) or "refused",
        accept=accept,
    )


# -- response -------------------------------------------------------------------


def open_exchange_response(
    ctx: RequestContext,
    exchange: Exchange,
    protocol: Protocol,
    transform: Transform,
    max_response_bytes: int,
    on_unreadable: Callable[[], bytes | None] | None = None,
) -> Deny | None:
    """Start rewriting the response (any status: a client reads a JSON-RPC
    body under a 2xx other than 200 too)."""
    exchange.body, deny = open_response(
        ctx,
        transform,
        on_unreadable or (lambda: withhold_pending(ctx, exchange, protocol)),
        max_response_bytes,
        protocol.name,
    )
    return deny


async def feed(ctx: RequestContext, exchange: Exchange | None) -> None:
    await feed_response(ctx, exchange)


def withhold_pending(
    ctx: RequestContext,
    exchange: Exchange,
    protocol: Protocol,
    message: str = "the response was withheld by the gateway: invalid JSON",
) -> bytes | None:
    """The answer to the requests still waiting when the response cannot be
    read strictly: an error each (the body itself is withheld)."""
    wire.audit_of(ctx)[f"{protocol.key}.unreadable_response"] = True
    log.warning("%s response withheld: not strictly valid JSON", protocol.name, extra={"decision_id": ctx.decision_id})
    waiting = list(exchange.pending.values())
    exchange.pending.clear()
    if not waiting:
        return None
    errors = [wire.error_object(p.id, INTERNAL_ERROR, message) for p in waiting]
    return wire.dumps(errors if exchange.batch or len(errors) > 1 else errors[0])


def log_unfed(ctx: RequestContext, protocol: Protocol, owner: object) -> None:
    """``on_log``: responses were awaited but no body ever came through — the
    Envoy route does not send response bodies, so nothing could be filtered."""
    exchange = existing_exchange(ctx, protocol, owner)
    if exchange is not None and exchange.body is not None and not exchange.fed and exchange.pending:
        log.error(
            "%s route %s: response body never reached the processor; set "
            "response_body_mode: STREAMED on its Envoy route",
            protocol.name,
            ctx.route.name if ctx.route else "?",
            extra={"decision_id": ctx.decision_id},
        )
