"""Run one request through the processor's real services, in process.

No Envoy and no network: the request becomes the protobuf messages Envoy
would send (an ext_authz ``CheckRequest``, or the ext_proc stream of request
headers, body, response headers and body chunks) and is handed to the very
servicers ``extproc serve`` runs (``extproc.services``), over the same
``pipeline``. What comes back is read the way Envoy reads it, and the
finished request's audit record (``extproc.audit.record.build``) is kept,
so a test or an explanation states the facts the decision log would.

Each ``Session`` runs on a fresh copy of the policy with its own in-memory
quota backend, so counters never leak from one case to the next.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from extproc import audit
from extproc.audit.record import AuditRecord, build
from extproc.context import Phase, RequestContext
from extproc.policy.loader import discard_policy, load_policy_dir
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.policy.store import PolicyStore
from extproc.policytools.cases import RequestSpec
from extproc.policytools.keys import TestKeys, issuer_defaults, trust_test_keys
from extproc.runtime import Runtime
from extproc.services.authz import ROUTE_KEY, AuthorizationService
from extproc.services.ext_proc import ROUTE_METADATA_KEY, ExternalProcessorService

DECISION_HEADER = "x-decision-id"
_EXT_PROC_ATTRIBUTES = "envoy.filters.http.ext_proc"


@dataclass(slots=True)
class Message:
    """A request as the upstream receives it, or a response as the client does."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    path: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(slots=True)
class Outcome:
    """What one request came to."""

    filter: str
    allowed: bool  # forwarded to the upstream (the response phase may still refuse)
    status: int  # what the client gets
    upstream: Message | None  # None: never reached the upstream
    response: Message
    record: AuditRecord
    rules: list[str]  # named rules that decided, in order (see decided_rules)
    set_headers: dict[str, str] = field(default_factory=dict)  # request headers the processor set
    removed_headers: list[str] = field(default_factory=list)

    @property
    def decided_by(self) -> str | None:
        for outcome in self.record.capabilities:
            if outcome.decision in ("deny", "error") and outcome.mode == "enforce":
                return outcome.capability
        return None

    @property
    def rule(self) -> str | None:
        return self.rules[-1] if self.rules else None


class _FixedStore:
    """What the services read of a ``PolicyStore``: the live revision."""

    def __init__(self, policy: PolicySet):
        self.current = policy


class _AuthzContext:
    """The grpc.aio servicer context ``Check`` reads (trace metadata only)."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def time_remaining(self) -> float:
        return 0.25


class _Stream:
    """The servicer side of one ext_proc stream: ``read`` what the driver
    sends, ``write`` back what the processor answers."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]):
        self._metadata = metadata
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.outbox: asyncio.Queue[pb.ProcessingResponse] = asyncio.Queue()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def read(self) -> Any:
        return await self.inbox.get()

    async def write(self, message: pb.ProcessingResponse) -> None:
        await self.outbox.put(message)


@contextmanager
def _capturing() -> Iterator[list[RequestContext]]:
    """The finished contexts ``pipeline.finish`` hands to the audit sink."""
    seen: list[RequestContext] = []
    previous = audit.SINK

    def sink(ctx: RequestContext) -> None:
        seen.append(ctx)
        if previous is not None:
            previous(ctx)

    audit.SINK = sink
    try:
        yield seen
    finally:
        audit.SINK = previous


def choose_filter(route: CompiledRoute | None, wanted: str) -> str:
    """Which Envoy filter governs the route: ext_proc where the policy needs
    bodies (ext_authz cannot serve those, see ``services.authz``), else
    ext_authz, the cheap path. A route that ext_proc governs for headers
    alone (the demo's ``proc``) says so in its cases (``filter: ext_proc``)."""
    if wanted != "auto":
        return wanted
    if route is not None and (route.needs(Phase.REQUEST_BODY) or route.needs(Phase.RESPONSE_BODY)):
        return "ext_proc"
    return "ext_authz"


def _apply(headers: dict[str, str], set_: dict[str, str], removed: list[str]) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k not in removed}
    out.update(set_)
    return out


