"""Per-request state shared by the capabilities of one route.

A ``RequestContext`` lives for one HTTP request: one ext_authz ``Check`` or one
ext_proc stream. Capabilities read the request from it, write header mutations
into it and return a ``Deny`` to stop the request. Everything here is plain
slotted objects because it is allocated on every request.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from extproc.paths import AmbiguousPath, canonical_path, printable_path

if TYPE_CHECKING:
    from extproc.llm.request import LlmRequest
    from extproc.policy.model import CompiledRoute, PolicySet


class Mode(str, enum.Enum):  # noqa: UP042 - a StrEnum formats differently; records and logs carry these
    ENFORCE = "enforce"
    MONITOR = "monitor"


class Phase(str, enum.Enum):  # noqa: UP042 - as Mode
    REQUEST_HEADERS = "request_headers"
    REQUEST_BODY = "request_body"
    RESPONSE_HEADERS = "response_headers"
    RESPONSE_BODY = "response_body"


@dataclass(slots=True, frozen=True)
class Deny:
    """A capability's refusal. ``code`` is the stable machine-readable error code
    the client sees; ``reason`` is the detailed cause that only the audit record
    sees (it may name the exact check that failed, which the client must not learn)."""

    status: int
    code: str
    reason: str
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    # A complete body in the protocol's own error shape (an LLM API's error
    # JSON, a JSON-RPC error), used instead of the generic JSON error.
    body: bytes | None = None
    content_type: str = "application/json"


@dataclass(slots=True)
class HeaderMutation:
    set: dict[str, str] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.set or self.remove)


@dataclass(slots=True, frozen=True)
class CapabilityRecord:
    """One capability's decision, kept for the audit step."""

    capability: str
    mode: Mode
    decision: str  # "deny" | "error" | "allow"
    reason: str
    code: str = ""  # the Deny's stable code, for the audit trail


@dataclass(slots=True)
class Identity:
    """Who is calling, as established by the identity capabilities (JWT, API
    key, mTLS). Several may contribute: a workload's SPIFFE ID from mTLS and
    a user's subject from a JWT can both be present. Later decisions (RBAC,
    quotas, model and tool access, audit) key on this, never on raw headers."""

    subject: str | None = None  # user or consumer id (JWT `sub`, API key consumer)
    issuer: str | None = None
    tenant: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    principal: str | None = None  # mTLS peer identity Envoy verified, e.g. spiffe://…
    agent_id: str | None = None
    delegation: tuple[str, ...] = ()  # RFC 8693 `act` chain, outermost actor first
    api_key_id: str | None = None
    methods: frozenset[str] = frozenset()  # how it was established: jwt, api_key, mtls
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return bool(self.methods)


ANONYMOUS = Identity()


@dataclass(slots=True)
class Established:
    """What one capability establishes for the others on this request, each
    fact declared here once with its type: a capability reads a field,
    never a string key, so reading a fact nobody writes is a type error.
    (Audit facts are the other shared channel: ``extproc.audit.note``,
    declared in ``extproc.audit.record``.)"""

    # The parsed LLM request (``extproc.llm.request.llm_request`` parses it
    # on first use); the body was content-encoded and is decoded now.
    llm_request: LlmRequest | None = None
    llm_body_decoded: bool = False
    # The model as the gateway resolved it: the ``model_access`` pattern
    # that admitted the client's model. Budgets key on it.
    model_key: str | None = None
    # The rbac rule that allowed the request (the audit record names it).
    rbac_rule: str | None = None


def new_decision_id() -> str:
    return os.urandom(8).hex()


class HttpRequest:
    """The request as the processor sees it. ``path`` is canonical (see
    ``extproc.paths``) and has no query: it is what policies authorize on.
    A path too ambiguous to canonicalize sets ``path_refusal``, which the
    pipeline answers with a 400 before any route or capability sees it."""

    __slots__ = ("headers", "host", "method", "path", "path_refusal", "query", "raw_path", "scheme")

    def __init__(self, method: str, raw_path: str, host: str, headers: dict[str, str], scheme: str = "http"):
        self.method = method
        self.raw_path = raw_path
        path, _, self.query = raw_path.partition("?")
        try:
            self.path = canonical_path(path)
            self.path_refusal: AmbiguousPath | None = None
        except AmbiguousPath as refusal:
            self.path, self.path_refusal = printable_path(path), refusal
        self.host = host.lower()
        self.scheme = scheme
        self.headers = headers


