"""Run one request through the processor's real services.

No Envoy: the request becomes the protobuf messages Envoy would send (an
ext_authz ``CheckRequest``, or the ext_proc stream of request headers, body,
response headers and body chunks) and goes to the very servicers
``extproc serve`` runs (``extproc.services``), over the same ``pipeline``:
in process (``Session``: ``policy test``, ``explain`` on a directory,
``diff``), or over gRPC to a running processor (``RemoteTransport``:
``explain --processor``). The answer is read the way Envoy reads it.

In process, the finished request's audit record (``extproc.audit.record.
build``) is kept, so a test or an explanation states the facts the decision
log would. Each ``Session`` runs on a fresh copy of the policy with its own
in-memory quota backend, so counters never leak from one case to the next.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from extproc import audit
from extproc.audit.record import AuditRecord, build
from extproc.context import HttpRequest, Phase, RequestContext
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
_EOF: Any = grpc.aio.EOF  # what a stream's read() returns once Envoy half-closes
# "deny rule X", "allow rule X", "rule X: <constraint>" (never "no allow rule
# for ..."); "token budget X: needs ...", "rate limit exceeded: X", "concurrency limit reached: X"
_RULE_IN_REASON = re.compile(
    r"(?:(?<!no )(?:deny|allow) rule |(?:^|: )rule |token budget |limit exceeded: |limit reached: )([A-Za-z0-9_.\-]+)"
)


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
    record: AuditRecord | None = None  # None: not known (a remote processor without its decision log)
    rules: list[str] = field(default_factory=list)  # named rules that decided (see decided_rules)
    set_headers: dict[str, str] = field(default_factory=dict)  # request headers the processor set
    removed_headers: list[str] = field(default_factory=list)
    sent: Message | None = None  # the request as sent (identity added)
    changes: dict[str, list[str]] = field(default_factory=dict)  # capability -> what it changed

    @property
    def decision_id(self) -> str:
        found = self.response.headers.get(DECISION_HEADER) or self.set_headers.get(DECISION_HEADER)
        return found or (self.record.decision_id if self.record else "-")

    @property
    def decided_by(self) -> str | None:
        for outcome in self.record.capabilities if self.record else ():
            if outcome.decision in ("deny", "error") and outcome.mode == "enforce":
                return outcome.capability
        return None

    @property
    def code(self) -> str | None:
        if self.record is not None:
            return self.record.code
        if self.allowed:
            return None
        error = self.response.json()
        return error.get("error", {}).get("code") if isinstance(error, dict) else None

    @property
    def rule(self) -> str | None:
        """The rule that decided: a refusal's (the last one involved), else
        the first that let the request in (authorization precedes quotas)."""
        if not self.rules:
            return None
        return self.rules[-1] if self.decided_by is not None else self.rules[0]


@dataclass(slots=True)
class Prepared:
    """A request ready to send: headers with the identity added, the path."""

    spec: RequestSpec
    filter: str
    headers: dict[str, str]
    path: str
    principal: str


class Stream(Protocol):
    async def ask(self, message: pb.ProcessingRequest) -> pb.ProcessingResponse: ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def check(self, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse: ...

    def stream(self, metadata: tuple[tuple[str, str], ...]) -> Stream: ...


class _FixedStore:
    """What the services read of a ``PolicyStore``: the live revision."""

    def __init__(self, policy: PolicySet):
        self.current = policy


class _AuthzContext:
    """The grpc.aio servicer context ``Check`` reads (trace metadata only)."""

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


class _LocalStream:
    """The servicer side of one ext_proc stream, in process: the servicer
    ``read``s what the driver ``ask``s and ``write``s its answers back."""

    def __init__(self, service: ExternalProcessorService, metadata: tuple[tuple[str, str], ...]):
        self._metadata = metadata
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._outbox: asyncio.Queue[pb.ProcessingResponse] = asyncio.Queue()
        self._task = asyncio.create_task(service.Process(None, self))  # type: ignore[arg-type]

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def read(self) -> Any:
        return await self._inbox.get()

    async def write(self, message: pb.ProcessingResponse) -> None:
        await self._outbox.put(message)

    async def ask(self, message: pb.ProcessingRequest) -> pb.ProcessingResponse:
        await self._inbox.put(message)
        return await self._outbox.get()

    async def close(self) -> None:
        if not self._task.done():
            await self._inbox.put(_EOF)
        await self._task


class LocalTransport:
    """The servicers ``extproc serve`` runs, called in this process."""

    def __init__(self, policy: PolicySet):
        store = cast(PolicyStore, _FixedStore(policy))
        self._authz = AuthorizationService(store)
        self._ext_proc = ExternalProcessorService(store)

    async def check(self, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
        return await self._authz.Check(request, _AuthzContext())

    def stream(self, metadata: tuple[tuple[str, str], ...]) -> Stream:
        return _LocalStream(self._ext_proc, metadata)


class _RemoteStream:
    def __init__(self, stub: pb_grpc.ExternalProcessorStub, metadata: tuple[tuple[str, str], ...], timeout: float):
        self._call = stub.Process(metadata=metadata or None, timeout=timeout)

    async def ask(self, message: pb.ProcessingRequest) -> pb.ProcessingResponse:
        await self._call.write(message)
        answer = await self._call.read()
        if answer is _EOF:
            raise RuntimeError("the processor ended the stream without answering")
        return cast(pb.ProcessingResponse, answer)

    async def close(self) -> None:
        try:
            await self._call.done_writing()
        except grpc.aio.UsageError:
            pass  # the processor already ended the stream (an immediate response)
        while await self._call.read() is not _EOF:
            pass


class RemoteTransport:
    """A running processor's real gRPC API, as Envoy calls it."""

    def __init__(self, address: str, timeout: float = 5.0):
        self._channel = grpc.aio.insecure_channel(address)
        self._timeout = timeout
        self._authz = authz_grpc.AuthorizationStub(self._channel)
        self._ext_proc = pb_grpc.ExternalProcessorStub(self._channel)

    async def check(self, request: external_auth_pb2.CheckRequest) -> external_auth_pb2.CheckResponse:
        return cast(external_auth_pb2.CheckResponse, await self._authz.Check(request, timeout=self._timeout))

    def stream(self, metadata: tuple[tuple[str, str], ...]) -> Stream:
        return _RemoteStream(self._ext_proc, metadata, self._timeout)

    async def aclose(self) -> None:
        await self._channel.close()


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