def _mutation(mutation: pb.HeaderMutation) -> tuple[dict[str, str], list[str]]:
    set_ = {
        h.header.key: (h.header.raw_value.decode("utf-8", "replace") if h.header.raw_value else h.header.value)
        for h in mutation.set_headers
    }
    return set_, list(mutation.remove_headers)


class Session:
    """One fresh copy of a policy: cases that share a session share its
    counters (quotas, budgets, MCP sessions, A2A task owners)."""

    def __init__(self, directory: str | Path, keys: TestKeys):
        self.runtime = Runtime(quota_backend="memory")
        loaded = load_policy_dir(directory, self.runtime)
        self._loaded = loaded
        self.keys = keys
        self.policy = trust_test_keys(loaded, keys, self.runtime)
        store = cast(PolicyStore, _FixedStore(self.policy))
        self._authz = AuthorizationService(store)
        self._ext_proc = ExternalProcessorService(store)

    async def aclose(self) -> None:
        discard_policy(self._loaded, self.runtime)
        await self.runtime.aclose()

    # -- the request ------------------------------------------------------

    def _bound_route(self, spec: RequestSpec) -> CompiledRoute | None:
        if spec.route:
            return self.policy.route_named(spec.route)
        from extproc.context import HttpRequest

        return self.policy.match(HttpRequest(spec.method, spec.path, spec.host, {}))

    def headers_for(self, spec: RequestSpec, route: CompiledRoute | None) -> tuple[dict[str, str], str]:
        """The request's headers (identity added) and its path."""
        headers = {k.lower(): v for k, v in spec.headers.items()}
        path = spec.path
        identity = spec.identity
        if identity is None:
            return headers, path
        token = identity.token
        if identity.claims is not None:
            iss, aud, algorithms = issuer_defaults(self.policy, route.name if route else None)
            claims = dict(identity.claims)
            if iss is not None:
                claims.setdefault("iss", iss)
            if aud is not None:
                claims.setdefault("aud", aud)
            token = self.keys.mint(claims, algorithms, identity.ttl)
        if token is not None:
            header, prefix, cookie, query = _token_source(route)
            if header:
                headers[header] = f"{prefix}{token}"
            elif cookie:
                headers["cookie"] = f"{cookie}={token}"
            elif query:
                path += ("&" if "?" in path else "?") + f"{query}={token}"
        if identity.api_key is not None:
            headers[_api_key_header(route)] = identity.api_key
        return headers, path

    async def send(self, spec: RequestSpec) -> Outcome:
        route = self._bound_route(spec)
        filter_ = choose_filter(route, spec.filter)
        headers, path = self.headers_for(spec, route)
        principal = spec.identity.principal if spec.identity and spec.identity.principal else ""
        with _capturing() as seen:
            if filter_ == "ext_authz":
                outcome = await self._check(spec, headers, path, principal)
            else:
                outcome = await self._process(spec, headers, path, principal)
        ctx = seen[-1] if seen else None
        if ctx is None:
            raise RuntimeError("the processor finished no request (no audit step ran)")
        record = build(ctx)
        outcome.record = record
        outcome.rules = decided_rules(ctx)
        return outcome

    async def _check(self, spec: RequestSpec, headers: dict[str, str], path: str, principal: str) -> Outcome:
        http = attribute_context_pb2.AttributeContext.HttpRequest(
            method=spec.method, path=path, host=spec.host, scheme="http", headers=headers
        )
        attributes = attribute_context_pb2.AttributeContext(
            request=attribute_context_pb2.AttributeContext.Request(http=http),
            source=attribute_context_pb2.AttributeContext.Peer(principal=principal),
        )
        if spec.route:
            attributes.context_extensions[ROUTE_KEY] = spec.route
        answer = await self._authz.Check(external_auth_pb2.CheckRequest(attributes=attributes), _AuthzContext())
        placeholder = _placeholder_record()
        if answer.HasField("denied_response"):
            denied = answer.denied_response
            response = Message(
                denied.status.code,
                {o.header.key: o.header.value for o in denied.headers},
                denied.body.encode(),
            )
            return Outcome("ext_authz", False, denied.status.code, None, response, placeholder, [])
        ok = answer.ok_response
        set_ = {o.header.key: o.header.value for o in ok.headers}
        removed = list(ok.headers_to_remove)
        upstream_path = path
        if ok.query_parameters_to_remove:
            from extproc.paths import drop_query_params

            base, _, query = path.partition("?")
            query = drop_query_params(query, frozenset(ok.query_parameters_to_remove))
            upstream_path = f"{base}?{query}" if query else base
        body = spec.body_bytes() or b""
        upstream = Message(None, _apply(headers, set_, removed), body, upstream_path)
        upstream_reply = spec.response
        status = upstream_reply.status if upstream_reply else 200
        response_headers = dict(upstream_reply.headers) if upstream_reply else {}
        response_headers.update({o.header.key: o.header.value for o in ok.response_headers_to_add})
        response_body = b"".join(upstream_reply.body_chunks()) if upstream_reply else b""
        response = Message(status, response_headers, response_body)
        return Outcome("ext_authz", True, status, upstream, response, placeholder, [], set_, removed)

    async def _process(self, spec: RequestSpec, headers: dict[str, str], path: str, principal: str) -> Outcome:
        metadata = ((ROUTE_METADATA_KEY, spec.route),) if spec.route else ()
        stream = _Stream(metadata)
        task = asyncio.create_task(self._ext_proc.Process(None, stream))  # type: ignore[arg-type]
        try:
            return await self._drive(spec, headers, path, principal, stream, task)
        finally:
            if not task.done():
                await stream.inbox.put(_EOF)
            await task

    async def _drive(
        self,
        spec: RequestSpec,
        headers: dict[str, str],
        path: str,
        principal: str,
        stream: _Stream,
        task: asyncio.Task[None],
    ) -> Outcome:
        placeholder = _placeholder_record()
        body = spec.body_bytes()

        async def ask(message: pb.ProcessingRequest) -> pb.ProcessingResponse:
            await stream.inbox.put(message)
            return await stream.outbox.get()

        def refused(answer: pb.ProcessingResponse, upstream: Message | None) -> Outcome:
            immediate = answer.immediate_response
            set_, _ = _mutation(immediate.headers)
            response = Message(immediate.status.code, set_, immediate.body)
            return Outcome("ext_proc", upstream is not None, immediate.status.code, upstream, response, placeholder, [])

        pseudo = [(":method", spec.method), (":path", path), (":authority", spec.host), (":scheme", "http")]
        request_headers = base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in (*pseudo, *headers.items())]
        )
        first = pb.ProcessingRequest(
            request_headers=pb.HttpHeaders(headers=request_headers, end_of_stream=body is None)
        )
        if principal:
            first.attributes[_EXT_PROC_ATTRIBUTES].CopyFrom(
                struct_pb2.Struct(fields={"source.principal": struct_pb2.Value(string_value=principal)})
            )
        answer = await ask(first)
        if answer.HasField("immediate_response"):
            return refused(answer, None)
        set_, removed = _mutation(answer.request_headers.response.header_mutation)
        skip_response = answer.HasField("mode_override")
        upstream_headers = _apply(headers, {k: v for k, v in set_.items() if not k.startswith(":")}, removed)
        upstream_path = set_.get(":path", path)
        all_set = {k: v for k, v in set_.items() if not k.startswith(":")}
        all_removed = list(removed)
        if body is not None:
            answer = await ask(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
            if answer.HasField("immediate_response"):
                return refused(answer, None)
            common = answer.request_body.response
            more_set, more_removed = _mutation(common.header_mutation)
            upstream_headers = _apply(upstream_headers, more_set, more_removed)
            all_set.update(more_set)
            all_removed.extend(more_removed)
            if common.HasField("body_mutation"):
                body = common.body_mutation.body
        upstream = Message(None, upstream_headers, body or b"", upstream_path)
        reply = spec.response
        if reply is None or skip_response:
            status = reply.status if reply else 200
            reply_body = b"".join(reply.body_chunks()) if reply else b""
            response = Message(status, dict(reply.headers) if reply else {}, reply_body)
            return Outcome("ext_proc", True, status, upstream, response, placeholder, [], all_set, all_removed)
        chunks = reply.body_chunks()
        pairs = [(":status", str(reply.status)), *((k.lower(), v) for k, v in reply.headers.items())]
        response_headers = base_pb2.HeaderMap(
            headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs]
        )
        answer = await ask(
            pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=response_headers, end_of_stream=not chunks))
        )
        if answer.HasField("immediate_response"):
            return refused(answer, upstream)
        rset, rremoved = _mutation(answer.response_headers.response.header_mutation)
        client_headers = _apply({k.lower(): v for k, v in reply.headers.items()}, rset, rremoved)
        out = b""
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            answer = await ask(pb.ProcessingRequest(response_body=pb.HttpBody(body=chunk, end_of_stream=last)))
            if answer.HasField("immediate_response"):
                return refused(answer, upstream)
            common = answer.response_body.response
            out += common.body_mutation.body if common.HasField("body_mutation") else chunk
        response = Message(reply.status, client_headers, out)
        return Outcome("ext_proc", True, reply.status, upstream, response, placeholder, [], all_set, all_removed)


