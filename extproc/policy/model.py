"""Compiled policy: what the request path uses.

Everything that can be decided once per policy revision (capability
instances, their priority order, which phases each route needs, compiled
matchers) is decided here, so a request does dictionary lookups and calls,
nothing more.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from extproc.capabilities.base import Capability
from extproc.context import HttpRequest, Phase
from extproc.policy.schema import RouteMatch

Matcher = Callable[[HttpRequest], bool]


def compile_match(match: RouteMatch) -> Matcher:
    checks: list[Matcher] = []
    if match.path_exact is not None:
        exact = match.path_exact
        checks.append(lambda r: r.path == exact)
    elif match.path_prefix is not None:
        prefix = match.path_prefix
        checks.append(lambda r: r.path.startswith(prefix))
    elif match.path_regex is not None:
        pattern = re.compile(match.path_regex)
        checks.append(lambda r: pattern.fullmatch(r.path) is not None)
    if match.methods:
        methods = frozenset(match.methods)
        checks.append(lambda r: r.method in methods)
    if match.hosts:
        hosts = re.compile("|".join(fnmatch.translate(h) for h in match.hosts))
        # A Host header may carry a port; policies name hosts without one.
        checks.append(lambda r: hosts.match(r.host.rsplit(":", 1)[0] if ":" in r.host else r.host) is not None)
    return lambda r: all(check(r) for check in checks)


@dataclass(slots=True)
class CompiledRoute:
    name: str
    source: str  # "file:line" where the route is declared, for diagnostics
    capabilities: tuple[Capability, ...]
    matcher: Matcher | None = None
    handlers: dict[Phase, tuple[tuple[Capability, Callable], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ordered = sorted(self.capabilities, key=lambda c: -c.priority)  # stable: ties keep file order
        self.capabilities = tuple(ordered)
        self.handlers = {
            phase: tuple((cap, getattr(cap, f"on_{phase.value}")) for cap in ordered if phase in cap.phases())
            for phase in Phase
        }

    def needs(self, phase: Phase) -> bool:
        return bool(self.handlers[phase])


@dataclass(slots=True)
class PolicySet:
    revision: str
    routes: dict[str, CompiledRoute]
    unmatched_allow: bool = False
    files: tuple[str, ...] = ()
    _matchable: tuple[CompiledRoute, ...] = ()

    def __post_init__(self) -> None:
        self._matchable = tuple(r for r in self.routes.values() if r.matcher is not None)

    def route_named(self, name: str) -> CompiledRoute | None:
        return self.routes.get(name)

    def match(self, request: HttpRequest) -> CompiledRoute | None:
        for route in self._matchable:
            if route.matcher(request):
                return route
        return None
