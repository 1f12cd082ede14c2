"""``model_access``: which callers may use which models.

Rules map who (roles, subjects) to model globs; the first rule matching the
caller decides, and a caller no rule matches may use no model. A request
naming no model is refused too: the upstream's default model is still a model.

The glob that admitted the model is the model as the gateway resolved it
(``ctx.established.model_key``): budgets key on it, so a client cannot open a fresh
budget by naming ``demo-a``, ``demo-b``... under a ``demo-*`` rule.
"""

from __future__ import annotations

import re

from pydantic import Field

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.capabilities.llm_common import parsed_or_deny
from extproc.context import Deny, Mode, RequestContext
from extproc.globs import compile_glob, compile_globs
from extproc.llm.errors import llm_error
from extproc.runtime import DEFAULT_RUNTIME, Runtime


class ModelRule(CapabilityConfig):
    roles: list[str] = Field(default_factory=list, description="Any of these roles; empty: any caller.")
    subjects: list[str] = Field(default_factory=list, description="Any of these subjects (globs).")
    models: list[str] = Field(min_length=1, description="Model globs, e.g. gpt-4o*, claude-*-haiku*.")


class ModelAccessConfig(CapabilityConfig):
    rules: list[ModelRule] = Field(min_length=1)
    max_body_bytes: int = Field(4 << 20, ge=1024)


# (roles, subjects, [(model glob, its regex)]) per rule
_Rule = tuple[frozenset[str], "re.Pattern[str] | None", list[tuple[str, "re.Pattern[str]"]]]


@register
class ModelAccess(Capability[ModelAccessConfig]):
    name = "model_access"
    priority = 880  # after rbac: the route is allowed, now the model
    Config = ModelAccessConfig

    def __init__(
        self, config: ModelAccessConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME
    ) -> None:
        super().__init__(config, mode, runtime)
        # Each model glob on its own: which one matched is the resolved model.
        self._rules = [
            (
                frozenset(r.roles),
                compile_globs(r.subjects),
                [(pattern, compile_glob(pattern)) for pattern in r.models],
            )
            for r in config.rules
        ]

    def _rule_for(self, ctx: RequestContext) -> _Rule | None:
        identity = ctx.identity
        for rule in self._rules:
            roles, subjects, _models = rule
            if roles and roles.isdisjoint(identity.roles):
                continue
            if subjects is not None and not (identity.subject and subjects.fullmatch(identity.subject)):
                continue
            return rule
        return None

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        request = parsed_or_deny(ctx, self.config.max_body_bytes)
        if isinstance(request, Deny):
            return request
        rule = self._rule_for(ctx)
        if request.model is not None and rule is not None:
            for pattern, regex in rule[2]:
                if regex.fullmatch(request.model):
                    ctx.established.model_key = pattern
                    return None
        return llm_error(
            request.api,
            403,
            "permission_denied",
            "this model is not available to you",
            reason=f"model {request.model!r} not allowed",
            code="model_not_allowed",
        )
