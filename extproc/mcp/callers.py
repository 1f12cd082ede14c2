"""Who a rule is about, and who the audit record says called.

A ``who`` matches on the verified identity only (``ctx.identity``, set by the
``jwt``, ``api_key`` and ``mtls`` capabilities), never on raw headers. As in
``rbac``: within a list any entry matches, across fields all must match, and
an empty field matches anything — so an empty ``who`` is everyone, including
an anonymous caller on a route without an authentication capability.
``scopes`` is the exception that reads naturally: the caller needs *all* of
the listed scopes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from extproc.config import CapabilityConfig
from extproc.capabilities.rbac import Condition, _compile_condition
from extproc.context import Identity
from extproc.globs import compile_globs


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
        default_factory=list, description="All of these methods, e.g. [mtls, jwt]."
    )
    conditions: list[Condition] = Field(default_factory=list, description="All of these must hold (as in rbac).")


class CallerMatcher:
    __slots__ = ("agents", "conditions", "methods", "principals", "roles", "scopes", "subjects")

    def __init__(self, who: Who):
        self.subjects = compile_globs(who.subjects)
        self.agents = compile_globs(who.agents)
        self.principals = compile_globs(who.principals)
        self.roles = frozenset(who.roles)
        self.scopes = frozenset(who.scopes)
        self.methods = frozenset(who.authenticated_by)
        self.conditions = [_compile_condition(c) for c in who.conditions]

    def matches(self, identity: Identity) -> bool:
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
        return all(condition(identity, {}) for condition in self.conditions)


def caller(identity: Identity) -> dict[str, Any]:
    """The caller as audit records carry it: identifiers, never credentials."""
    out: dict[str, Any] = {}
    for name in ("subject", "agent_id", "principal", "issuer", "tenant", "api_key_id"):
        value = getattr(identity, name)
        if value:
            out[name] = value
    if identity.delegation:
        out["delegation"] = list(identity.delegation)
    if identity.methods:
        out["methods"] = sorted(identity.methods)
    return out


def caller_label(identity: Identity) -> str:
    """A short one-line form for log lines and deny reasons."""
    if not identity.authenticated:
        return "anonymous"
    parts = [f"sub={identity.subject}"] if identity.subject else []
    if identity.agent_id:
        parts.append(f"agent={identity.agent_id}")
    if identity.principal:
        parts.append(f"peer={identity.principal}")
    if identity.delegation:
        parts.append("act=" + ">".join(identity.delegation))
    return " ".join(parts) or "authenticated"
