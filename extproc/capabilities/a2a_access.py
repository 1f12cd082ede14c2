"""``a2a_access``: which agents may call which A2A methods and skills.

On an A2A route (JSON-RPC binding; Envoy's ext_proc with the request body
buffered and the response streamed):

* the caller must be an authenticated *agent* — an ``agent_id`` from the
  ``jwt`` capability or a workload identity (SPIFFE ID) from ``mtls``
  (``require_agent``); optionally its delegation chain is checked;
* each JSON-RPC request's method (1.0 or 0.3 spelling) and, for
  ``SendMessage`` / ``SendStreamingMessage``, the skill the message
  designates (``extproc.a2a.protocol``) are judged against the rules: deny
  rules first, then allow rules, default deny;
* the agent card (``GET …/.well-known/agent-card.json``) and the extended
  card are filtered to the skills the caller may use — by the same decision
  — unless the card is signed (filtering would break the signature);
* anything else on the route (the REST binding, other GETs) is refused: the
  gateway governs what it can read.

Refusals are JSON-RPC errors with the request's id and HTTP 200, as the
a2a-sdk server answers its own errors, so A2A clients raise their typed
errors. Every request yields an audit record in ``ctx.state["audit"]``
(``a2a.calls``: caller, method, skill, SHA-256 of the canonical params,
decision, reason) and the task id/state seen in the response.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from extproc.a2a.protocol import CARD_METHODS, SKILL_METHODS, SkillError, canonical, designated_skill, task_of
from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import CapabilityRecord, Deny, Identity, RequestContext
from extproc.globs import compile_globs
from extproc.headers import content_encoding
from extproc.identity.responses import unauthenticated
from extproc.mcp import jsonrpc
from extproc.mcp.callers import CallerMatcher, Who, caller, caller_label
from extproc.mcp.delegation import DelegationConfig, DelegationPolicy
from extproc.mcp.jsonrpc import INVALID_PARAMS, INVALID_REQUEST, POLICY_DENIED, Invalid, Message, error_object, id_key
from extproc.mcp.policy import Decision
from extproc.mcp.responses import feed_response, open_response
from extproc.runtime import DEFAULT_RUNTIME

log = logging.getLogger("extproc.a2a")


def _methods(value: list[str]) -> list[str]:
    out = []
    for method in value:
        name = canonical(method)
        if name is None:
            raise ValueError(f"unknown A2A method {method!r}")
        out.append(name)
    return out


class A2aRule(CapabilityConfig):
    name: str
    effect: Literal["allow", "deny"] = "allow"
    who: Who = Field(default_factory=Who)
    methods: list[str] = Field(default_factory=list,
                               description="A2A methods (1.0 or 0.3 names); empty: every method.")
    skills: list[str] = Field(default_factory=list,
                              description="Skill id globs for SendMessage/SendStreamingMessage; [] grants no skill.")

    _methods = field_validator("methods")(_methods)


class A2aAccessConfig(CapabilityConfig):
    rules: list[A2aRule] = Field(min_length=1)
    skill_key: str = Field("skill", min_length=1, description="Metadata key that designates the target skill.")
    default_skill: str | None = Field(
        None, description="Skill of a message that names none; null: such messages are refused.")
    require_agent: bool = Field(True, description="The caller must have an agent_id (jwt) or a peer principal (mtls).")
    card_paths: list[str] = Field(default_factory=lambda: ["*/.well-known/agent-card.json", "*/.well-known/agent.json"],
                                  description="Path globs of the agent card (GET); other GETs are refused.")
    filter_card: bool = Field(True, description="Show each caller only the skills it may use.")
    batches: bool = Field(False, description="Accept JSON-RPC batches (the a2a-sdk server does not).")
    max_batch: int = Field(16, ge=1, le=1000)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_response_bytes: int = Field(8 << 20, ge=1024)
    delegation: DelegationConfig | None = None

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[A2aRule]) -> list[A2aRule]:
        names = [r.name for r in value]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return value


class _Rule:
    __slots__ = ("name", "allow", "who", "methods", "skills")

    def __init__(self, rule: A2aRule):
        self.name, self.allow = rule.name, rule.effect == "allow"
        self.who = CallerMatcher(rule.who)
        self.methods = frozenset(rule.methods)
        self.skills = compile_globs(rule.skills)

    def matches(self, identity: Identity, method: str, skill: str | None) -> bool:
        if self.methods and method not in self.methods:
            return False
        if method in SKILL_METHODS and (self.skills is None or skill is None or not self.skills.fullmatch(skill)):
            return False
        return self.who.matches(identity)


@dataclass(slots=True)
class _Pending:
    id: Any
    method: str
    record: dict | None = None


@dataclass(slots=True)
class _Exchange:
    pending: dict = field(default_factory=dict)
    card: bool = False
    batch: bool = False
    reasons: list[str] = field(default_factory=list)
    body: Any = None
    fed: bool = False  # the response body reached us (Envoy's route sends it)


@register
class A2aAccess(Capability):
    name = "a2a_access"
    priority = 850
    Config = A2aAccessConfig

    def __init__(self, config: A2aAccessConfig, mode, runtime=DEFAULT_RUNTIME):
        super().__init__(config, mode, runtime)
        compiled = [_Rule(r) for r in config.rules]
        self._deny = [r for r in compiled if not r.allow]
        self._allow = [r for r in compiled if r.allow]
        self._card_paths = compile_globs(config.card_paths)
        self._delegation = DelegationPolicy(config.delegation) if config.delegation else None

    def decide(self, identity: Identity, method: str, skill: str | None = None) -> Decision:
        """May ``identity`` call ``method`` (1.0 name), for ``skill`` where the
        method carries one? Used for requests and for filtering cards."""
        for rule in self._deny:
            if rule.matches(identity, method, skill):
                return Decision(False, f"deny rule {rule.name}", rule.name)
        for rule in self._allow:
            if rule.matches(identity, method, skill):
                return Decision(True, f"allow rule {rule.name}", rule.name)
        what = f"{method} skill {skill}" if method in SKILL_METHODS else method
        return Decision(False, f"no allow rule for {what}")

    # -- request --------------------------------------------------------------

    def _exchange(self, ctx: RequestContext) -> _Exchange:
        exchange = ctx.state.get("a2a")
        if exchange is None:
            exchange = ctx.state["a2a"] = _Exchange()
        return exchange

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        identity = ctx.identity
        who = caller_label(identity)
        if self.config.require_agent:
            if not identity.authenticated:
                return unauthenticated("A2A caller not authenticated", None)
            if not (identity.agent_id or identity.principal):
                return Deny(403, "forbidden", f"{who}: not an agent (no agent_id, no peer principal)")
        if self._delegation is not None:
            violation = self._delegation.violation(identity)
            if violation is not None:
                return Deny(403, "forbidden", f"{who}: {violation}")
        method = ctx.request.method
        if method == "GET" and self._card_paths is not None and self._card_paths.fullmatch(ctx.request.path):
            self._exchange(ctx).card = True
        elif method != "POST":
            return Deny(403, "forbidden", f"{method} {ctx.request.path}: only JSON-RPC POSTs and the agent card")
        encoding = content_encoding(ctx.request.headers)
        if encoding:
            return Deny(415, "unsupported_media_type", f"content-encoding {encoding} cannot be inspected")
        ctx.remove_request_header("accept-encoding")
        return None

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        if ctx.request.method != "POST":
            return None
        exchange = self._exchange(ctx)
        body = ctx.request_body or b""
        accept = ctx.request.headers.get("accept")
        if len(body) > self.config.max_body_bytes:
            return jsonrpc.refusal(error_object(None, INVALID_REQUEST, "request too large"), status=413,
                                   code="body_too_large", reason=f"A2A body of {len(body)} bytes", accept=accept)
        try:
            envelope = jsonrpc.parse(body, max_batch=self.config.max_batch, batches=self.config.batches)
        except jsonrpc.JsonRpcError as exc:
            jsonrpc.audit_of(ctx)["a2a.error"] = exc.code
            return jsonrpc.refusal(error_object(exc.id, exc.code, exc.message), status=200, code="invalid_request",
                                   reason=f"malformed JSON-RPC ({exc.code}): {exc.message}", accept=accept)
        exchange.batch = envelope.batch
        errors: dict[int, dict] = {}
        for item in envelope.items:
            if isinstance(item, Invalid):
                errors[item.index] = error_object(item.id, item.code, item.message)
                exchange.reasons.append(f"message {item.index}: {item.message}")
                continue
            error = self._authorize(ctx, exchange, item)
            if error is not None:
                errors[item.index] = error
        if not errors:
            return None
        if not envelope.batch:
            payload: dict | list = errors[0]
        else:
            payload = [errors.get(item.index) or error_object(
                getattr(item, "id", None), POLICY_DENIED, "not executed: another message in this batch was refused",
                {"decision_id": ctx.decision_id}) for item in envelope.items]
        invalid = any(e["error"]["code"] != POLICY_DENIED for e in errors.values())
        return jsonrpc.refusal(payload, status=200, code="invalid_request" if invalid else "forbidden",
                               reason="; ".join(exchange.reasons) or "refused", accept=accept)

    def _authorize(self, ctx: RequestContext, exchange: _Exchange, message: Message) -> dict | None:
        if message.kind != "request":
            exchange.reasons.append("a JSON-RPC response or notification sent to an agent")
            return error_object(message.id, INVALID_REQUEST, "A2A accepts requests only")
        method = canonical(message.method)
        params = message.params
        if method is None:
            exchange.reasons.append(f"unknown A2A method {message.method}")
            return error_object(message.id, POLICY_DENIED, f"method {message.method} is not allowed by the gateway",
                                {"decision_id": ctx.decision_id})
        if not isinstance(params, dict):
            exchange.reasons.append(f"{message.method}: params not an object")
            return error_object(message.id, INVALID_PARAMS, "params must be an object")
        skill = None
        if method in SKILL_METHODS:
            try:
                skill = designated_skill(params, self.config.skill_key) or self.config.default_skill
            except SkillError as exc:
                exchange.reasons.append(f"{message.method}: {exc}")
                return error_object(message.id, INVALID_PARAMS, str(exc))
        if method in SKILL_METHODS and skill is None:
            decision = Decision(False, f"message designates no skill (metadata.{self.config.skill_key})")
        else:
            decision = self.decide(ctx.identity, method, skill)
        digest = jsonrpc.sha256_json(params)
        task_id = params.get("id") if isinstance(params.get("id"), str) else None
        if task_id is None and isinstance(params.get("message"), dict):
            task_id = params["message"].get("taskId") if isinstance(params["message"].get("taskId"), str) else None
        record = {
            "id": message.id, "method": message.method, "operation": method, "skill": skill, "task_id": task_id,
            "arguments_sha256": digest, "decision": "allow" if decision else "deny", "reason": decision.reason,
            "rule": decision.rule, "caller": caller(ctx.identity),
        }
        audit = jsonrpc.audit_of(ctx)
        audit.setdefault("a2a.calls", []).append(record)
        if "a2a.method" not in audit:  # flat facts for the audit exporter; every request is in a2a.calls
            audit.update({"a2a.method": method, "a2a.arguments_sha256": digest, "a2a.decision": record["decision"]})
            if skill:
                audit["a2a.skill"] = skill
            if task_id:
                audit["a2a.task_id"] = task_id
        exchange.pending[id_key(message.id)] = _Pending(message.id, method, record)
        summary = (f"{method}{f' skill {skill}' if skill else ''} by {caller_label(ctx.identity)}: "
                   f"{decision.reason} (params sha256 {digest})")
        if decision:
            ctx.records.append(CapabilityRecord(self.name, self.mode, "allow", summary))
            return None
        exchange.reasons.append(summary)
        text = (f"skill {skill!r} is not available to this agent" if method in SKILL_METHODS and skill
                else "a skill must be designated in message metadata" if method in SKILL_METHODS
                else f"method {message.method} is not allowed for this agent")
        return error_object(message.id, POLICY_DENIED, text, {"decision_id": ctx.decision_id})

    # -- response ---------------------------------------------------------------

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        exchange = self._exchange(ctx)
        # Any status: a client reads a JSON-RPC body under a 2xx other than 200 too.
        if exchange.card:
            if not self.config.filter_card:
                return None
            transform = lambda card: self._filter_card(ctx, card)  # noqa: E731
            # The card now depends on who asked: no shared caching, and no
            # validator of the unfiltered card.
            ctx.set_response_header("cache-control", "private")
            ctx.remove_response_header("etag")
        else:
            transform = lambda m: self._transform(ctx, exchange, m)  # noqa: E731
        exchange.body, deny = open_response(ctx, transform, lambda: self._unreadable(ctx, exchange),
                                            self.config.max_response_bytes, "A2A")
        return deny

    async def on_response_body(self, ctx: RequestContext) -> Deny | None:
        feed_response(ctx, ctx.state.get("a2a"))
        return None

    def _transform(self, ctx: RequestContext, exchange: _Exchange, message: dict) -> dict | None:
        if "id" not in message or not jsonrpc.valid_id(message["id"]):
            return None
        pending = exchange.pending.get(id_key(message["id"]))
        if pending is None:
            return None
        result = message.get("result")
        if pending.record is not None:
            task_id, state = task_of(result)
            audit = jsonrpc.audit_of(ctx)
            if task_id:
                pending.record["task_id"] = task_id
                audit.setdefault("a2a.task_id", task_id)
            if state:
                pending.record["task_state"] = state
                audit["a2a.task_state"] = state
            if "error" in message:
                pending.record["outcome"] = "rpc_error"
        if pending.method in CARD_METHODS and isinstance(result, dict) and self.config.filter_card:
            filtered = self._filter_card(ctx, result)
            if filtered is not None:
                return {**message, "result": filtered}
        return None

    def _filter_card(self, ctx: RequestContext, card: dict) -> dict | None:
        skills = card.get("skills")
        if not isinstance(skills, list):
            return None
        audit = jsonrpc.audit_of(ctx)
        if card.get("signatures"):
            audit["a2a.card"] = "signed: not filtered"
            return None
        kept = [s for s in skills if isinstance(s, dict) and isinstance(s.get("id"), str)
                and (self.decide(ctx.identity, "SendMessage", s["id"])
                     or self.decide(ctx.identity, "SendStreamingMessage", s["id"]))]
        audit["a2a.card"] = {"shown": len(kept), "hidden": len(skills) - len(kept)}
        if len(kept) == len(skills):
            return None
        return {**card, "skills": kept}

    def on_log(self, ctx: RequestContext) -> None:
        exchange = ctx.state.get("a2a")
        if exchange is not None and exchange.body is not None and not exchange.fed and exchange.pending:
            # Responses awaited but no body ever came through: the Envoy route
            # does not send response bodies, so nothing could be filtered.
            log.error("A2A route %s: response body never reached the processor; set "
                      "response_body_mode: STREAMED on its Envoy route", ctx.route.name if ctx.route else "?",
                      extra={"decision_id": ctx.decision_id})

    def _unreadable(self, ctx: RequestContext, exchange: _Exchange) -> bytes | None:
        jsonrpc.audit_of(ctx)["a2a.unreadable_response"] = True
        log.warning("A2A response withheld: not strictly valid JSON", extra={"decision_id": ctx.decision_id})
        if exchange.card:
            return jsonrpc.dumps({"error": "agent card withheld by the gateway: invalid JSON"})
        waiting = list(exchange.pending.values())
        if not waiting:
            return None
        errors = [error_object(p.id, jsonrpc.INTERNAL_ERROR, "the agent's response was withheld by the gateway")
                  for p in waiting]
        return jsonrpc.dumps(errors if exchange.batch or len(errors) > 1 else errors[0])
