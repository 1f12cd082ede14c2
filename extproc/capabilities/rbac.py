"""``rbac``: who may do what, deny by default.

A rule names *who* (roles, subjects, agents, principals, scopes, how they
authenticated, conditions on identity fields and claims: the ``who`` of
``extproc.identity.who``, shared with the MCP and A2A rules) and *what*
(methods, path patterns, hosts). Within a list any entry matches; across fields all must match; an
empty field matches anything. Any matching ``deny`` rule refuses the request,
whatever the allow rules say. Otherwise a matching ``allow`` rule lets it
through; if none matches, an anonymous caller gets 401 and an authenticated
one 403.

A condition on a field the caller does not have (a claim absent from the
token) is simply false: it never matches, in allow or deny rules alike, so a
missing claim can neither grant access nor deny everyone. To refuse callers
*because* a claim is missing, say so: ``{field: claims.tenant, present: false}``.

Path patterns: ``*`` is one segment, ``**`` any number of segments, and
``{name}`` captures one segment that conditions can compare with
``equals_param`` (e.g. the tenant in ``/tenants/{tenant}/**`` must equal the
token's tenant).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Mode, RequestContext
from extproc.globs import compile_globs
from extproc.headers import validate_methods
from extproc.identity.responses import unauthenticated
from extproc.identity.who import Condition, Who, WhoMatcher, equals_params
from extproc.runtime import DEFAULT_RUNTIME, Runtime

# Condition and Who are part of rbac's config schema (compilers of it, like
# extproc.xds, read them from here).
__all__ = ["Condition", "Rbac", "RbacConfig", "Rule", "Who", "compile_path_pattern"]

_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def compile_path_pattern(pattern: str) -> re.Pattern[str]:
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with /")
    out: list[str] = []
    names = _PARAM.findall(pattern)
    if len(names) != len(set(names)):  # re.compile would raise re.error, which is no ValueError
        raise ValueError(f"path pattern {pattern!r} captures the same {{param}} twice")
    for segment in pattern.strip("/").split("/") if pattern != "/" else []:
        if segment == "**":
            out.append(r"(?:/.*)?")
        elif segment == "*":
            out.append(r"/[^/]+")
        elif _PARAM.fullmatch(segment):
            out.append(rf"/(?P<{segment[1:-1]}>[^/]+)")
        elif "{" in segment or "}" in segment:
            raise ValueError(f"path pattern {pattern!r}: a {{param}} must be a whole segment")
        else:
            out.append("/" + re.escape(segment).replace(r"\*", "[^/]*"))
    regex = "".join(out) or "/"
    if pattern.endswith("/") and pattern != "/" and not pattern.endswith("**/"):
        regex += "/"
    return re.compile(regex)


class Rule(CapabilityConfig):
    name: str
    effect: Literal["allow", "deny"] = "allow"
    who: Who = Field(default_factory=Who)
    methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    except_paths: list[str] = Field(default_factory=list, description="Carve-outs from `paths`.")
    hosts: list[str] = Field(default_factory=list)

    _methods = field_validator("methods")(validate_methods)

    @field_validator("paths", "except_paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for pattern in value:
            compile_path_pattern(pattern)
        return value

    @model_validator(mode="after")
    def _params_exist(self) -> Rule:
        for name in equals_params(self.who):
            if not self.paths or any(f"{{{name}}}" not in p for p in self.paths):
                raise ValueError(f"condition uses path parameter {{{name}}} but not every path pattern captures it")
        return self


class RbacConfig(CapabilityConfig):
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> RbacConfig:
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return self


class _CompiledRule:
    __slots__ = ("effect", "except_paths", "hosts", "http_methods", "name", "paths", "who")

    def __init__(self, rule: Rule) -> None:
        self.name, self.effect = rule.name, rule.effect
        self.who = WhoMatcher(rule.who)
        self.http_methods = frozenset(rule.methods)
        self.paths = [compile_path_pattern(p) for p in rule.paths]
        self.except_paths = [compile_path_pattern(p) for p in rule.except_paths]
        self.hosts = compile_globs([h.lower() for h in rule.hosts])

    def matches(self, ctx: RequestContext) -> bool:
        request = ctx.request
        if self.http_methods and request.method not in self.http_methods:
            return False
        if self.hosts is not None and not self.hosts.fullmatch(request.host.split(":", 1)[0]):
            return False
        params: dict[str, str] = {}
        if self.paths:
            for pattern in self.paths:
                found = pattern.fullmatch(request.path)
                if found:
                    params = found.groupdict()
                    break
            else:
                return False
        if any(pattern.fullmatch(request.path) for pattern in self.except_paths):
            return False
        return self.who.matches(ctx.identity, params)


@register
class Rbac(Capability[RbacConfig]):
    name = "rbac"
    priority = 900
    Config = RbacConfig

    def __init__(self, config: RbacConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME) -> None:
        super().__init__(config, mode, runtime)
        compiled = [_CompiledRule(r) for r in config.rules]
        self._deny = [r for r in compiled if r.effect == "deny"]
        self._allow = [r for r in compiled if r.effect == "allow"]

    async def on_request_headers(self, ctx: RequestContext) -> Deny | None:
        for rule in self._deny:
            if rule.matches(ctx):
                return Deny(403, "forbidden", f"deny rule {rule.name}")
        for rule in self._allow:
            if rule.matches(ctx):
                ctx.established.rbac_rule = rule.name
                return None
        if not ctx.identity.authenticated:
            return unauthenticated("no allow rule matched an anonymous caller", None)
        return Deny(403, "forbidden", "no allow rule matched")
