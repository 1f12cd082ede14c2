"""``rbac``: who may do what, deny by default.

A rule names *who* (roles, subjects, principals, how they authenticated,
conditions on identity fields and claims) and *what* (methods, path patterns,
hosts). Within a list any entry matches; across fields all must match; an
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
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from extproc.capabilities.base import Capability, CapabilityConfig, register
from extproc.context import Deny, Identity, Mode, RequestContext
from extproc.globs import compile_globs
from extproc.headers import validate_methods
from extproc.identity.responses import unauthenticated
from extproc.runtime import DEFAULT_RUNTIME, Runtime

IDENTITY_FIELDS = ("subject", "issuer", "tenant", "principal", "agent_id", "api_key_id")
AUTH_METHODS = ("jwt", "api_key", "mtls")
_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def compile_path_pattern(pattern: str) -> re.Pattern:
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with /")
    out = []
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


class Condition(CapabilityConfig):
    field: str = Field(description="An identity field (subject, tenant, ...) or claims.<name>[.<name>...].")
    equals: str | int | bool | None = None
    one_of: list[str | int] | None = None
    contains: str | None = Field(None, description="The field is a list (or space-separated string) containing this.")
    equals_param: str | None = Field(None, description="Equal to the path segment captured as {name}.")
    present: bool | None = None

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if value not in IDENTITY_FIELDS and not (value.startswith("claims.") and len(value) > 7):
            raise ValueError(f"unknown field {value!r}: use one of {', '.join(IDENTITY_FIELDS)} or claims.<name>")
        return value

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [k for k in ("equals", "one_of", "contains", "equals_param", "present") if getattr(self, k) is not None]
        if len(tests) != 1:
            raise ValueError("give exactly one of equals, one_of, contains, equals_param, present")
        return self


class Who(CapabilityConfig):
    roles: list[str] = Field(default_factory=list, description="Any of these roles.")
    subjects: list[str] = Field(default_factory=list, description="Any of these subjects (globs).")
    principals: list[str] = Field(default_factory=list, description="Any of these mTLS peer identities (globs).")
    authenticated_by: list[Literal["jwt", "api_key", "mtls"]] = Field(
        default_factory=list, description="All of these methods, e.g. [mtls, jwt] for a workload AND a user."
    )
    conditions: list[Condition] = Field(default_factory=list, description="All of these must hold.")


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
        wanted = {c.equals_param for c in self.who.conditions if c.equals_param is not None}
        for name in wanted:
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


_MISSING = object()


def _field_value(identity: Identity, name: str) -> Any:
    if not name.startswith("claims."):
        value = getattr(identity, name)
        return _MISSING if value is None else value
    value: Any = identity.claims
    for part in name[7:].split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _same(value: Any, expected: Any) -> bool:
    # Python has True == 1 and False == 0: a claim `true` must not satisfy
    # `equals: 1`, nor a claim `0` satisfy `equals: false`.
    return value == expected and isinstance(value, bool) == isinstance(expected, bool)


def _compile_condition(c: Condition) -> Callable[[Identity, dict], bool]:
    name = c.field
    if c.present is not None:
        want = c.present
        return lambda ident, params: (_field_value(ident, name) is not _MISSING) is want
    if c.equals is not None:
        expected = c.equals
        return lambda ident, params: _same(_field_value(ident, name), expected)
    if c.one_of is not None:
        options = list(c.one_of)

        def one_of(ident, params):
            value = _field_value(ident, name)
            return value is not _MISSING and any(_same(value, option) for option in options)

        return one_of
    if c.contains is not None:
        item = c.contains

        def contains(ident, params):
            value = _field_value(ident, name)
            if isinstance(value, str):
                return item in value.split()
            return isinstance(value, (list, tuple, set, frozenset)) and item in value

        return contains
    param = c.equals_param
    return lambda ident, params: (v := _field_value(ident, name)) is not _MISSING and params.get(param) == str(v)


class _CompiledRule:
    __slots__ = (
        "conditions",
        "effect",
        "except_paths",
        "hosts",
        "http_methods",
        "methods_needed",
        "name",
        "paths",
        "principals",
        "roles",
        "subjects",
    )

    def __init__(self, rule: Rule):
        self.name, self.effect = rule.name, rule.effect
        self.roles = frozenset(rule.who.roles)
        self.subjects = compile_globs(rule.who.subjects)
        self.principals = compile_globs(rule.who.principals)
        self.methods_needed = frozenset(rule.who.authenticated_by)
        self.conditions = [_compile_condition(c) for c in rule.who.conditions]
        self.http_methods = frozenset(rule.methods)
        self.paths = [compile_path_pattern(p) for p in rule.paths]
        self.except_paths = [compile_path_pattern(p) for p in rule.except_paths]
        self.hosts = compile_globs([h.lower() for h in rule.hosts])

    def matches(self, ctx: RequestContext) -> bool:
        request, identity = ctx.request, ctx.identity
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
        if self.roles and self.roles.isdisjoint(identity.roles):
            return False
        if self.subjects is not None and not (identity.subject and self.subjects.fullmatch(identity.subject)):
            return False
        if self.principals is not None and not (identity.principal and self.principals.fullmatch(identity.principal)):
            return False
        if not self.methods_needed <= identity.methods:
            return False
        return all(condition(identity, params) for condition in self.conditions)


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
                ctx.state["rbac.rule"] = rule.name
                return None
        if not ctx.identity.authenticated:
            return unauthenticated("no allow rule matched an anonymous caller", None)
        return Deny(403, "forbidden", "no allow rule matched")
