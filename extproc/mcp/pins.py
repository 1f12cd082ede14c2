"""Tool-definition pinning: notice when a server changes what a tool is.

A tool's *definition hash* is the SHA-256 of the canonical JSON of its
``name``, ``description`` and ``inputSchema`` — what a model reads to decide
to call it, and what a "rug pull" changes. The first definition the gateway
sees (in a ``tools/list`` response) becomes the tool's pin, unless the policy
pins it explicitly (``pins: {tool: sha256}``), which always wins. A later
listing with another hash is *drift*:

* ``alert``: an audit event and a warning log; the tool stays usable;
* ``block``: the tool disappears from ``tools/list`` and its calls are
  refused, until a listing shows the pinned definition again or the pin is
  changed (edit ``pins:``; a first-seen pin resets when the processor restarts).

With ``trust_on_first_use: false`` a tool with no explicit pin counts as
drifted from the start. Pins live in the processor's memory, one store per
route (or per ``server`` name), shared across policy reloads; with several
workers each has its own first-seen pins (explicit pins are the same for all).
The gateway only sees definitions that pass through it: drift is detected at
the next ``tools/list``, not at the moment the server changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from extproc.jsonrpc.wire import sha256_json


def definition_hash(tool: dict[str, Any]) -> str:
    description = tool.get("description")
    schema = tool.get("inputSchema")
    return sha256_json(
        {
            "name": tool.get("name"),
            "description": description if isinstance(description, str) else "",
            "inputSchema": schema if isinstance(schema, dict) else {},
        }
    )


@dataclass(slots=True)
class Pin:
    pinned: str | None  # None: nothing pinned yet (TOFU off, no explicit pin)
    source: str  # "policy" | "first_seen"
    seen: str | None = None

    @property
    def drifted(self) -> bool:
        return self.seen is not None and self.seen != self.pinned


@dataclass(slots=True, frozen=True)
class Drift:
    tool: str
    pinned: str | None
    seen: str
    source: str

    def as_audit(self) -> dict[str, Any]:
        return {"tool": self.tool, "pinned": self.pinned, "seen": self.seen, "pin": self.source}


class PinStore:
    """The pins of one MCP server (route). Thread-safe: workers are processes,
    but a processor may serve from several threads."""

    def __init__(self, max_tools: int = 10_000):
        self._pins: dict[str, Pin] = {}
        self._flags: set[str] = set()
        self._lock = threading.Lock()
        self.max_tools = max_tools

    def apply_policy(self, pins: dict[str, str]) -> None:
        """Install the policy's explicit pins; forget explicit pins it no longer has."""
        with self._lock:
            for name, pin in list(self._pins.items()):
                if pin.source == "policy" and name not in pins:
                    del self._pins[name]
            for name, digest in pins.items():
                current = self._pins.get(name)
                self._pins[name] = Pin(digest.lower(), "policy", current.seen if current else None)

    def observe(self, name: str, digest: str, trust_on_first_use: bool) -> Drift | None:
        """Record a listed definition; return the drift if it differs from the pin."""
        with self._lock:
            pin = self._pins.get(name)
            if pin is None:
                if len(self._pins) >= self.max_tools:
                    return Drift(name, None, digest, "overflow")
                pin = self._pins[name] = Pin(digest if trust_on_first_use else None, "first_seen")
            pin.seen = digest
            return Drift(name, pin.pinned, digest, pin.source) if pin.drifted else None

    def flag(self, name: str, flagged: bool) -> None:
        """Record the injection scan's verdict on a tool's description."""
        with self._lock:
            if flagged:
                self._flags.add(name)
            else:
                self._flags.discard(name)

    def blocked_reason(self, name: str, *, drift: bool, flagged: bool, trust_on_first_use: bool) -> str | None:
        """Why a call to ``name`` is blocked, or None. ``drift``/``flagged``: whether
        drift and scan flags block (the policy's block modes). A tool never listed
        is not blocked by pinning, unless TOFU is off and it has no explicit pin."""
        if flagged and name in self._flags:
            return f"tool {name} description flagged by the injection scan"
        if not drift:
            return None
        pin = self._pins.get(name)
        if pin is None:
            return None if trust_on_first_use else f"tool {name} has no pinned definition"
        if pin.drifted:
            pinned, seen = (pin.pinned or "none")[:12], (pin.seen or "none")[:12]
            return f"tool {name} definition changed ({pin.source} pin {pinned}, seen {seen})"
        return None

    def get(self, name: str) -> Pin | None:
        return self._pins.get(name)
