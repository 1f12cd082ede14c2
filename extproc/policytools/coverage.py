"""Which routes, capabilities and named rules a test suite exercised.

A route is exercised when a case reached it; a capability when it decided
something for a case (allow, deny or error, as the audit record lists it);
a rule (an RBAC/MCP/A2A rule, a quota limit, a token budget) when it is
the rule that decided a case. What no case exercised is what a policy
change could break unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from extproc.policy.model import PolicySet
from extproc.policytools.harness import Outcome, route_rules


@dataclass(slots=True)
class Coverage:
    routes: dict[str, int] = field(default_factory=dict)
    capabilities: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # -> decisions seen
    rules: dict[tuple[str, str, str], int] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: PolicySet) -> Coverage:
        self = cls()
        for name, route in policy.routes.items():
            self.routes[name] = 0
            for cap in route.capabilities:
                self.capabilities[(name, cap.name)] = set()
            for cap_name, rule in route_rules(route):
                self.rules[(name, cap_name, rule)] = 0
        return self

    def add(self, outcome: Outcome) -> None:
        record = outcome.record
        route = record.route if record is not None else None
        if record is None or route is None or route not in self.routes:
            return
        self.routes[route] += 1
        for cap in record.capabilities:
            seen = self.capabilities.get((route, cap.capability))
            if seen is not None:
                seen.add(cap.decision)
        for rule in outcome.rules:
            for key in self.rules:
                if key[0] == route and key[2] == rule:
                    self.rules[key] += 1

    def missing(self) -> list[str]:
        out = [f"route {r}" for r, n in self.routes.items() if not n]
        out += [f"capability {r}/{c}" for (r, c), seen in self.capabilities.items() if not seen and self.routes[r]]
        out += [f"rule {r}/{c}/{name}" for (r, c, name), n in self.rules.items() if not n]
        return out

    def summary(self) -> str:
        routes = sum(1 for n in self.routes.values() if n)
        caps = sum(1 for s in self.capabilities.values() if s)
        rules = sum(1 for n in self.rules.values() if n)
        return (
            f"coverage: routes {routes}/{len(self.routes)}, capabilities {caps}/{len(self.capabilities)}, "
            f"rules {rules}/{len(self.rules)}"
        )
