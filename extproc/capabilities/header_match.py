"""``header_match``: allow or deny requests by their headers.

Deny rules win over allow rules. When ``allow`` is non-empty the request must
match at least one allow rule; an empty ``allow`` list allows everything the
deny rules do not catch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Mode, RequestContext
from extproc.globs import validate_regex
from extproc.headers import validate_header_name
from extproc.runtime import DEFAULT_RUNTIME, Runtime


class HeaderRule(CapabilityConfig):
    name: str = Field(description="Header name (case-insensitive).")
    present: bool | None = Field(None, description="Match on presence (true) or absence (false).")
    exact: str | None = None
    prefix: str | None = None
    regex: str | None = Field(None, description="Python regex, matched against the whole value.")

    _name_ok = field_validator("name")(validate_header_name)

    _regex_ok = field_validator("regex")(validate_regex)

    @model_validator(mode="after")
    def _one_matcher(self) -> HeaderRule:
        given = [k for k in ("present", "exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of present, exact, prefix, regex")
        return self

    def compile(self) -> Callable[[Mapping[str, str]], bool]:
        name = self.name
        if self.present is not None:
            want = self.present
            return lambda headers: (name in headers) is want
        if self.exact is not None:
            exact = self.exact
            return lambda headers: headers.get(name) == exact
        if self.prefix is not None:
            prefix = self.prefix
            return lambda headers: (v := headers.get(name)) is not None and v.startswith(prefix)
        if self.regex is None:  # the validator requires one test; fail closed regardless
            raise ValueError("give exactly one of present, exact, prefix, regex")
        pattern = re.compile(self.regex)
        return lambda headers: (v := headers.get(name)) is not None and pattern.fullmatch(v) is not None


class HeaderMatchConfig(CapabilityConfig):
    allow: list[HeaderRule] = Field(default_factory=list)
    deny: list[HeaderRule] = Field(default_factory=list)
    status: Literal[400, 401, 403, 404] = 403

    @model_validator(mode="after")
    def _has_rules(self) -> HeaderMatchConfig:
        if not self.allow and not self.deny:
            raise ValueError("give at least one allow or deny rule")
        return self


@register
class HeaderMatch(Capability[HeaderMatchConfig]):
    name = "header_match"
    priority = 800
    Config = HeaderMatchConfig

    def __init__(
        self, config: HeaderMatchConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME
    ) -> None:
        super().__init__(config, mode, runtime)
        self._allow = [rule.compile() for rule in config.allow]
        self._deny = [(rule.name, rule.compile()) for rule in config.deny]

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        headers = ctx.request.headers
        for name, matches in self._deny:
            if matches(headers):
                return Deny(self.config.status, "forbidden", f"deny rule on header {name}")
        if self._allow and not any(matches(headers) for matches in self._allow):
            return Deny(self.config.status, "forbidden", "no allow rule matched")
        return None
