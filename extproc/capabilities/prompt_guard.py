"""``prompt_guard``: refuse prompts that try to subvert the model.

Policy regex allow/deny lists plus the built-in injection detector (rules as
data in ``extproc/guard/rules/injection.yaml``). Which message roles are
inspected is configurable: user input and tool results by default, since
those carry text the application did not write.
"""

from __future__ import annotations

import hashlib

from pydantic import Field

from extproc import audit
from extproc.capabilities.base import Capability, register
from extproc.capabilities.llm_common import parsed_or_deny
from extproc.context import Deny, RequestContext
from extproc.guard import facts, offload
from extproc.guard.injection import InjectionDetector, PromptGuardConfig
from extproc.llm.errors import llm_error
from extproc.runtime import DEFAULT_RUNTIME

BLOCKED_MESSAGE = "the request was blocked by the gateway's content policy"


class PromptGuardCapabilityConfig(PromptGuardConfig):
    max_body_bytes: int = Field(4 << 20, ge=1024)


@register
class PromptGuard(Capability):
    name = "prompt_guard"
    priority = 600
    Config = PromptGuardCapabilityConfig

    def __init__(self, config: PromptGuardCapabilityConfig, mode, runtime=DEFAULT_RUNTIME):
        super().__init__(config, mode, runtime)
        self._scan_key = "prompt_guard:" + hashlib.sha256(config.model_dump_json().encode()).hexdigest()
        self._detector = offload.cached(self._scan_key, lambda: _detector(config))
        self._roles = frozenset(config.roles)

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        request = parsed_or_deny(ctx, self.config.max_body_bytes)
        if isinstance(request, Deny):
            return request
        slots = [(slot.text, slot.role) for slot in request.texts(self._roles)]
        worst_score, worst_rules = await offload.scan(
            sum(len(text) for text, _ in slots), _worst, self._scan_key, self.config, slots
        )
        ctx.state["prompt_guard"] = {
            "score": round(worst_score, 3),
            "rules": worst_rules,
            "rules_version": self._detector.version,
        }
        audit.note(ctx, "guard.score", round(worst_score, 3))
        audit.note(ctx, "guard.rules", worst_rules)
        if worst_score >= self.config.threshold:
            facts.note_action(ctx, "block")
            return llm_error(
                request.api,
                400,
                "invalid_request_error",
                BLOCKED_MESSAGE,
                reason=f"prompt injection score {worst_score:.2f} rules {','.join(worst_rules)}",
                code="content_policy",
            )
        facts.note_action(ctx, "allow")
        return None


def _detector(config: PromptGuardCapabilityConfig) -> InjectionDetector:
    return InjectionDetector(extra_deny=config.deny, extra_allow=config.allow, builtin_rules=config.detector)


def _worst(key: str, config: PromptGuardCapabilityConfig, slots: list[tuple[str, str]]) -> tuple[float, list[str]]:
    """The highest score over a request's texts, runnable in a scan worker
    process (see offload)."""
    detector = offload.cached(key, lambda: _detector(config))
    worst_score, worst_rules = 0.0, []
    for text, role in slots:
        result = detector.scan(text, role)
        if result.score > worst_score:
            worst_score, worst_rules = result.score, list(result.rule_ids)
    return worst_score, worst_rules
