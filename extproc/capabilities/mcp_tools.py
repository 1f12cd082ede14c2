"""``mcp_tools``: which MCP tools, resources and prompts each caller may use.

On an MCP route (Streamable HTTP, Envoy's ext_proc with the request body
buffered and the response streamed) every JSON-RPC request is parsed and
judged against the rules (``extproc.mcp.policy``): ``tools/call``,
``prompts/get``, ``resources/read|subscribe|unsubscribe`` and
``completion/complete`` by their target; list results (``tools/list``,
``resources/list``, ``resources/templates/list``, ``prompts/list``) are
filtered on the way back by the *same* decision, so a caller sees what it may
use and nothing else. Default deny: a target no allow rule grants is refused.

A refused request is answered by the gateway with a JSON-RPC error carrying
the request's id (HTTP 200, code -32019; as an SSE event when the client
accepts only SSE), so MCP clients raise their normal protocol error.
Malformed bodies get -32700 / -32600 / -32602 with HTTP 400.

Batches (JSON-RPC arrays, from the 2025-03-26 protocol) are judged as a
unit: if any message in a batch is refused or invalid, the gateway answers
the whole batch itself — the refused message with its own error, every other
request with "not executed" — and the server sees none of it. A batch is
forwarded only when every message in it is allowed. (Rewriting the batch to
forward the allowed part would execute a subset the client never asked for
as such, and MCP dropped batches in 2025-06-18: current servers reject them.)

Also: tool-definition pinning (``extproc.mcp.pins``), an optional scan of
tool descriptions and results for injected instructions (when the
``extproc.guard.injection`` detector is installed), delegation-chain checks,
and an audit record per targeted request in ``ctx.state["audit"]``
(arguments as a SHA-256 of their canonical JSON, never their values).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Mode, RequestContext
from extproc.globs import compile_globs
from extproc.headers import content_encoding
from extproc.identity.caller import caller, caller_label
from extproc.identity.delegation import DelegationConfig, DelegationPolicy
from extproc.jsonrpc import exchange as rpc
from extproc.jsonrpc import wire as jsonrpc
from extproc.jsonrpc.decision import Decision
from extproc.jsonrpc.exchange import Exchange, Pending
from extproc.jsonrpc.wire import POLICY_DENIED, Message, error_object
from extproc.mcp.pins import PinStore, definition_hash
from extproc.mcp.policy import NOT_GIVEN, AccessPolicy, AccessRule, validate_rules
from extproc.mcp.protocol import LISTS, PASS, ParamsError, is_notification, target_of
from extproc.runtime import DEFAULT_RUNTIME, Runtime

if TYPE_CHECKING:
    from extproc.guard.injection import InjectionDetector

log = logging.getLogger("extproc.mcp")

SESSION_HEADER = "mcp-session-id"
MCP = rpc.Protocol("MCP", "mcp", invalid_status=400, decision_keys=("tool.decision",), is_notification=is_notification)
_HEX = set("0123456789abcdef")


class PinningConfig(CapabilityConfig):
    mode: Literal["off", "alert", "block"] = Field(
        "alert", description="On a changed tool definition: alert (audit + log) or block (hide it, refuse its calls)."
    )
    trust_on_first_use: bool = Field(
        True, description="Pin the first definition seen; false: only explicit pins count."
    )
    pins: dict[str, str] = Field(
        default_factory=dict, description="Tool name → SHA-256 of its definition (always wins)."
    )
    server: str | None = Field(None, description="Pin namespace; default: the route name.")

    @field_validator("pins")
    @classmethod
    def _digests(cls, value: dict[str, str]) -> dict[str, str]:
        for name, digest in value.items():
            if len(digest) != 64 or not set(digest.lower()) <= _HEX:
                raise ValueError(f"pin for {name!r} must be a hex SHA-256 (64 characters)")
        return value


class ScanConfig(CapabilityConfig):
    descriptions: bool = Field(False, description="Scan tool descriptions in tools/list results.")
    results: bool = Field(False, description="Scan the text of tools/call results.")
    threshold: float = Field(0.5, ge=0, description="Detector score at or above which text is flagged.")
    action: Literal["alert", "block"] = Field(
        "alert", description="block: a flagged tool is hidden and refused; a flagged result is withheld."
    )


class McpToolsConfig(CapabilityConfig):
    rules: list[AccessRule] = Field(min_length=1)
    allow_methods: list[str] = Field(
        default_factory=list, description="Other JSON-RPC methods (globs) to let through, e.g. vendor extensions."
    )
    max_batch: int = Field(16, ge=1, le=1000, description="Most messages in a JSON-RPC batch.")
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_response_bytes: int = Field(8 << 20, ge=1024, description="Largest JSON response held for filtering.")
    pinning: PinningConfig = Field(default_factory=PinningConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    delegation: DelegationConfig | None = None

    _rules = field_validator("rules")(validate_rules)


def _load_detector() -> InjectionDetector | None:
    try:
        from extproc.guard.injection import InjectionDetector
    except ImportError:
        return None
    try:
        return InjectionDetector()
    except Exception:  # a detector that cannot start must not take the route down
        log.exception("injection detector failed to start; MCP scanning disabled")
        return None


@register
class McpTools(Capability[McpToolsConfig]):
    name = "mcp_tools"
    priority = 850  # after authentication (1000+) and rbac (900), before quotas
    Config = McpToolsConfig

    def __init__(self, config: McpToolsConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        self._policy = AccessPolicy(config.rules)
        self._delegation = DelegationPolicy(config.delegation) if config.delegation else None
        self._allow_methods = compile_globs(config.allow_methods)
        self._pins_applied: set[str] = set()
        scan = config.scan
        self._detector = None
        if scan.descriptions or scan.results:
            self._detector = runtime.shared(("mcp.injection_detector",), _load_detector)
            if self._detector is None:
                log.warning("mcp_tools scan is configured but extproc.guard.injection is not available; not scanning")

    # -- shared decision --------------------------------------------------

    def _pins(self, ctx: RequestContext) -> PinStore:
        key = self.config.pinning.server or (ctx.route.name if ctx.route else "-")
        store = self.runtime.shared(("mcp.pins", key), PinStore)
        if key not in self._pins_applied:
            store.apply_policy(self.config.pinning.pins)
            self._pins_applied.add(key)
        return store

    def decide(self, ctx: RequestContext, kind: str, name: str, arguments: Any = NOT_GIVEN) -> Decision:
        """The one decision both calls and lists use: the rules, then (for
        tools) whether pinning or the description scan blocks the tool."""
        decision = self._policy.decide(ctx.identity, kind, name, arguments)
        if not decision or kind != "tool":
            return decision
        pinning, scan = self.config.pinning, self.config.scan
        blocked = self._pins(ctx).blocked_reason(
            name,
            drift=pinning.mode == "block",
            flagged=scan.action == "block" and scan.descriptions,
            trust_on_first_use=pinning.trust_on_first_use,
        )
        if blocked is not None:
            return Decision(False, blocked, decision.rule)
        return decision

    # -- request ------------------------------------------------------------

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        headers = ctx.request.headers
        audit = jsonrpc.audit_of(ctx)
        if headers.get(SESSION_HEADER):
            audit["mcp.session_id"] = headers[SESSION_HEADER]
        if headers.get("mcp-protocol-version"):
            audit["mcp.protocol_version"] = headers["mcp-protocol-version"]
        if self._delegation is not None:
            violation = self._delegation.violation(ctx.identity)
            if violation is not None:
                return Deny(403, "forbidden", f"{caller_label(ctx.identity)}: {violation}")
        encoding = content_encoding(headers)
        if encoding:
            return Deny(415, "unsupported_media_type", f"content-encoding {encoding} cannot be inspected")
        # Responses must stay readable: they are filtered on the way back.
        ctx.remove_request_header("accept-encoding")
        return None

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        if ctx.request.method != "POST":
            return None
        exchange = rpc.exchange_of(ctx, MCP, self, rpc.Exchange)
        deny = await rpc.judge_request(
            self,
            ctx,
            exchange,
            MCP,
            self._authorize,
            max_body_bytes=self.config.max_body_bytes,
            max_batch=self.config.max_batch,
        )
        audit = jsonrpc.audit_of(ctx)
        if audit.get("mcp.methods"):
            audit["mcp.method"] = audit["mcp.methods"][0]
        return deny

    async def _authorize(self, ctx: RequestContext, exchange: Exchange, message: Message) -> dict[str, Any] | None:
        """Judge one message; None to let it through, else its error object."""
        method = message.method
        if message.kind != "request" or method is None:
            return None  # notifications, and the client's answers to server requests
        try:
            target = target_of(message)
        except ParamsError as exc:
            exchange.reasons.append(f"{method}: {exc.message}")
            return error_object(message.id, exc.code, exc.message)
        if target is None:
            if method in LISTS or method in PASS or (self._allow_methods and self._allow_methods.fullmatch(method)):
                exchange.expect(message, method)
                return None
            exchange.reasons.append(f"method {method} not allowed")
            return error_object(
                message.id,
                POLICY_DENIED,
                f"method {method} is not allowed by the gateway",
                {"decision_id": ctx.decision_id},
            )
        decision = self.decide(ctx, target.kind, target.name, target.arguments)
        digest = jsonrpc.sha256_json(target.arguments) if target.arguments is not NOT_GIVEN else None
        record = {
            "id": message.id,
            "method": method,
            "kind": target.kind,
            "target": target.name,
            "arguments_sha256": digest,
            "decision": "allow" if decision else "deny",
            "reason": decision.reason,
            "rule": decision.rule,
            "caller": caller(ctx.identity),
        }
        rpc.record_call(ctx, exchange, MCP, record)
        audit = jsonrpc.audit_of(ctx)
        if target.kind == "tool" and "tool.name" not in audit:
            # Flat facts for the audit exporter (the first tool call of a batch;
            # every call is in mcp.calls).
            audit["tool.name"] = target.name
            audit["tool.server"] = self.config.pinning.server or (ctx.route.name if ctx.route else "")
            audit["tool.arguments_sha256"] = digest
            audit["tool.decision"] = record["decision"]
        exchange.expect(message, method, record)
        summary = f"{method} {target.kind} {target.name} by {caller_label(ctx.identity)}: {decision.reason}" + (
            f" (arguments sha256 {digest})" if digest else ""
        )
        if decision:
            exchange.allowed.append(summary)
            return None
        exchange.reasons.append(summary)
        if decision.argument is not None:
            text = f"argument {decision.argument!r} is not permitted for {target.kind} {target.name!r}"
        else:
            text = f"{target.kind} {target.name!r} is not available"
        return error_object(message.id, POLICY_DENIED, text, {"decision_id": ctx.decision_id})

    # -- response ------------------------------------------------------------

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        exchange = rpc.exchange_of(ctx, MCP, self, rpc.Exchange)
        session = ctx.response_headers.get(SESSION_HEADER)
        if session:
            jsonrpc.audit_of(ctx)["mcp.session_id"] = session

        async def transform(message: dict[str, Any]) -> dict[str, Any] | None:
            return self._transform(ctx, exchange, message)

        return rpc.open_exchange_response(ctx, exchange, MCP, transform, self.config.max_response_bytes)

    async def on_response_body(self, ctx: RequestContext) -> Deny | None:
        await rpc.feed(ctx, rpc.existing_exchange(ctx, MCP, self))
        return None

    def _transform(self, ctx: RequestContext, exchange: Exchange, message: dict[str, Any]) -> dict[str, Any] | None:
        if "method" in message or "id" not in message:
            return None  # the server's own requests and notifications pass
        pending = exchange.take(message)
        result = message.get("result")
        if pending is not None and pending.record is not None:
            pending.record["outcome"] = (
                "rpc_error"
                if "error" in message
                else "tool_error"
                if isinstance(result, dict) and result.get("isError")
                else "ok"
            )
        if not isinstance(result, dict):
            return None
        if pending is not None:
            spec = LISTS.get(pending.method)
        else:
            # A response this request did not send (a resumed stream replaying
            # an earlier one): recognized by its shape, filtered all the same.
            spec = next((s for s in LISTS.values() if isinstance(result.get(s[1]), list)), None)
        if spec is not None:
            return self._filter_list(ctx, message, result, spec)
        if pending is not None and pending.method == "tools/call" and self.config.scan.results:
            return self._scan_result(ctx, message, result, pending)
        return None

    def _filter_list(
        self, ctx: RequestContext, message: dict[str, Any], result: dict[str, Any], spec: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        kind, key, field_name = spec
        items = result.get(key)
        if not isinstance(items, list):
            return None
        kept, hidden = [], []
        for item in items:
            name = item.get(field_name) if isinstance(item, dict) else None
            if not isinstance(name, str):
                hidden.append("?")
                continue
            if kind == "tool" and key == "tools":
                self._observe_tool(ctx, item)
            if self.decide(ctx, kind, name):
                kept.append(item)
            else:
                hidden.append(name)
        audit = jsonrpc.audit_of(ctx)
        listed = audit.setdefault("mcp.listed", {"shown": 0, "hidden": 0})
        listed["shown"] += len(kept)
        listed["hidden"] += len(hidden)
        private = result.get("cacheScope") == "public"
        if not hidden and not private:
            return None
        new_result = {**result, key: kept}
        if private:
            new_result["cacheScope"] = "private"  # the list now depends on who asked
        return {**message, "result": new_result}

    def _observe_tool(self, ctx: RequestContext, tool: dict[str, Any]) -> None:
        name = tool["name"]
        pinning = self.config.pinning
        store = self._pins(ctx)
        if pinning.mode != "off":
            drift = store.observe(name, definition_hash(tool), pinning.trust_on_first_use)
            if drift is not None:
                jsonrpc.audit_of(ctx).setdefault("mcp.pin_drift", []).append(f"{name}:{drift.source}")
                log.warning(
                    "MCP tool definition changed: %s (%s pin %s, seen %s), action %s",
                    name,
                    drift.source,
                    drift.pinned,
                    drift.seen,
                    pinning.mode,
                    extra={"decision_id": ctx.decision_id, "route": ctx.route.name if ctx.route else None},
                )
        if self.config.scan.descriptions and self._detector is not None:
            description = tool.get("description")
            flagged = self._scan(ctx, "description", name, [description] if isinstance(description, str) else [])
            store.flag(name, flagged)

    def _scan(self, ctx: RequestContext, where: str, name: str, texts: list[str]) -> bool:
        detector = self._detector
        if detector is None:
            return False
        worst, rules = 0.0, []
        for text in texts:
            found = detector.scan(text, "tool")
            score = float(getattr(found, "score", 0.0) or 0.0)
            if score > worst:
                worst, rules = score, list(getattr(found, "rule_ids", []) or [])
        flagged = worst >= self.config.scan.threshold
        if flagged:
            jsonrpc.audit_of(ctx).setdefault("mcp.scan", []).append(f"{where}:{name}")
            log.warning(
                "MCP tool %s %s flagged by the injection scan (score %.2f, rules %s)",
                name,
                where,
                worst,
                ",".join(rules),
                extra={"decision_id": ctx.decision_id},
            )
        return flagged

    def _scan_result(
        self, ctx: RequestContext, message: dict[str, Any], result: dict[str, Any], pending: Pending
    ) -> dict[str, Any] | None:
        if self._detector is None:
            return None
        texts = [
            c["text"] for c in result.get("content") or () if isinstance(c, dict) and isinstance(c.get("text"), str)
        ]
        name = pending.record["target"] if pending.record else "?"
        if not self._scan(ctx, "result", name, texts) or self.config.scan.action != "block":
            return None
        if pending.record is not None:
            pending.record["outcome"] = "withheld"
        return error_object(
            message["id"],
            POLICY_DENIED,
            "the tool result was withheld by the gateway's content policy",
            {"decision_id": ctx.decision_id},
        )

    def on_log(self, ctx: RequestContext) -> None:
        rpc.log_unfed(ctx, MCP, self)
