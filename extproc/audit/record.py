"""One request's audit record, built from its finished ``RequestContext``.

Everything that leaves the process (span attributes, decision log
``result.attributes``, metric labels) comes from here, and everything here is
an allow-list: named identity fields, the normalized path (no query), the
per-capability decisions, and the audit facts capabilities published under
the keys of ``AUDIT_KEYS``. Never raw headers, tokens, claims, bodies or
prompts. Free text that could carry a client's data (decision reasons, string
facts) is bounded and scrubbed of anything that looks like a credential or
an e-mail address as a second line of defence.

Audit facts (``ctx.state["audit"]``, see ``extproc.audit.note``):

==================== ======= =============================================
key                  type    meaning
==================== ======= =============================================
llm.model            str     model the client asked for
llm.response_model   str     model that answered
llm.api              str     API shape, e.g. ``openai.chat``
llm.stream           bool    streaming response
llm.input_tokens     int     prompt tokens (from the model's usage)
llm.output_tokens    int     completion tokens
llm.total_tokens     int     both
tool.name            str     MCP/agent tool called
tool.server          str     MCP server the tool belongs to
tool.decision        str     the tool call's decision
tool.arguments_sha256 str    fingerprint of the canonical arguments (never the values)
mcp.method(s)        str/[str] JSON-RPC method(s) of the MCP request
mcp.session_id, mcp.protocol_version  str
mcp.error            int     JSON-RPC error code of a malformed request
mcp.unreadable_response bool
a2a.method, a2a.skill, a2a.decision, a2a.arguments_sha256, a2a.task_id,
a2a.task_state       str     the A2A call, as for tools
a2a.error            int
a2a.card             {str: int} or str   agent card filtering (``shown``/``hidden``)
a2a.listed           {str: int}  ListTasks filtered to the caller (``shown``/``hidden``)
a2a.withheld         str     why an answer was withheld (another owner's task)
a2a.methods          [str]   JSON-RPC method(s) of the A2A request
mcp.listed           {str: int}  list results filtered to the caller (``shown``/``hidden``)
mcp.pin_drift        [str]   tools whose definition no longer matches its pin
mcp.scan             [str]   ``where:tool`` flagged by the injection scan
a2a.unreadable_response bool
quota.limit          str     name of the quota limit that decided
quota.cost           int     units this request consumed
quota.remaining      int     units left in the window
guard.score          float   prompt guard's worst score
guard.rules          [str]   prompt guard rules that matched
guard.action         str     what a guard did: ``block``, ``redact``, ...
pii.<entity>         int     how many entities of a type were found
                             (``pii.email: 2``), never the entities
==================== ======= =============================================

Values of another type are dropped, strings are cut to 128 characters, lists
to 16 items. One fact comes from ``ctx.established`` (typed, shared
between capabilities): the rbac rule that allowed the request
(``extproc.rbac.rule``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from extproc.audit import AUDIT_STATE_KEY
from extproc.context import CapabilityRecord, Mode, Phase, RequestContext

MAX_TEXT = 128
MAX_REASON = 256
MAX_LIST = 16

# audit fact key -> (exported attribute name, type)
AUDIT_KEYS: dict[str, tuple[str, type]] = {
    "llm.model": ("gen_ai.request.model", str),
    "llm.response_model": ("gen_ai.response.model", str),
    "llm.api": ("extproc.llm.api", str),
    "llm.stream": ("extproc.llm.stream", bool),
    "llm.input_tokens": ("gen_ai.usage.input_tokens", int),
    "llm.output_tokens": ("gen_ai.usage.output_tokens", int),
    "llm.total_tokens": ("extproc.llm.total_tokens", int),
    "tool.name": ("gen_ai.tool.name", str),
    "tool.server": ("extproc.tool.server", str),
    "tool.decision": ("extproc.tool.decision", str),
    "tool.arguments_sha256": ("extproc.tool.arguments_sha256", str),
    "mcp.method": ("extproc.mcp.method", str),
    "mcp.methods": ("extproc.mcp.methods", list),
    "mcp.session_id": ("extproc.mcp.session_id", str),
    "mcp.protocol_version": ("extproc.mcp.protocol_version", str),
    "mcp.error": ("extproc.mcp.error", int),
    "mcp.unreadable_response": ("extproc.mcp.unreadable_response", bool),
    "a2a.method": ("extproc.a2a.method", str),
    "a2a.skill": ("extproc.a2a.skill", str),
    "a2a.decision": ("extproc.a2a.decision", str),
    "a2a.arguments_sha256": ("extproc.a2a.arguments_sha256", str),
    "a2a.task_id": ("extproc.a2a.task_id", str),
    "a2a.task_state": ("extproc.a2a.task_state", str),
    "a2a.error": ("extproc.a2a.error", int),
    "a2a.card": ("extproc.a2a.card", dict),
    "a2a.unreadable_response": ("extproc.a2a.unreadable_response", bool),
    "a2a.methods": ("extproc.a2a.methods", list),
    "a2a.listed": ("extproc.a2a.listed", dict),
    "a2a.withheld": ("extproc.a2a.withheld", str),
    "mcp.listed": ("extproc.mcp.listed", dict),
    "mcp.pin_drift": ("extproc.mcp.pin_drift", list),
    "mcp.scan": ("extproc.mcp.scan", list),
    "quota.limit": ("extproc.quota.limit", str),
    "quota.cost": ("extproc.quota.cost", int),
    "quota.remaining": ("extproc.quota.remaining", int),
    "guard.score": ("extproc.guard.score", float),
    "guard.rules": ("extproc.guard.rules", list),
    "guard.action": ("extproc.guard.action", str),
}
# Facts capabilities keep for their own audit step (per-message records of a
# JSON-RPC batch); declared so that writing them is no mistake, never exported.
INTERNAL_KEYS = frozenset({"mcp.calls", "a2a.calls"})
# audit fact key prefix -> (attribute prefix, type); the suffix must be a plain name
AUDIT_PREFIXES: dict[str, tuple[str, type]] = {
    "pii.": ("extproc.pii.", int),
}
_SUFFIX = re.compile(r"^[a-z0-9_]{1,32}$")

# Second line of defence for free text: credentials and e-mail addresses.
_SCRUB = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*"  # JWT / JWS
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"  # Authorization values
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"  # e-mail addresses
    # long random strings (API keys, session ids): mixed case and digits,
    # which keeps long lower-case rule names and hex digests readable
    r"|(?=[A-Za-z0-9_-]*[0-9])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])[A-Za-z0-9_-]{32,}"
)
REDACTED = "[redacted]"

_PHASE_ORDER = (Phase.REQUEST_HEADERS, Phase.REQUEST_BODY, Phase.RESPONSE_HEADERS, Phase.RESPONSE_BODY)
_SEVERITY = {"allow": 0, "deny": 1, "error": 2}


def scrub(text: str, limit: int = MAX_TEXT) -> str:
    text = _SCRUB.sub(REDACTED, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class CapabilityOutcome:
    capability: str
    mode: str
    decision: str  # allow | deny | error
    reason: str = ""
    code: str = ""

    def as_dict(self) -> dict[str, str]:
        out = {"capability": self.capability, "mode": self.mode, "decision": self.decision}
        if self.reason:
            out["reason"] = self.reason
        if self.code:
            out["code"] = self.code
        return out


@dataclass(slots=True)
class AuditRecord:
    decision_id: str
    revision: str
    filter: str
    route: str | None
    decision: str  # allow | deny | error
    status: int | None  # the refusal's HTTP status; None when allowed
    code: str | None  # the refusal's stable code
    reason: str | None  # the refusal's detailed (scrubbed) reason
    upstream_status: int | None
    capabilities: list[CapabilityOutcome]
    identity: dict[str, Any]  # allow-listed identity fields, only those set
    facts: dict[str, Any]  # exported attribute name -> value (allow-listed)
    decision_ns: int  # request arrival to request-headers decision; 0 if unknown


def phases_run(ctx: RequestContext) -> list[Phase]:
    """The phases whose capabilities ran, read from what the services left
    in ``ctx`` (each phase's input is stored before its capabilities run)."""
    if ctx.route is None:
        return []
    phases = [Phase.REQUEST_HEADERS]
    if ctx.request_body is not None:
        phases.append(Phase.REQUEST_BODY)
    if ctx.response_status is not None or ctx.response_headers:
        phases.append(Phase.RESPONSE_HEADERS)
    if ctx.response_end or ctx.response_chunk:
        phases.append(Phase.RESPONSE_BODY)
    return phases


def capability_outcomes(ctx: RequestContext) -> list[CapabilityOutcome]:
    """Every capability that decided something for this request, in the order
    they ran: ``allow`` unless one of ``ctx.records`` (which holds only
    denials and errors) says otherwise. Capabilities that an enforced denial
    stopped before they ran are left out: they decided nothing."""
    records = ctx.records
    route = ctx.route
    outcomes: dict[int, CapabilityOutcome] = {}
    order: list[CapabilityOutcome] = []
    i = 0
    stopped = False
    if route is not None:
        handlers = route.handlers
        for phase in phases_run(ctx):
            for cap, _handler in handlers.get(phase, ()):
                outcome = outcomes.get(id(cap))
                if outcome is None:
                    outcome = outcomes[id(cap)] = CapabilityOutcome(cap.name, cap.mode.value, "allow")
                    order.append(outcome)
                if i < len(records) and records[i].capability == cap.name and records[i].mode is cap.mode:
                    _merge(outcome, records[i])
                    i += 1
                    if cap.mode is Mode.ENFORCE:
                        stopped = True
                        break
            if stopped:
                break
    # Records the walk did not place: the router's, or repeats (a monitor
    # capability denying several response chunks).
    for record in records[i:]:
        for outcome in order:
            if outcome.capability == record.capability and outcome.mode == record.mode.value:
                _merge(outcome, record)
                break
        else:
            outcome = CapabilityOutcome(record.capability, record.mode.value, "allow")
            _merge(outcome, record)
            order.append(outcome)
    return order


def _merge(outcome: CapabilityOutcome, record: CapabilityRecord) -> None:
    if _SEVERITY.get(record.decision, 2) >= _SEVERITY[outcome.decision]:
        outcome.decision = record.decision if record.decision in _SEVERITY else "error"
        outcome.reason = scrub(record.reason or "", MAX_REASON)
        outcome.code = record.code or ("internal_error" if record.decision == "error" else "")


def identity_fields(ctx: RequestContext) -> dict[str, Any]:
    ident = ctx.identity
    out: dict[str, Any] = {}
    for name in ("subject", "issuer", "tenant", "principal", "agent_id", "api_key_id"):
        value = getattr(ident, name, None)
        if isinstance(value, str) and value:
            out[name] = value[:MAX_REASON]
    for name in ("roles", "scopes", "methods"):
        value = getattr(ident, name, None)
        if value:
            out[name] = sorted(str(v) for v in value)[: MAX_LIST * 2]
    if ident.delegation:
        out["delegation"] = [str(v) for v in ident.delegation][:MAX_LIST]
    principal = ctx.attributes.get("source.principal") if ctx.attributes else None
    if "principal" not in out and isinstance(principal, str) and principal:
        out["principal"] = principal[:MAX_REASON]
    return out


def _typed(value: Any, kind: type) -> Any:
    if kind is bool:
        return value if isinstance(value, bool) else None
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        return None
    if kind is str:
        return scrub(value) if isinstance(value, str) and value else None
    if kind is list:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return [scrub(v) for v in value[:MAX_LIST]]
        return None
    if kind is dict:  # a few named counts, or a short word
        if isinstance(value, str):
            return scrub(value) if value else None
        if (
            isinstance(value, dict)
            and value
            and len(value) <= MAX_LIST
            and all(
                isinstance(k, str) and _SUFFIX.match(k) and isinstance(v, int) and not isinstance(v, bool)
                for k, v in value.items()
            )
        ):
            return dict(value)
        return None
    return None


def declared(key: str) -> bool:
    """Whether ``key`` is a fact this module knows (see ``extproc.audit.UndeclaredAuditFact``)."""
    if key in AUDIT_KEYS or key in INTERNAL_KEYS:
        return True
    return any(key.startswith(prefix) and _SUFFIX.match(key[len(prefix) :]) for prefix in AUDIT_PREFIXES)


def facts(ctx: RequestContext) -> dict[str, Any]:
    """The allow-listed facts, by exported attribute name."""
    state = ctx.state
    out: dict[str, Any] = {}

    def put(key: str, value: Any) -> None:
        name, kind = AUDIT_KEYS[key]
        value = _typed(value, kind)
        if isinstance(value, dict):  # counts: one attribute each
            for sub, count in value.items():
                out[f"{name}.{sub}"] = count
        elif value is not None:
            out[name] = value

    rule = ctx.established.rbac_rule
    if rule:
        out["extproc.rbac.rule"] = scrub(rule)

    # The convention: ctx.state["audit"].
    published = state.get(AUDIT_STATE_KEY)
    if isinstance(published, dict):
        for key, value in published.items():
            if not isinstance(key, str):
                continue
            if key in AUDIT_KEYS:
                put(key, value)
                continue
            for prefix, (attr_prefix, kind) in AUDIT_PREFIXES.items():
                if key.startswith(prefix) and _SUFFIX.match(key[len(prefix) :]):
                    typed = _typed(value, kind)
                    if typed is not None:
                        out[attr_prefix + key[len(prefix) :]] = typed
                    break
    return out


def build(ctx: RequestContext) -> AuditRecord:
    deny = ctx.deny
    if deny is None:
        decision, status, code, reason = "allow", None, None, None
    else:
        decision = "error" if deny.code == "internal_error" else "deny"
        status, code, reason = deny.status, deny.code, scrub(deny.reason or "", MAX_REASON)
    route = ctx.route
    return AuditRecord(
        decision_id=ctx.decision_id,
        revision=ctx.revision,
        filter=ctx.filter or "unknown",
        route=route.name if route is not None else None,
        decision=decision,
        status=status,
        code=code,
        reason=reason,
        upstream_status=ctx.response_status,
        capabilities=capability_outcomes(ctx),
        identity=identity_fields(ctx),
        facts=facts(ctx),
        decision_ns=(ctx.decided_ns - ctx.started_ns) if ctx.decided_ns else 0,
    )