def _header_map(pairs: list[tuple[str, str]]) -> base_pb2.HeaderMap:
    return base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs])


async def send(transport: Transport, prepared: Prepared) -> Outcome:
    """Send ``prepared`` as Envoy would through its filter; read the answer."""
    if prepared.filter == "ext_authz":
        outcome = await _check(transport, prepared)
    else:
        stream = transport.stream(((ROUTE_METADATA_KEY, prepared.spec.route),) if prepared.spec.route else ())
        try:
            outcome = await _process(stream, prepared)
        finally:
            await stream.close()
    outcome.sent = Message(None, dict(prepared.headers), prepared.spec.body_bytes() or b"", prepared.path)
    return outcome


async def _check(transport: Transport, prepared: Prepared) -> Outcome:
    spec, headers, path = prepared.spec, prepared.headers, prepared.path
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=spec.method, path=path, host=spec.host, scheme="http", headers=headers
    )
    attributes = attribute_context_pb2.AttributeContext(
        request=attribute_context_pb2.AttributeContext.Request(http=http),
        source=attribute_context_pb2.AttributeContext.Peer(principal=prepared.principal),
    )
    if spec.route:
        attributes.context_extensions[ROUTE_KEY] = spec.route
    answer = await transport.check(external_auth_pb2.CheckRequest(attributes=attributes))
    if answer.HasField("denied_response"):
        denied = answer.denied_response
        headers_back = {o.header.key: o.header.value for o in denied.headers}
        response = Message(denied.status.code, headers_back, denied.body.encode())
        return Outcome("ext_authz", False, denied.status.code, None, response)
    ok = answer.ok_response
    set_ = {o.header.key: o.header.value for o in ok.headers}
    removed = list(ok.headers_to_remove)
    upstream_path = path
    if ok.query_parameters_to_remove:
        from extproc.paths import drop_query_params

        base, _, query = path.partition("?")
        query = drop_query_params(query, frozenset(ok.query_parameters_to_remove))
        upstream_path = f"{base}?{query}" if query else base
    upstream = Message(None, _apply(headers, set_, removed), spec.body_bytes() or b"", upstream_path)
    reply = spec.response
    status = reply.status if reply else 200
    response_headers = {k.lower(): v for k, v in reply.headers.items()} if reply else {}
    response_headers.update({o.header.key: o.header.value for o in ok.response_headers_to_add})
    response = Message(status, response_headers, b"".join(reply.body_chunks()) if reply else b"")
    return Outcome("ext_authz", True, status, upstream, response, set_headers=set_, removed_headers=removed)


