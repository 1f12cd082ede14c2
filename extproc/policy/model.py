"""Compiled policy: what the request path uses.

Everything that can be decided once per policy revision (capability
instances, their priority order, which phases each route needs, compiled
matchers) is decided here, so a request does dictionary lookups and calls,
nothing more.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from extproc.capabilities.base import Capability
from extproc.context import Deny, HttpRequest, Phase, RequestContext
from extproc.policy.schema import RouteMatch

Matcher = Callable[[HttpRequest], bool]


class RouteMatcher:
    """A route's compiled match. With ``case_insensitive`` the policy's paths
    are folded once here and the request's path per request, so ``/API/x``
    matches a ``/api/`` prefix (the route then folds the path its
    capabilities see, see ``CompiledRoute.authorized_path``)."""

    __slots__ = ("case_insensitive", "checks")

    def __init__(self, checks: tuple[Matcher, ...], case_insensitive: bool):
        self.checks = checks
        self.case_insensitive = case_insensitive

    def __call__(self, request: HttpRequest) -> bool:
        return all(check(request) for check in self.checks)


def compile_match(match: RouteMatch) -> RouteMatcher:
    checks: list[Matcher] = []
    fold = match.case_insensitive
    if match.path_exact is not None:
        exact = match.path_exact.lower() if fold else match.path_exact
        checks.append((lambda r: r.path.lower() == exact) if fold else (lambda r: r.path == exact))
    elif match.path_prefix is not None:
        prefix = match.path_prefix.lower() if fold else match.path_prefix
        checks.append((lambda r: r.path.lower().startswith(prefix)) if fold else (lambda r: r.path.startswith(prefix)))
    elif match.path_regex is not None:
        pattern = re.compile(match.path_regex, re.IGNORECASE if fold else 0)
        checks.append(
            (lambda r: pattern.fullmatch(r.path.lower()) is not None)
            if fold
            else (lambda r: pattern.fullmatch(r.path) is not None)
        )
    if match.methods:
        methods = frozenset(match.methods)
        checks.append(lambda r: r.method in methods)
    if match.hosts:
        hosts = re.compile("|".join(fnmatch.translate(h) for h in match.hosts))
        # A Host header may carry a port; policies name hosts without one.
        checks.append(lambda r: hosts.match(r.host.rsplit(":", 1)[0] if ":" in r.host else r.host) is not None)
    return RouteMatcher(tuple(checks), fold)


Handler = Callable[[RequestContext], Awaitable[Deny | None]]


@dataclass(slots=True)
class CompiledRoute:
    name: str
    source: str  # "file:line" where the route is declared, for diagnostics
    capabilities: tuple[Capability[Any], ...]
    matcher: Matcher | None = None
    handlers: dict[Phase, tuple[tuple[Capability[Any], Handler], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ordered = sorted(self.capabilities, key=lambda c: -c.priority)  # stable: ties keep file order
        self.capabilities = tuple(ordered)
        self.handlers = {
            phase: tuple((cap, getattr(cap, f"on_{phase.value}")) for cap in ordered if phase in cap.phases())
            for phase in Phase
        }

    def needs(self, phase: Phase) -> bool:
        return bool(self.handlers[phase])

    @property
    def case_insensitive(self) -> bool:
        return getattr(self.matcher, "case_insensitive", False)

    def authorized_path(self, path: str) -> str:
        """The path this route's capabilities judge: folded when its match is
        case-insensitive, or an RBAC rule on ``/api/admin/**`` would miss
        ``/api/Admin/users`` that the route itself claimed."""
        return path.lower() if self.case_insensitive else path


@dataclass(slots=True)
class PolicySet:
    revision: str
    routes: dict[str, CompiledRoute]
    unmatched_allow: bool = False
    files: tuple[str, ...] = ()
    # Reload safety (policy/store.py) and the Runtime.shared keys this revision holds.
    max_route_removal: float = 0.5
    allow_route_removal: bool = False
    resources: frozenset[Any] = frozenset()
    _matchable: tuple[CompiledRoute, ...] = ()

    def __post_init__(self) -> None:
        self._matchable = tuple(r for r in self.routes.values() if r.matcher is not None)

    def route_named(self, name: str) -> CompiledRoute | None:
        return self.routes.get(name)

    def match(self, request: HttpRequest) -> CompiledRoute | None:
        for route in self._matchable:
            if route.matcher is not None and route.matcher(request):
                return route
        return None