class RequestContext:
    __slots__ = (
        "_phase_end",
        "_staged",
        "attributes",
        "decided_ns",
        "decision_id",
        "deny",
        "dry_run",
        "established",
        "filter",
        "identity",
        "policy",
        "query_remove",
        "records",
        "request",
        "request_body",
        "request_body_replaced",
        "request_headers_out",
        "response_chunk",
        "response_chunk_replaced",
        "response_end",
        "response_headers",
        "response_headers_out",
        "response_status",
        "route",
        "started_ns",
        "state",
        "trace",
    )

    def __init__(self, policy: PolicySet, request: HttpRequest, attributes: dict[str, Any] | None = None):
        self.decision_id = new_decision_id()
        self.policy = policy
        self.route: CompiledRoute | None = None
        self.request = request
        self.attributes = attributes or {}
        self.identity: Identity = ANONYMOUS
        self.request_headers_out = HeaderMutation()
        self.response_headers_out = HeaderMutation()
        self.records: list[CapabilityRecord] = []
        # True while a capability in monitor mode runs: it decides and records,
        # but its mutations must not reach the traffic (the pipeline discards
        # its staged edits; this flag is for code that cannot stage).
        self.dry_run = False
        self.response_status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.established = Established()
        # A capability's own per-request scratch (keyed by something unique
        # to the instance: two instances on a route must not share it), and
        # the audit facts under ``extproc.audit.AUDIT_STATE_KEY``. What
        # crosses capabilities goes to ``established``, typed.
        self.state: dict[str, Any] = {}
        # Bodies: the whole request body (Envoy buffers it), and the response
        # one chunk at a time (Envoy streams it) with whether it is the last.
        self.query_remove: list[str] = []  # query parameters the upstream must not see
        self.request_body: bytes | None = None
        self.request_body_replaced = False
        self.response_chunk = b""
        self.response_end = False
        self.response_chunk_replaced = False
        # For the audit step (extproc.audit): the refusal the client got, if
        # any; which Envoy filter asked; when the request arrived and when its
        # request-headers decision was made (perf_counter_ns); and Envoy's W3C
        # trace context ({"traceparent": ..., "tracestate": ...}) when tracing is on.
        self.deny: Deny | None = None
        self.filter = ""
        self.started_ns = time.perf_counter_ns()
        self.decided_ns = 0
        self.trace: dict[str, str] | None = None
        # Edits of what is forwarded, buffered per capability while the
        # pipeline runs one (see ``stage``); None outside a pipeline run.
        self._staged: list[Callable[[], None]] | None = None
        self._phase_end: dict[str, Callable[[], None]] | None = None

    @property
    def revision(self) -> str:
        return self.policy.revision

    # -- staged edits ----------------------------------------------------
    #
    # Every change a capability makes to what is forwarded (headers, query,
    # bodies, the parsed LLM request) is an edit queued here. The pipeline
    # applies a capability's edits only when it runs in enforce mode and
    # returns without denying or failing, and drops them otherwise: monitor
    # mode cannot touch the traffic, by construction, whatever the capability
    # does. Applied edits are visible to the capabilities that run next.
    # Outside a pipeline run (a capability called directly) edits apply at
    # once, unless ``dry_run`` is set.

    def stage(self, apply: Callable[[], None]) -> None:
        if self._staged is not None:
            self._staged.append(apply)
        elif not self.dry_run:
            apply()

    def at_phase_end(self, key: str, finish: Callable[[], None]) -> None:
        """Run ``finish`` once when the phase's edits are all applied (e.g.
        re-serialize a body after any number of edits). Call it from an edit."""
        if self._phase_end is None:
            finish()
        else:
            self._phase_end[key] = finish

    def begin_phase(self) -> None:
        self._phase_end = {}

    def begin_edits(self) -> None:
        self._staged = []

    def commit_edits(self) -> None:
        staged, self._staged = self._staged or [], None
        for apply in staged:
            apply()

    def discard_edits(self) -> None:
        self._staged = None

    def end_phase(self, completed: bool) -> None:
        """``completed``: no capability refused, the edits will be forwarded."""
        pending, self._phase_end, self._staged = self._phase_end or {}, None, None
        if completed:
            for finish in pending.values():
                finish()

    def set_request_header(self, name: str, value: str) -> None:
        def apply() -> None:
            out = self.request_headers_out
            out.set[name] = value
            if name in out.remove:  # an overwrite supersedes an earlier removal
                out.remove.remove(name)

        self.stage(apply)

    def remove_request_header(self, name: str) -> None:
        self.stage(lambda: self.request_headers_out.remove.append(name))

    def set_response_header(self, name: str, value: str) -> None:
        self.stage(lambda: self.response_headers_out.set.__setitem__(name, value))

    def remove_query_param(self, name: str) -> None:
        self.stage(lambda: self.query_remove.append(name))

    def replace_request_body(self, body: bytes) -> None:
        def apply() -> None:
            self.request_body = body
            self.request_body_replaced = True

        self.stage(apply)

    def replace_response_chunk(self, chunk: bytes) -> None:
        def apply() -> None:
            self.response_chunk = chunk
            self.response_chunk_replaced = True

        self.stage(apply)

    def remove_response_header(self, name: str) -> None:
        self.stage(lambda: self.response_headers_out.remove.append(name))
