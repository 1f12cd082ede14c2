"""The native gate's Lua source for one route: ``gate.GATE_LUA`` with the route's
compiled settings prepended as a Lua table literal."""

from __future__ import annotations

import math
from typing import Any

from extproc.xds.gate import GATE_LUA


def lua_literal(value: Any) -> str:
    """A Lua literal of a JSON-like value (dicts with string keys, lists,
    strings, finite numbers, bools, None)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")


def _lua_string(value: str) -> str:
    # Three-digit decimal escapes for everything but printable ASCII: no raw
    # control byte in the generated source, no quoting ambiguity.
    out = []
    for byte in value.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        out.append(char if 0x20 <= byte <= 0x7E and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def gate_source(stage: str, settings: dict[str, Any]) -> str:
    config = {"stage": stage, **settings}
    return f"local C = {lua_literal(config)}\n{GATE_LUA}"
