"""Policy globs and literals translated to RE2 (Envoy's safe_regex) and Lua
patterns. A glob using character classes is refused (``NotNative``) rather
than approximated: fnmatch's ``[!x]`` has no safe one-to-one spelling."""

from __future__ import annotations

import re

from extproc.xds.plan import NotNative

_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")
_LUA_SPECIAL = re.compile(r"([\^$()%.\[\]*+\-?])")


def re2_literal(text: str) -> str:
    return _RE2_SPECIAL.sub(r"\\\1", text)


def glob_to_re2(pattern: str) -> str:
    """fnmatch semantics (``*`` crosses ``/``), whole-string."""
    if "[" in pattern:
        raise NotNative(f"glob {pattern!r} uses a character class")
    return "".join(".*" if c == "*" else "." if c == "?" else re2_literal(c) for c in pattern)


def globs_to_lua(patterns: list[str]) -> list[str]:
    out = []
    for pattern in patterns:
        if "[" in pattern:
            raise NotNative(f"glob {pattern!r} uses a character class")
        body = "".join(".*" if c == "*" else "." if c == "?" else _LUA_SPECIAL.sub(r"%\1", c) for c in pattern)
        out.append(f"^{body}$")
    return out
