"""Durations as policies write them: ``500ms``, ``10s``, ``1m``, ``1h``, ``1d``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration(text: str | int | float, *, minimum: float = 0.0) -> float:
    """Seconds in ``text``. A bare number is seconds. Raises ``ValueError``
    with a message fit for a policy error."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(text)
        if match is None:
            raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 10s, 1m, 1h, 1d)")
        seconds = float(match[1]) * _UNITS[match[2]]
    if seconds <= 0 or seconds < minimum:
        raise ValueError(
            f"duration {text!r} must be at least {minimum:g}s" if minimum else f"duration {text!r} must be positive"
        )
    return seconds