_EOF: Any = grpc.aio.EOF  # what a stream's read() returns once Envoy half-closes
# "deny rule X", "allow rule X", "rule X: <constraint>"; never "no allow rule for ..."
# "token budget X: needs ...", "rate limit exceeded: X", "concurrency limit reached: X"
_RULE_IN_REASON = re.compile(
    r"(?:(?<!no )(?:deny|allow) rule |(?:^|: )rule |token budget |limit exceeded: |limit reached: )([A-Za-z0-9_.\-]+)"
)


def _placeholder_record() -> AuditRecord:
    return AuditRecord("-", "-", "-", None, "allow", None, None, None, None, [], {}, {}, 0)


def _token_source(route: CompiledRoute | None) -> tuple[str | None, str, str | None, str | None]:
    from extproc.capabilities.jwt_auth import JwtAuth

    for cap in route.capabilities if route else ():
        if isinstance(cap, JwtAuth):
            source = cap.config.sources[0]
            return source.header, source.prefix, source.cookie, source.query
    return "authorization", "Bearer ", None, None


def _api_key_header(route: CompiledRoute | None) -> str:
    from extproc.capabilities.api_key import ApiKeyAuth

    for cap in route.capabilities if route else ():
        if isinstance(cap, ApiKeyAuth):
            return cap.config.header
    return "x-api-key"


