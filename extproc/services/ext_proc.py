"""Envoy ext_proc (``envoy.service.ext_proc.v3.ExternalProcessor/Process``).

One bidirectional stream per HTTP request, one message per phase Envoy sends.
The route binding comes from the gRPC initial metadata
``x-governance-route`` (set per route with ``ExtProcPerRoute.overrides.
grpc_initial_metadata``); without it the policy's own match decides.

Every message gets an answer. A message we cannot make sense of (a body
before any headers, an empty oneof) ends the exchange with a 500 rather than
letting the request through ungoverned.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from envoy.type.v3 import http_status_pb2

from extproc import audit
from extproc.context import Deny, HeaderMutation, HttpRequest, Phase, RequestContext
from extproc.headers import decode_header_value, encode_header_value
from extproc.paths import drop_query_params
from extproc.pipeline import INTERNAL_ERROR, error_body, finish, run_phase, start
from extproc.policy.store import PolicyStore
from extproc.services.authz import DECISION_HEADER

log = logging.getLogger("extproc.ext_proc")

ROUTE_METADATA_KEY = "x-governance-route"
PROTOCOL_ERROR = Deny(500, "internal_error", "unexpected ext_proc message sequence")
BODY_TOO_LARGE = Deny(413, "body_too_large", "request body incomplete: larger than Envoy's buffer")
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_SKIP = processing_mode_pb2.ProcessingMode.SKIP
# Asking Envoy not to send the response phase saves a round trip on routes
# whose policy has nothing to do there (honoured when allow_mode_override is set).
_SKIP_RESPONSE = processing_mode_pb2.ProcessingMode(response_header_mode=_SKIP)


def _headers_dict(header_map: base_pb2.HeaderMap) -> dict[str, str]:
    headers: dict[str, str] = {}
    for h in header_map.headers:
        value = decode_header_value(h.raw_value) if h.raw_value else h.value
        key = h.key
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    return headers


def _mutation(out: HeaderMutation, extra: tuple[tuple[str, str], ...] = ()) -> pb.HeaderMutation:
    set_headers = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=k, raw_value=encode_header_value(v)), append_action=_OVERWRITE
        )
        for k, v in (*out.set.items(), *extra)
    ]
    return pb.HeaderMutation(set_headers=set_headers, remove_headers=out.remove)


def immediate(deny: Deny, decision_id: str) -> pb.ProcessingResponse:
    headers = [("content-type", deny.content_type), (DECISION_HEADER, decision_id), *deny.headers]
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=deny.status),
            headers=_mutation(HeaderMutation(), tuple(headers)),
            body=error_body(deny, decision_id),
            details=f"extproc_{deny.code}",
        )
    )


def _route_binding(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == ROUTE_METADATA_KEY:
            return str(value)
    return None


class ExternalProcessorService(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> None:
        exchange = _Exchange(self.store, _route_binding(context))
        if audit.TRACING:
            exchange.trace = audit.trace_carrier(context.invocation_metadata())
        # read()/write() rather than an async generator: when Envoy resets the
        # stream (a client hanging up), the cancellation lands in this
        # coroutine and `finally` runs at once. A suspended generator would
        # only be finalized whenever the garbage collector got to it, and the
        # audit step (releasing concurrency slots, settling token budgets)
        # with it.
        try:
            while True:
                message = await context.read()
                if message is grpc.aio.EOF:
                    return
                try:
                    response = await exchange.handle(message)
                except Exception:
                    log.exception("ext_proc message failed", extra={"decision_id": exchange.decision_id})
                    response = immediate(INTERNAL_ERROR, exchange.decision_id)
                    if exchange.ctx is not None:
                        exchange.ctx.deny = INTERNAL_ERROR
                await context.write(response)
                if response.HasField("immediate_response"):
                    return  # Envoy has sent the reply; nothing more will come
        finally:
            exchange.close()


class _Exchange:
    """The state of one HTTP request's ext_proc stream."""

    __slots__ = ("bound_route", "ctx", "store", "trace")

    def __init__(self, store: PolicyStore, bound_route: str | None):
        self.store = store
        self.bound_route = bound_route
        self.ctx: RequestContext | None = None
        self.trace: dict[str, str] | None = None  # Envoy's trace context, when tracing is on

    @property
    def decision_id(self) -> str:
        return self.ctx.decision_id if self.ctx else "-"

    async def handle(self, message: pb.ProcessingRequest) -> pb.ProcessingResponse:
        kind = message.WhichOneof("request")
        if kind == "request_headers":
            return await self._request_headers(message)
        ctx = self.ctx
        if ctx is None:
            log.warning("ext_proc %s before request headers", kind)
            return immediate(PROTOCOL_ERROR, "-")
        if kind == "request_body":
            return await self._request_body(message.request_body, ctx)
        if kind == "response_headers":
            return await self._response_headers(message, ctx)
        if kind == "response_body":
            return await self._response_body(message.response_body, ctx)
        if kind == "request_trailers":
            return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())
        if kind == "response_trailers":
            return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())
        log.warning("ext_proc message with no request set", extra={"decision_id": ctx.decision_id})
        return immediate(PROTOCOL_ERROR, ctx.decision_id)

    async def _request_headers(self, message: pb.ProcessingRequest) -> pb.ProcessingResponse:
        if self.ctx is not None:
            return immediate(PROTOCOL_ERROR, self.ctx.decision_id)
        headers = _headers_dict(message.request_headers.headers)
        request = HttpRequest(
            headers.pop(":method", ""),
            headers.pop(":path", "/"),
            headers.pop(":authority", "") or headers.get("host", ""),
            headers,
            headers.pop(":scheme", "http"),
        )
        self.ctx = ctx = RequestContext(self.store.current, request, _attributes(message))
        ctx.filter = "ext_proc"
        ctx.trace = self.trace
        deny = await start(ctx, self.bound_route)
        if deny is None and message.request_headers.end_of_stream and _judges_missing_body(ctx):
            # No body is coming, so Envoy will send no body message: the body
            # capabilities judge the empty body now (an LLM guard refuses it)
            # rather than never running.
            ctx.request_body = b""
            deny = await run_phase(ctx, Phase.REQUEST_BODY)
        if deny is not None:
            return immediate(deny, ctx.decision_id)
        route = ctx.route
        skip_response = not (
            ctx.response_headers_out
            or (route and (route.needs(Phase.RESPONSE_HEADERS) or route.needs(Phase.RESPONSE_BODY)))
        )
        extra = [(DECISION_HEADER, ctx.decision_id)]
        if ctx.query_remove:
            # ext_proc has no query mutation of its own: rewrite :path.
            path, _, query = request.raw_path.partition("?")
            query = drop_query_params(query, frozenset(ctx.query_remove))
            extra.append((":path", f"{path}?{query}" if query else path))
        mutation = _mutation(ctx.request_headers_out, tuple(extra))
        ctx.request_headers_out = HeaderMutation()  # applied; the body phase may add more
        return pb.ProcessingResponse(
            request_headers=pb.HeadersResponse(response=pb.CommonResponse(header_mutation=mutation)),
            mode_override=_SKIP_RESPONSE if skip_response else None,
        )

    async def _request_body(self, body: pb.HttpBody, ctx: RequestContext) -> pb.ProcessingResponse:
        if not body.end_of_stream and ctx.route is not None and ctx.route.needs(Phase.REQUEST_BODY):
            # Capabilities judge whole bodies: a partial one (BUFFERED_PARTIAL
            # over its limit, or a STREAMED misconfiguration) cannot be
            # governed, so it is refused rather than passed on unread.
            ctx.deny = BODY_TOO_LARGE
            return immediate(BODY_TOO_LARGE, ctx.decision_id)
        ctx.request_body = body.body
        deny = await run_phase(ctx, Phase.REQUEST_BODY)
        if deny is not None:
            return immediate(deny, ctx.decision_id)
        common = pb.CommonResponse()
        extra: tuple[tuple[str, str], ...] = ()
        if ctx.request_body_replaced:
            common.body_mutation.body = ctx.request_body
            extra = (("content-length", str(len(ctx.request_body))),)
        if ctx.request_headers_out or extra:
            common.header_mutation.CopyFrom(_mutation(ctx.request_headers_out, extra))
        return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))

    async def _response_body(self, body: pb.HttpBody, ctx: RequestContext) -> pb.ProcessingResponse:
        ctx.response_chunk = body.body
        ctx.response_end = body.end_of_stream
        ctx.response_chunk_replaced = False
        deny = await run_phase(ctx, Phase.RESPONSE_BODY)
        if deny is not None:
            return immediate(deny, ctx.decision_id)
        common = pb.CommonResponse()
        if ctx.response_chunk_replaced:
            common.body_mutation.body = ctx.response_chunk
        return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))

    async def _response_headers(self, message: pb.ProcessingRequest, ctx: RequestContext) -> pb.ProcessingResponse:
        headers = _headers_dict(message.response_headers.headers)
        status = headers.pop(":status", "")
        ctx.response_status = int(status) if status.isdigit() else None
        ctx.response_headers = headers
        deny = await run_phase(ctx, Phase.RESPONSE_HEADERS)
        if deny is not None:
            return immediate(deny, ctx.decision_id)
        if ctx.route is not None and ctx.route.needs(Phase.RESPONSE_BODY):
            # The body may be rewritten chunk by chunk; its length is unknown.
            ctx.response_headers_out.remove.append("content-length")
        return pb.ProcessingResponse(
            response_headers=pb.HeadersResponse(
                response=pb.CommonResponse(
                    header_mutation=_mutation(ctx.response_headers_out, ((DECISION_HEADER, ctx.decision_id),)),
                )
            )
        )

    def close(self) -> None:
        if self.ctx is not None:
            finish(self.ctx)


# Methods whose content has no defined meaning (RFC 9110 §9.3): a bodiless
# GET or DELETE (an MCP session ending) is not a bypass of body capabilities.
_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


def _judges_missing_body(ctx: RequestContext) -> bool:
    route = ctx.route
    return route is not None and route.needs(Phase.REQUEST_BODY) and ctx.request.method.upper() not in _BODILESS_METHODS


# ext_proc attribute names → the names capabilities read (ext_authz's), so a
# capability works the same behind either filter.
_ATTRIBUTE_ALIASES = {"connection.uri_san_peer_certificate": "source.principal"}


def _attributes(message: pb.ProcessingRequest) -> dict[str, Any]:
    # Envoy keys attributes by filter name; flatten them, the names are unique.
    out: dict[str, Any] = {}
    for struct in message.attributes.values():
        for key, value in struct.fields.items():
            out[_ATTRIBUTE_ALIASES.get(key, key)] = value.string_value if value.HasField("string_value") else value
    return out
