"""Envoy ext_authz (``envoy.service.auth.v3.Authorization/Check``).

The cheap path for plain API routes: one unary call, headers only. The route
binding comes from the route's ``check_settings.context_extensions.route``.

Headers only is also a limit: a route whose capabilities work on the request
body or the response (PII redaction, MCP tool filtering...) cannot be
governed from here. Such a route reached through ext_authz is refused (500
``filter_mismatch``, one error log per route and policy revision) rather
than allowed with those capabilities silently skipped.
"""

from __future__ import annotations

import logging

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from extproc import audit
from extproc.context import CapabilityRecord, Deny, HttpRequest, Mode, Phase, RequestContext
from extproc.headers import decode_header_value
from extproc.pipeline import INTERNAL_ERROR, error_body, finish, start
from extproc.policy.model import PolicySet
from extproc.policy.store import PolicyStore

log = logging.getLogger("extproc.authz")

DECISION_HEADER = "x-decision-id"
ROUTE_KEY = "route"
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_OK = status_pb2.Status(code=code_pb2.OK)
_DENIED = status_pb2.Status(code=code_pb2.PERMISSION_DENIED)
_UNAUTHENTICATED = status_pb2.Status(code=code_pb2.UNAUTHENTICATED)
# The phases ext_authz never sees: Envoy asks it once, before the body.
# (Response-header handlers are left out: what they add reaches the client
# through response_headers_to_add, e.g. the quota's RateLimit headers.)
EXT_PROC_PHASES = (Phase.REQUEST_BODY, Phase.RESPONSE_BODY)
FILTER_MISMATCH = Deny(
    500,
    "filter_mismatch",
    "route needs ext_proc but was reached through ext_authz",
    message="gateway misconfigured for this route",
)


def _option(name: str, value: str) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=_OVERWRITE)


def _request_from(attributes: attribute_context_pb2.AttributeContext) -> HttpRequest:
    http = attributes.request.http
    if http.header_map.headers:  # Envoy sends this instead of `headers` with encode_raw_headers
        headers: dict[str, str] = {}
        for h in http.header_map.headers:
            value = decode_header_value(h.raw_value)
            headers[h.key] = f"{headers[h.key]},{value}" if h.key in headers else value
    else:
        headers = dict(http.headers)
    return HttpRequest(http.method, http.path, http.host, headers, http.scheme or "http")


def denied_response(deny: Deny, decision_id: str) -> authz_pb2.CheckResponse:
    headers = [_option("content-type", deny.content_type), _option(DECISION_HEADER, decision_id)]
    headers.extend(_option(k, v) for k, v in deny.headers)
    return authz_pb2.CheckResponse(
        status=_UNAUTHENTICATED if deny.status == 401 else _DENIED,
        denied_response=authz_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=deny.status),
            headers=headers,
            body=error_body(deny, decision_id).decode(),
        ),
    )


def ext_proc_only_routes(policy: PolicySet) -> dict[str, tuple[str, ...]]:
    """Route name -> the phases it needs that ext_authz cannot serve."""
    out = {}
    for name, route in policy.routes.items():
        phases = tuple(phase.value for phase in EXT_PROC_PHASES if route.needs(phase))
        if phases:
            out[name] = phases
    return out


class AuthorizationService(authz_grpc.AuthorizationServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        # Per revision, computed once: most policies have no such route and
        # then the check below is one identity comparison and a falsy dict.
        self._scanned: PolicySet | None = None
        self._ext_proc_only: dict[str, tuple[str, ...]] = {}
        self._reported: set[str] = set()

    def _wrong_filter(self, ctx: RequestContext) -> Deny | None:
        """``pipeline.start``'s route check: a route this filter cannot govern."""
        policy, route = ctx.policy, ctx.route
        if policy is not self._scanned:
            self._ext_proc_only, self._reported, self._scanned = ext_proc_only_routes(policy), set(), policy
        if route is None or not self._ext_proc_only:
            return None
        phases = self._ext_proc_only.get(route.name)
        if phases is None:
            return None
        if route.name not in self._reported:
            self._reported.add(route.name)
            log.error(
                "route %r needs the ext_proc filter (%s) but Envoy sends it through ext_authz; "
                "refusing its requests with 500 filter_mismatch until the Envoy route or the policy "
                "is fixed",
                route.name,
                ", ".join(phases),
                extra={"route": route.name, "revision": policy.revision},
            )
        ctx.records.append(
            CapabilityRecord(
                "router", Mode.ENFORCE, "deny", f"needs ext_proc for {', '.join(phases)}", FILTER_MISMATCH.code
            )
        )
        return FILTER_MISMATCH

    async def Check(
        self, request: authz_pb2.CheckRequest, context: grpc.aio.ServicerContext
    ) -> authz_pb2.CheckResponse:
        ctx: RequestContext | None = None
        finished = False
        try:
            attributes = request.attributes
            ctx = RequestContext(
                self.store.current, _request_from(attributes), {"source.principal": attributes.source.principal}
            )
            ctx.filter = "ext_authz"
            if audit.TRACING:
                ctx.trace = audit.trace_carrier(context.invocation_metadata())
            bound = attributes.context_extensions.get(ROUTE_KEY)
            deny = await start(ctx, bound, self._wrong_filter)
            finished = True
            finish(ctx)
            if deny is not None:
                return denied_response(deny, ctx.decision_id)
            return self._ok(ctx)
        except Exception:
            # Fail closed: a bug here must never become an allowed request.
            decision_id = ctx.decision_id if ctx else "-"
            log.exception("ext_authz check failed", extra={"decision_id": decision_id})
            if ctx is not None and not finished:
                ctx.deny = INTERNAL_ERROR
                try:
                    finish(ctx)  # the failure is audited too
                except Exception:
                    log.exception("audit of a failed check failed", extra={"decision_id": decision_id})
            return denied_response(INTERNAL_ERROR, decision_id)

    @staticmethod
    def _ok(ctx: RequestContext) -> authz_pb2.CheckResponse:
        request_out, response_out = ctx.request_headers_out, ctx.response_headers_out
        headers = [_option(DECISION_HEADER, ctx.decision_id)]
        headers.extend(_option(k, v) for k, v in request_out.set.items())
        response_headers = [_option(DECISION_HEADER, ctx.decision_id)]
        response_headers.extend(_option(k, v) for k, v in response_out.set.items())
        return authz_pb2.CheckResponse(
            status=_OK,
            ok_response=authz_pb2.OkHttpResponse(
                headers=headers,
                headers_to_remove=request_out.remove,
                query_parameters_to_remove=ctx.query_remove,
                response_headers_to_add=response_headers,
            ),
        )
