"""Path normalization: authorize on the path the upstream will resolve.

Envoy normalizes too (``normalize_path``, ``merge_slashes``), but a policy must
not depend on every listener being configured right, so the processor applies
the same RFC 3986 rules before matching. Encoded slashes and backslashes are
decoded here (the stricter reading): ``/api%2Fadmin`` authorizes as
``/api/admin``.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus

_SUSPICIOUS = ("%", "//", "/.", "\\")


def normalize_path(path: str) -> str:
    if not path.startswith("/"):
        path = "/" + path
    # Fast path: almost every request path is already normal.
    if not any(s in path for s in _SUSPICIOUS):
        return path
    decoded = unquote(path, errors="surrogateescape").replace("\\", "/")
    segments: list[str] = []
    for segment in decoded.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalized = "/" + "/".join(segments)
    if decoded.endswith(("/", "/.", "/..")) and normalized != "/":
        normalized += "/"
    return normalized


def drop_query_params(query: str, names: frozenset[str] | set[str]) -> str:
    """``query`` without the parameters named ``names``, every other byte kept
    as it was (re-encoding could change what the upstream parses)."""
    kept = [part for part in query.split("&") if part and unquote_plus(part.partition("=")[0]) not in names]
    return "&".join(kept)
