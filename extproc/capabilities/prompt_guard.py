"""``prompt_guard``: refuse prompts that try to subvert the model.

Policy regex allow/deny lists plus the built-in injection detector (rules as
data in ``extproc/guard/rules/injection.yaml``). Which message roles are
inspected is configurable: user input and tool results by default, since
those carry text the application did not write.
"""

from __future__ import annotations

from pydantic import Field

from extproc.capabilities.base import Capability, register
from extproc.capabilities.llm_common import parsed_or_deny
from extproc.context import Deny, RequestContext
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
        self._detector = InjectionDetector(extra_deny=config.deny, extra_allow=config.allow,
                                           builtin_rules=config.detector)
        self._roles = frozenset(config.roles)

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        request = parsed_or_deny(ctx, self.config.max_body_bytes)
        if isinstance(request, Deny):
            return request
        worst_score, worst_rules = 0.0, []
        for slot in request.texts(self._roles):
            result = self._detector.scan(slot.text, slot.role)
            if result.score > worst_score:
                worst_score, worst_rules = result.score, result.rule_ids
        ctx.state["prompt_guard"] = {"score": round(worst_score, 3), "rules": worst_rules,
                                     "rules_version": self._detector.version}
        if worst_score >= self.config.threshold:
            return llm_error(request.api, 400, "invalid_request_error", BLOCKED_MESSAGE,
                             reason=f"prompt injection score {worst_score:.2f} rules {','.join(worst_rules)}",
                             code="content_policy")
        return None
