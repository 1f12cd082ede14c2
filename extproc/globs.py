"""Pattern helpers: glob lists compiled once into one regex; regex validation
for policy schemas."""

from __future__ import annotations

import fnmatch
import re


def compile_globs(patterns: list[str]) -> re.Pattern[str] | None:
    """One regex for a list of globs (``*`` also crosses ``/``); None for an
    empty list, which callers read as "any"."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def compile_glob(pattern: str) -> re.Pattern[str]:
    """One glob (``*`` also crosses ``/``) as a regex."""
    return re.compile(fnmatch.translate(pattern))


def validate_regex(value: str | None) -> str | None:
    """Pydantic validator: the value compiles as a Python regex (or is None)."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
    return value