async def _process(stream: Stream, prepared: Prepared) -> Outcome:
    spec, headers, path = prepared.spec, prepared.headers, prepared.path
    body = spec.body_bytes()

    def refused(answer: pb.ProcessingResponse, upstream: Message | None) -> Outcome:
        immediate = answer.immediate_response
        set_, _ = _mutation(immediate.headers)
        response = Message(immediate.status.code, set_, immediate.body)
        return Outcome("ext_proc", upstream is not None, immediate.status.code, upstream, response)

    pseudo = [(":method", spec.method), (":path", path), (":authority", spec.host), (":scheme", "http")]
    first = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(headers=_header_map([*pseudo, *headers.items()]), end_of_stream=body is None)
    )
    if prepared.principal:
        # Envoy's request_attributes, keyed by filter name (services.ext_proc flattens them).
        first.attributes[_EXT_PROC_ATTRIBUTES].fields["source.principal"].string_value = prepared.principal
    answer = await stream.ask(first)
    if answer.HasField("immediate_response"):
        return refused(answer, None)
    set_, removed = _mutation(answer.request_headers.response.header_mutation)
    skip_response = answer.HasField("mode_override")
    all_set = {k: v for k, v in set_.items() if not k.startswith(":")}
    all_removed = list(removed)
    upstream_headers = _apply(headers, all_set, removed)
    upstream_path = set_.get(":path", path)
    if body is not None:
        answer = await stream.ask(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
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
        # No upstream answer to govern (none given, or the processor asked
        # Envoy to skip the response phase): the client gets it unchanged.
        status = reply.status if reply else 200
        reply_headers = {k.lower(): v for k, v in reply.headers.items()} if reply else {}
        response = Message(status, reply_headers, b"".join(reply.body_chunks()) if reply else b"")
        return Outcome("ext_proc", True, status, upstream, response, set_headers=all_set, removed_headers=all_removed)
    chunks = reply.body_chunks()
    reply_headers = {k.lower(): v for k, v in reply.headers.items()}
    answer = await stream.ask(
        pb.ProcessingRequest(
            response_headers=pb.HttpHeaders(
                headers=_header_map([(":status", str(reply.status)), *reply_headers.items()]), end_of_stream=not chunks
            )
        )
    )
    if answer.HasField("immediate_response"):
        return refused(answer, upstream)
    rset, rremoved = _mutation(answer.response_headers.response.header_mutation)
    client_headers = _apply(reply_headers, rset, rremoved)
    out = b""
    for index, chunk in enumerate(chunks):
        answer = await stream.ask(
            pb.ProcessingRequest(response_body=pb.HttpBody(body=chunk, end_of_stream=index == len(chunks) - 1))
        )
        if answer.HasField("immediate_response"):
            return refused(answer, upstream)
        common = answer.response_body.response
        out += common.body_mutation.body if common.HasField("body_mutation") else chunk
    response = Message(reply.status, client_headers, out)
    return Outcome("ext_proc", True, reply.status, upstream, response, set_headers=all_set, removed_headers=all_removed)


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


def place_credentials(
    spec: RequestSpec, route: CompiledRoute | None, token: str | None
) -> tuple[dict[str, str], str, str]:
    """The request's headers and path with its credentials where the route's
    capabilities look for them, and its mTLS principal."""
    headers = {k.lower(): v for k, v in spec.headers.items()}
    path = spec.path
    identity = spec.identity
    if token is not None:
        header, prefix, cookie, query = _token_source(route)
        if header:
            headers[header] = f"{prefix}{token}"
        elif cookie:
            headers["cookie"] = f"{cookie}={token}"
        elif query:
            path += ("&" if "?" in path else "?") + f"{query}={token}"
    if identity is not None and identity.api_key is not None:
        headers[_api_key_header(route)] = identity.api_key
    principal = identity.principal if identity is not None and identity.principal else ""
    return headers, path, principal


class Session:
    """One fresh copy of a policy: requests sent in one session share its
    counters (quotas, budgets, MCP sessions, A2A task owners)."""

    def __init__(self, directory: str | Path, keys: TestKeys):
        self.runtime = Runtime(quota_backend="memory")
        self._loaded = load_policy_dir(directory, self.runtime)
        self.keys = keys
        self.policy = trust_test_keys(self._loaded, keys, self.runtime)
        self.transport = LocalTransport(self.policy)
        self.tracer: Any = None  # see extproc.policytools.explain.ChangeTracer

    async def aclose(self) -> None:
        discard_policy(self._loaded, self.runtime)
        await self.runtime.aclose()

    def route_for(self, spec: RequestSpec) -> CompiledRoute | None:
        if spec.route:
            return self.policy.route_named(spec.route)
        return self.policy.match(HttpRequest(spec.method, spec.path, spec.host, {}))

    def prepare(self, spec: RequestSpec) -> Prepared:
        route = self.route_for(spec)
        identity = spec.identity
        token = identity.token if identity is not None else None
        if identity is not None and identity.claims is not None:
            iss, aud, algorithms = issuer_defaults(self.policy, route.name if route else None)
            claims = dict(identity.claims)
            if iss is not None:
                claims.setdefault("iss", iss)
            if aud is not None:
                claims.setdefault("aud", aud)
            token = self.keys.mint(claims, algorithms, identity.ttl)
        headers, path, principal = place_credentials(spec, route, token)
        return Prepared(spec, choose_filter(route, spec.filter), headers, path, principal)

    async def send(self, spec: RequestSpec) -> Outcome:
        prepared = self.prepare(spec)
        with _capturing() as seen:
            outcome = await send(self.transport, prepared)
        if not seen:
            raise RuntimeError("the processor finished no request (no audit step ran)")
        ctx = seen[-1]
        outcome.record = build(ctx)
        if self.tracer is not None:
            outcome.record.capabilities = [c for c in outcome.record.capabilities if c.capability != "explain.trace"]
            outcome.changes = self.tracer.take()
        outcome.rules = decided_rules(ctx, outcome.record)
        return outcome


def decided_rules(ctx: RequestContext, record: AuditRecord) -> list[str]:
    """The named rules that decided this request, in order: the RBAC rule
    that allowed it and the quota limit involved (audit record facts), MCP
    and A2A per-call rules, the rule named in a refusal's reason ("deny rule
    X", "allow rule X", "rule X: ...", "token budget X")."""
    out: list[str] = []
    for fact in ("extproc.rbac.rule", "extproc.quota.limit"):
        value = record.facts.get(fact)
        if isinstance(value, str):
            out.append(value)
    published = ctx.state.get(audit.AUDIT_STATE_KEY)
    if isinstance(published, dict):
        for key in ("mcp.calls", "a2a.calls"):
            calls = published.get(key)
            for call in calls if isinstance(calls, list) else ():
                if isinstance(call, dict) and isinstance(call.get("rule"), str):
                    out.append(call["rule"])
    for decision in ctx.records:
        out.extend(_RULE_IN_REASON.findall(decision.reason or ""))
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
