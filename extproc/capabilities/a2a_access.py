"""``a2a_access``: which agents may call which A2A methods and skills.

On an A2A route (JSON-RPC binding; Envoy's ext_proc with the request body
buffered and the response streamed):

* the caller must be an authenticated *agent* — an ``agent_id`` from the
  ``jwt`` capability or a workload identity (SPIFFE ID) from ``mtls``
  (``require_agent``); optionally its delegation chain is checked;
* each JSON-RPC request's method (1.0 or 0.3 spelling) and, for
  ``SendMessage`` / ``SendStreamingMessage``, the skill the message
  designates (``extproc.a2a.protocol``) are judged against the rules: deny
  rules first, then allow rules, default deny. Every rule names its methods:
  a method no rule lists is refused;
* tasks belong to the caller whose message created them
  (``extproc.a2a.ownership``): a request naming a task (get, cancel,
  resubscribe, push-notification configs, a message continuing or
  referencing it) must name the caller's own, a message may not join
  another's context, ListTasks results show the caller's tasks only, and
  any other response showing another's task is withheld;
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

from pydantic import Field, ValidationInfo, field_validator

from extproc.a2a.ownership import (
    TASK_METHODS,
    OwnerStore,
    TaskParamsError,
    message_references,
    named_task,
    owner_of,
    tasks_shown,
)
from extproc.a2a.protocol import CARD_METHODS, SKILL_METHODS, SkillError, canonical, designated_skill, task_of
from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Identity, Mode, RequestContext
from extproc.globs import compile_globs
from extproc.headers import content_encoding
from extproc.identity.caller import caller, caller_label
from extproc.identity.delegation import DelegationConfig, DelegationPolicy
from extproc.identity.responses import unauthenticated
from extproc.identity.who import Who, WhoMatcher
from extproc.jsonrpc import exchange as rpc
from extproc.jsonrpc import wire as jsonrpc
from extproc.jsonrpc.decision import Decision
from extproc.jsonrpc.exchange import Exchange
from extproc.jsonrpc.responses import Transform
from extproc.jsonrpc.wire import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, POLICY_DENIED, Message, error_object
from extproc.quota import backend_for
from extproc.runtime import DEFAULT_RUNTIME, Runtime

log = logging.getLogger("extproc.a2a")

LIST_METHOD = "ListTasks"


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
    # Required: a rule that named no method used to grant every method (the
    # task methods included), so a skill grant silently granted far more.
    methods: list[str] = Field(min_length=1, description="A2A methods (1.0 or 0.3 names) the rule applies to.")
    skills: list[str] = Field(
        default_factory=list,
        validate_default=True,
        description="Skill id globs; required with SendMessage/SendStreamingMessage.",
    )

    _methods = field_validator("methods")(_methods)

    @field_validator("skills")
    @classmethod
    def _skills_where_they_apply(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Either way round, part of the rule would silently never apply.
        sends = [m for m in info.data.get("methods") or () if m in SKILL_METHODS]
        if sends and not value:
            raise ValueError(
                f"the rule lists {' and '.join(sends)} but no skills, so it matches no message; "
                'list skill globs ("*": every skill)'
            )
        if value and not sends:
            raise ValueError("skills apply to SendMessage/SendStreamingMessage only, and the rule lists neither")
        return value


class A2aAccessConfig(CapabilityConfig):
    rules: list[A2aRule] = Field(min_length=1)
    skill_key: str = Field("skill", min_length=1, description="Metadata key that designates the target skill.")
    default_skill: str | None = Field(
        None, description="Skill of a message that names none; null: such messages are refused."
    )
    require_agent: bool = Field(True, description="The caller must have an agent_id (jwt) or a peer principal (mtls).")
    card_paths: list[str] = Field(
        default_factory=lambda: ["*/.well-known/agent-card.json", "*/.well-known/agent.json"],
        description="Path globs of the agent card (GET); other GETs are refused.",
    )
    filter_card: bool = Field(True, description="Show each caller only the skills it may use.")
    batches: bool = Field(False, description="Accept JSON-RPC batches (the a2a-sdk server does not).")
    max_batch: int = Field(16, ge=1, le=1000)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_response_bytes: int = Field(8 << 20, ge=1024)
    delegation: DelegationConfig | None = None
    task_ttl: float = Field(7 * 86400, ge=60, description="Seconds the gateway remembers who owns a task.")
    owner_namespace: str | None = Field(
        None, min_length=1, description="Task ownership namespace (one per agent); default: the route name."
    )

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: list[A2aRule]) -> list[A2aRule]:
        names = [r.name for r in value]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return value


class _Rule:
    __slots__ = ("allow", "methods", "name", "skills", "who")

    def __init__(self, rule: A2aRule):
        self.name, self.allow = rule.name, rule.effect == "allow"
        self.who = WhoMatcher(rule.who)
        self.methods = frozenset(rule.methods)
        self.skills = compile_globs(rule.skills)

    def matches(self, identity: Identity, method: str, skill: str | None) -> bool:
        if method not in self.methods:
            return False
        if method in SKILL_METHODS and (self.skills is None or skill is None or not self.skills.fullmatch(skill)):
            return False
        return self.who.matches(identity)


A2A = rpc.Protocol("A2A", "a2a", invalid_status=200, decision_keys=("a2a.decision",))


@dataclass(slots=True)
class _A2aExchange(Exchange):
    card: bool = False
    owner: str | None = None
    owned: set[Any] = field(default_factory=set)  # task ids known to be the caller's (saves lookups per event)


@register
class A2aAccess(Capability[A2aAccessConfig]):
    name = "a2a_access"
    priority = 850
    Config = A2aAccessConfig

    def __init__(self, config: A2aAccessConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        compiled = [_Rule(r) for r in config.rules]
        self._deny = [r for r in compiled if not r.allow]
        self._allow = [r for r in compiled if r.allow]
        self._card_paths = compile_globs(config.card_paths)
        self._delegation = DelegationPolicy(config.delegation) if config.delegation else None
        self._backend = backend_for(runtime)
        self._stores: dict[str, OwnerStore] = {}

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

    def _exchange(self, ctx: RequestContext) -> _A2aExchange:
        return rpc.exchange_of(ctx, A2A, self, _A2aExchange)

    def _store(self, ctx: RequestContext) -> OwnerStore:
        namespace = self.config.owner_namespace or (ctx.route.name if ctx.route else "-")
        store = self._stores.get(namespace)
        if store is None:
            store = self._stores[namespace] = OwnerStore(self._backend, namespace, self.config.task_ttl)
        return store

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
        return await rpc.judge_request(
            self,
            ctx,
            self._exchange(ctx),
            A2A,
            self._authorize,
            max_body_bytes=self.config.max_body_bytes,
            max_batch=self.config.max_batch,
            batches=self.config.batches,
        )

    async def _authorize(self, ctx: RequestContext, exchange: _A2aExchange, message: Message) -> dict[str, Any] | None:
        spelled = message.method
        if message.kind != "request" or spelled is None:
            exchange.reasons.append("a JSON-RPC response or notification sent to an agent")
            return error_object(message.id, INVALID_REQUEST, "A2A accepts requests only")
        method = canonical(spelled)
        params = message.params
        if method is None:
            exchange.reasons.append(f"unknown A2A method {message.method}")
            return error_object(
                message.id,
                POLICY_DENIED,
                f"method {message.method} is not allowed by the gateway",
                {"decision_id": ctx.decision_id},
            )
        if not isinstance(params, dict):
            exchange.reasons.append(f"{message.method}: params not an object")
            return error_object(message.id, INVALID_PARAMS, "params must be an object")
        # Everything read from params is read (and its type checked) before
        # the decision; nothing after the decision can fail on odd input.
        skill: str | None = None
        task_id: str | None = None
        refs: list[str] = []
        context_id: str | None = None
        try:
            if method in SKILL_METHODS:
                skill = designated_skill(params, self.config.skill_key) or self.config.default_skill
                refs, context_id = message_references(params)
                task_id = refs[0] if refs else None
            elif method in TASK_METHODS:
                task_id = named_task(spelled, method, params)
                refs = [task_id]
        except (SkillError, TaskParamsError) as exc:
            exchange.reasons.append(f"{message.method}: {exc}")
            return error_object(message.id, INVALID_PARAMS, str(exc))
        if method in SKILL_METHODS and skill is None:
            decision = Decision(False, f"message designates no skill (metadata.{self.config.skill_key})")
        else:
            decision = self.decide(ctx.identity, method, skill)
        ownership, failed = None, False
        if decision and (refs or context_id):
            ownership, failed = await self._owns(ctx, exchange, refs, context_id)
            if ownership is not None:
                decision = Decision(False, ownership, decision.rule)
        digest = jsonrpc.sha256_json(params)
        record = {
            "id": message.id,
            "method": message.method,
            "operation": method,
            "skill": skill,
            "task_id": task_id,
            "arguments_sha256": digest,
            "decision": "allow" if decision else "deny",
            "reason": decision.reason,
            "rule": decision.rule,
            "caller": caller(ctx.identity),
        }
        rpc.record_call(ctx, exchange, A2A, record)
        audit = jsonrpc.audit_of(ctx)
        if "a2a.method" not in audit:  # flat facts for the audit exporter; every request is in a2a.calls
            audit.update({"a2a.method": method, "a2a.arguments_sha256": digest, "a2a.decision": record["decision"]})
            if skill:
                audit["a2a.skill"] = skill
            if task_id:
                audit["a2a.task_id"] = task_id
        exchange.expect(message, method, record)
        summary = (
            f"{method}{f' skill {skill}' if skill else ''} by {caller_label(ctx.identity)}: "
            f"{decision.reason} (params sha256 {digest})"
        )
        if decision:
            exchange.allowed.append(summary)
            return None
        exchange.reasons.append(summary)
        if failed:
            return error_object(
                message.id,
                INTERNAL_ERROR,
                "task ownership could not be checked; try again",
                {"decision_id": ctx.decision_id},
            )
        text = (
            ownership
            if ownership is not None
            else f"skill {skill!r} is not available to this agent"
            if method in SKILL_METHODS and skill
            else "a skill must be designated in message metadata"
            if method in SKILL_METHODS
            else f"method {message.method} is not allowed for this agent"
        )
        return error_object(message.id, POLICY_DENIED, text, {"decision_id": ctx.decision_id})

    async def _owns(
        self, ctx: RequestContext, exchange: _A2aExchange, tasks: list[str], context_id: str | None
    ) -> tuple[str | None, bool]:
        """Why the caller may not name these tasks or this context (None: it
        may), and whether the owner store failed. An unknown task is nobody's: refused. An
        unknown context is claimed now, so a message cannot join a context
        another caller is starting at the same time."""
        owner = exchange.owner = owner_of(ctx.identity)
        if owner is None:
            return "task access needs an identity to own tasks", False
        store = self._store(ctx)
        try:
            if tasks:
                owned = await store.owned("task", tasks, owner)
                if not all(owned):
                    return "task is not accessible to this agent", False
                exchange.owned.update(tasks)
            if context_id is not None and not await store.claim("context", context_id, owner):
                return "context is not accessible to this agent", False
        except Exception:
            log.exception("A2A task owner store failed", extra={"decision_id": ctx.decision_id})
            return "task owner store unavailable", True
        return None, False

    # -- response ---------------------------------------------------------------

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        exchange = self._exchange(ctx)
        transform: Transform
        if exchange.card:
            if not self.config.filter_card:
                return None

            async def filter_card(card: dict[str, Any]) -> dict[str, Any] | None:
                return self._filter_card(ctx, card)

            transform = filter_card

            # The card now depends on who asked: no shared caching, and no
            # validator of the unfiltered card.
            ctx.set_response_header("cache-control", "private")
            ctx.remove_response_header("etag")
        else:

            async def filter_answer(message: dict[str, Any]) -> dict[str, Any] | None:
                return await self._transform(ctx, exchange, message)

            transform = filter_answer

        return rpc.open_exchange_response(
            ctx, exchange, A2A, transform, self.config.max_response_bytes, lambda: self._unreadable(ctx, exchange)
        )

    async def on_response_body(self, ctx: RequestContext) -> Deny | None:
        await rpc.feed(ctx, rpc.existing_exchange(ctx, A2A, self))
        return None

    async def _transform(
        self, ctx: RequestContext, exchange: _A2aExchange, message: dict[str, Any]
    ) -> dict[str, Any] | None:
        if "method" in message:
            return None
        # Kept, not taken: every event of a stream answers the same request.
        pending = exchange.take(message, keep=True)
        result = message.get("result")
        if pending is not None and pending.record is not None:
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
        method = pending.method if pending is not None else None
        if method == LIST_METHOD:
            return await self._filter_tasks(ctx, exchange, message, result)
        if not await self._shows_own_tasks(ctx, exchange, result, claim=method in SKILL_METHODS):
            if pending is not None and pending.record is not None:
                pending.record["outcome"] = "withheld"
            jsonrpc.audit_of(ctx)["a2a.withheld"] = "a task of another owner"
            return error_object(
                message.get("id") if jsonrpc.valid_id(message.get("id")) else None,
                POLICY_DENIED,
                "the agent's answer shows a task that is not this agent's; withheld by the gateway",
                {"decision_id": ctx.decision_id},
            )
        if method in CARD_METHODS and isinstance(result, dict) and self.config.filter_card:
            filtered = self._filter_card(ctx, result)
            if filtered is not None:
                return {**message, "result": filtered}
        return None

    async def _shows_own_tasks(self, ctx: RequestContext, exchange: _A2aExchange, result: Any, claim: bool) -> bool:
        """Whether every task ``result`` shows is the caller's; with ``claim``
        (the answer to the caller's message), a new task becomes the caller's."""
        for task_id, context_id in tasks_shown(result):
            if task_id in exchange.owned:
                continue
            owner = exchange.owner = exchange.owner or owner_of(ctx.identity)
            if owner is None or not task_id:
                return False
            store = self._store(ctx)
            try:
                if claim:
                    mine = await store.claim("task", task_id, owner)
                    if mine and context_id:
                        await store.claim("context", context_id, owner)
                else:
                    mine = (await store.owned("task", [task_id], owner))[0]
            except Exception:
                log.exception("A2A task owner store failed", extra={"decision_id": ctx.decision_id})
                return False
            if not mine:
                log.warning(
                    "A2A response withheld: it shows a task of another owner", extra={"decision_id": ctx.decision_id}
                )
                return False
            exchange.owned.add(task_id)
        return True

    async def _filter_tasks(
        self, ctx: RequestContext, exchange: _A2aExchange, message: dict[str, Any], result: Any
    ) -> dict[str, Any] | None:
        """A ListTasks answer shows the caller's tasks only."""
        if not isinstance(result, dict) or "tasks" not in result:
            return None
        tasks = result["tasks"]
        owner = exchange.owner = exchange.owner or owner_of(ctx.identity)
        if not isinstance(tasks, list) or owner is None:
            kept = []
        else:
            ids: list[str] = [t["id"] if isinstance(t, dict) and isinstance(t.get("id"), str) else "" for t in tasks]
            try:
                owners = await self._store(ctx).owners("task", ids) if ids else []
            except Exception:
                log.exception("A2A task owner store failed", extra={"decision_id": ctx.decision_id})
                owners = [None] * len(ids)
            kept = [t for t, i, o in zip(tasks, ids, owners, strict=False) if i and o == owner]
        hidden = (len(tasks) if isinstance(tasks, list) else 1) - len(kept)
        jsonrpc.audit_of(ctx)["a2a.listed"] = {"shown": len(kept), "hidden": hidden}
        if not hidden:
            return None
        new = {**result, "tasks": kept}
        if "totalSize" in new:
            new["totalSize"] = len(kept)  # the count of others' tasks is theirs too
        return {**message, "result": new}

    def _filter_card(self, ctx: RequestContext, card: dict[str, Any]) -> dict[str, Any] | None:
        skills = card.get("skills")
        if not isinstance(skills, list):
            return None
        audit = jsonrpc.audit_of(ctx)
        if card.get("signatures"):
            audit["a2a.card"] = "signed: not filtered"
            return None
        kept = [
            s
            for s in skills
            if isinstance(s, dict)
            and isinstance(s.get("id"), str)
            and (
                self.decide(ctx.identity, "SendMessage", s["id"])
                or self.decide(ctx.identity, "SendStreamingMessage", s["id"])
            )
        ]
        audit["a2a.card"] = {"shown": len(kept), "hidden": len(skills) - len(kept)}
        if len(kept) == len(skills):
            return None
        return {**card, "skills": kept}

    def on_log(self, ctx: RequestContext) -> None:
        rpc.log_unfed(ctx, A2A, self)

    def _unreadable(self, ctx: RequestContext, exchange: _A2aExchange) -> bytes | None:
        if exchange.card:
            jsonrpc.audit_of(ctx)["a2a.unreadable_response"] = True
            log.warning("A2A agent card withheld: not strictly valid JSON", extra={"decision_id": ctx.decision_id})
            return jsonrpc.dumps({"error": "agent card withheld by the gateway: invalid JSON"})
        return rpc.withhold_pending(ctx, exchange, A2A, "the agent's response was withheld by the gateway")
