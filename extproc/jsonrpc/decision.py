"""An access decision on one JSON-RPC call, as the MCP and A2A rules make it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Decision"]


@dataclass(slots=True, frozen=True)
class Decision:
    allowed: bool
    reason: str
    rule: str | None = None
    argument: str | None = None  # the argument that failed its constraint

    def __bool__(self) -> bool:
        return self.allowed