def decided_rules(ctx: RequestContext) -> list[str]:
    """The named rules that decided this request, in order: the RBAC rule
    that allowed it, the rule named in a refusal's reason ("deny rule X",
    "allow rule X", "rule X: ..."), MCP and A2A per-call rules, the quota
    limit that refused. Reasons stay in process: never printed raw."""

    out: list[str] = []
    rule = ctx.state.get("rbac.rule")
    if isinstance(rule, str):
        out.append(rule)
    published = ctx.state.get(audit.AUDIT_STATE_KEY)
    if isinstance(published, dict):
        for key in ("mcp.calls", "a2a.calls"):
            calls = published.get(key)
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict) and isinstance(call.get("rule"), str):
                    out.append(call["rule"])
        limit = published.get("quota.limit")
        if isinstance(limit, str):
            out.append(limit)
    for record in ctx.records:
        out.extend(_RULE_IN_REASON.findall(record.reason or ""))
    known = route_rule_names(ctx.route) if ctx.route is not None else set()
    return [name for name in dict.fromkeys(out) if name in known]


def route_rules(route: CompiledRoute) -> list[tuple[str, str]]:
    """The named rules of a route's capabilities: (capability, name), in
    order: ``rules``, quota ``limits`` and token ``budgets`` entries."""
    out: list[tuple[str, str]] = []
    for cap in route.capabilities:
        config = cap.config.model_dump() if cap.config is not None else {}
        for key in ("rules", "limits", "budgets"):
            entries = config.get(key)
            for entry in entries if isinstance(entries, list) else ():
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    out.append((cap.name, entry["name"]))
    return out


def route_rule_names(route: CompiledRoute) -> set[str]:
    return {name for _cap, name in route_rules(route)}
