"""One strict JSON reader for everything a client sends (LLM APIs, MCP, A2A).

The gateway and the upstream must read the *same* document, or a policy
judges one thing while the upstream executes another; and what the gateway
cannot re-encode it cannot rewrite. So anything parsers disagree on, or that
would blow up later, is refused here, as a ``StrictJsonError`` (a
``ValueError``) with a message safe to show the client:

* invalid UTF-8;
* duplicate object keys (parsers keep the first, the last, or fail);
* ``NaN``/``Infinity`` (not JSON), and numbers that overflow to infinity;
* integers longer than Python's int-conversion limit (4300 digits);
* lone UTF-16 surrogate escapes (``"\\ud800"``): not Unicode, cannot be
  encoded back to UTF-8;
* nesting deeper than ``MAX_DEPTH`` (or deep enough to exhaust the stack).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

MAX_DEPTH = 128

# A surrogate escape in the raw text: only then can a decoded string hold a
# lone surrogate, so the (rare) full check runs only when this matches.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class StrictJsonError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJsonError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise StrictJsonError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    # 1e999 parses as inf, which re-serializes as ``Infinity``: not JSON.
    value = float(literal)
    if math.isinf(value):
        raise StrictJsonError("a number overflows to infinity")
    return value


def _strings(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from item.keys()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def loads_strict(raw: bytes | str, max_depth: int | None = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses what parsers disagree on (see the module
    docstring). Raises ``StrictJsonError`` (a ``ValueError``) only.
    ``max_depth=None``: the caller walks the value and bounds depth itself."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("the body is not valid UTF-8") from None
    try:
        value = json.loads(
            raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
        )
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError("the body is nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, and the int-conversion limit (its message would
        # only tell the client about Python).
        detail = "the body is not valid JSON" if isinstance(exc, json.JSONDecodeError) else "a number is too long"
        raise StrictJsonError(detail) from None
    # Counting brackets runs at C speed; only a body with enough of them
    # to be too deep is walked.
    if max_depth is not None and raw.count("[") + raw.count("{") > max_depth and _deeper_than(value, max_depth):
        raise StrictJsonError("the body is nested too deeply")
    if _SURROGATE_ESCAPE.search(raw):
        for text in _strings(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise StrictJsonError("the body holds an invalid unicode escape") from None
    return value
