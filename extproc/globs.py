"""Glob lists compiled once into a single regex."""

from __future__ import annotations

import fnmatch
import re


def compile_globs(patterns: list[str]) -> re.Pattern | None:
    """One regex for a list of globs (``*`` also crosses ``/``); None for an
    empty list, which callers read as "any"."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
