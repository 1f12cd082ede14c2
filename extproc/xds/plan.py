"""What the compiler decided for each route, and why: the explain output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Engine = Literal["native", "processor"]
# How Envoy governs a route: its own filters, or a call to the processor.
RouteEngine = Literal["native", "ext_authz", "ext_proc", "unexposed"]


class NotNative(Exception):
    """A capability (or a part of its config) Envoy's filters cannot express
    with the processor's exact semantics; the message says what."""


@dataclass(frozen=True, slots=True)
class Placement:
    capability: str
    mode: str
    engine: Engine
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RoutePlan:
    route: str
    engine: RouteEngine
    capabilities: tuple[Placement, ...]
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "route": self.route,
            "engine": self.engine,
            "reason": self.reason,
            "capabilities": [
                {"type": p.capability, "mode": p.mode, "engine": p.engine, "reason": p.reason}
                for p in self.capabilities
            ],
        }
