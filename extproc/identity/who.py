"""``who``: which verified callers a rule is about — one matcher for rbac,
MCP and A2A rules.

A ``who`` matches on the verified identity only (``ctx.identity``, set by the
``jwt``, ``api_key`` and ``mtls`` capabilities), never on raw headers.
Within a list any entry matches, across fields all must match, and an empty
field matches anything — so an empty ``who`` is everyone, including an
anonymous caller on a route without an authentication capability. ``scopes``
and ``authenticated_by`` read naturally the other way: the caller needs
*all* of them.

A condition on a field the caller does not have (a claim absent from the
token) is simply false: it never matches, in allow or deny rules alike, so a
missing claim can neither grant access nor deny everyone. To single out
callers *because* a claim is missing, say so: ``{field: claims.tenant,
present: false}``. ``equals_param`` compares with a path segment an rbac rule
captured (``/tenants/{tenant}/**``); where nothing is captured (MCP and A2A
rules) it never holds.

This module is the bottom layer's: it depends on pydantic and
``extproc.context`` only, so protocol code and capabilities alike import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from extproc.config import CapabilityConfig
from extproc.context import Identity
from extproc.globs import compile_globs

__all__ = [
    "AUTH_METHODS",
    "IDENTITY_FIELDS",
    "MISSING",
    "Condition",
    "Who",
    "WhoMatcher",
    "compile_condition",
    "equals_params",
    "field_value",
]

IDENTITY_FIELDS = ("subject", "issuer", "tenant", "principal", "agent_id", "api_key_id")
AUTH_METHODS = ("jwt", "api_key", "mtls")
NO_PARAMS: Mapping[str, str] = {}


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
    subjects: list[str] = Field(
        default_factory=list, description="Any of these subjects (globs): the user or consumer."
    )
    agents: list[str] = Field(default_factory=list, description="Any of these agent ids (globs): the `agent_id` claim.")
    principals: list[str] = Field(
        default_factory=list, description="Any of these mTLS peer identities (globs), e.g. spiffe://example.org/ns/a/*."
    )
    roles: list[str] = Field(default_factory=list, description="Any of these roles.")
    scopes: list[str] = Field(default_factory=list, description="All of these scopes.")
    authenticated_by: list[Literal["jwt", "api_key", "mtls"]] = Field(
        default_factory=list, description="All of these methods, e.g. [mtls, jwt] for a workload AND a user."
    )
    conditions: list[Condition] = Field(default_factory=list, description="All of these must hold.")


class _Missing:
    """A field the identity does not have (distinct from a claim that is null)."""


MISSING = _Missing()

# A compiled condition: (identity, captured path parameters) -> holds.
Check = Callable[[Identity, Mapping[str, str]], bool]


def field_value(identity: Identity, name: str) -> object:
    """An identity field or a dotted claim path; ``MISSING`` when absent."""
    if not name.startswith("claims."):
        direct: object = getattr(identity, name)
        return MISSING if direct is None else direct
    value: object = identity.claims
    for part in name[7:].split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _same(value: object, expected: object) -> bool:
    # Python has True == 1 and False == 0: a claim `true` must not satisfy
    # `equals: 1`, nor a claim `0` satisfy `equals: false`.
    return value == expected and isinstance(value, bool) == isinstance(expected, bool)


def compile_condition(c: Condition) -> Check:
    name = c.field
    if c.present is not None:
        want = c.present
        return lambda ident, params: (field_value(ident, name) is not MISSING) is want
    if c.equals is not None:
        expected = c.equals
        return lambda ident, params: _same(field_value(ident, name), expected)
    if c.one_of is not None:
        options = list(c.one_of)

        def one_of(ident: Identity, params: Mapping[str, str]) -> bool:
            value = field_value(ident, name)
            return value is not MISSING and any(_same(value, option) for option in options)

        return one_of
    if c.contains is not None:
        item = c.contains

        def contains(ident: Identity, params: Mapping[str, str]) -> bool:
            value = field_value(ident, name)
            if isinstance(value, str):
                return item in value.split()
            return isinstance(value, (list, tuple, set, frozenset)) and item in value

        return contains
    param = c.equals_param

    def equals_param(ident: Identity, params: Mapping[str, str]) -> bool:
        value = field_value(ident, name)
        return value is not MISSING and param is not None and params.get(param) == str(value)

    return equals_param


class WhoMatcher:
    """A compiled ``Who``."""

    __slots__ = ("agents", "conditions", "methods", "principals", "roles", "scopes", "subjects")

    def __init__(self, who: Who) -> None:
        self.subjects = compile_globs(who.subjects)
        self.agents = compile_globs(who.agents)
        self.principals = compile_globs(who.principals)
        self.roles = frozenset(who.roles)
        self.scopes = frozenset(who.scopes)
        self.methods = frozenset(who.authenticated_by)
        self.conditions = [compile_condition(c) for c in who.conditions]

    def matches(self, identity: Identity, params: Mapping[str, str] = NO_PARAMS) -> bool:
        """``params``: path segments the rule captured, for ``equals_param``."""
        if self.roles and self.roles.isdisjoint(identity.roles):
            return False
        if not self.scopes <= identity.scopes:
            return False
        if not self.methods <= identity.methods:
            return False
        if self.subjects is not None and not (identity.subject and self.subjects.fullmatch(identity.subject)):
            return False
        if self.agents is not None and not (identity.agent_id and self.agents.fullmatch(identity.agent_id)):
            return False
        if self.principals is not None and not (identity.principal and self.principals.fullmatch(identity.principal)):
            return False
        return all(condition(identity, params) for condition in self.conditions)


def equals_params(who: Who) -> set[str]:
    """The path parameters ``who``'s conditions compare with."""
    return {c.equals_param for c in who.conditions if c.equals_param is not None}
