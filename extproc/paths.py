"""Path canonicalization: authorize on the one path every hop agrees on.

A policy rule is only as good as the path it compares. Envoy, the processor
and the upstream each read a request path; any byte sequence they could read
differently (an upstream that decodes twice, drops ``;`` parameters, strips a
trailing dot like Windows, folds fullwidth letters, treats ``\\`` as ``/``)
lets a request pass a rule written for the path it will really reach. So the
processor computes one canonical form and refuses (400) every path whose
meaning depends on who reads it, instead of guessing.

The canonical form (what routes, RBAC and every capability match on) is what
Envoy's ``normalize_path`` + ``merge_slashes`` produce, with escapes spelled
one way:

* absolute (starts with ``/``), the query split off by the caller;
* percent-escapes of unreserved characters (``A-Z a-z 0-9 - . _ ~``) decoded,
  every other escape kept with upper-case hex (``%3f`` → ``%3F``);
* ``" < > ` { } | ^`` escaped, as Envoy escapes them;
* ``.`` and ``..`` segments resolved (RFC 3986 §5.2.4, never above ``/``),
  then empty segments merged (Envoy's order), a trailing ``/`` kept.

Refused, each with its own code (the 400's ``error.code``):

* ``path_not_absolute`` — no leading ``/``;
* ``path_control_char`` — a control character or NUL, raw or escaped;
* ``path_invalid_char`` — a raw space or ``#``;
* ``path_non_ascii`` — any non-ASCII character, raw or escaped (fullwidth
  ``ａdmin`` folds to ``admin`` in some stacks and not in others);
* ``path_parameter`` — ``;``, raw or escaped (``/admin;/users`` is
  ``/admin/users`` to Tomcat/Spring, ``/admin;`` to others);
* ``path_double_encoding`` — ``%25`` (``%2561`` is ``a`` to an upstream that
  decodes again);
* ``path_encoded_separator`` — ``%2F`` / ``%5C``: Envoy's
  ``UNESCAPE_AND_REDIRECT`` redirects these before the processor sees them,
  so one arriving here means the edge is configured differently: refuse;
* ``path_backslash`` — a raw ``\\`` (a separator on Windows stacks only);
* ``path_malformed_escape`` — ``%`` not followed by two hex digits;
* ``path_trailing_dot`` — a segment ending in ``.`` other than ``.``/``..``
  (``/admin./users``: Windows and some routers drop the dot);
* ``path_ambiguous_dot_segment`` — ``..`` right after an empty segment
  (``/a//../b`` is ``/a/b`` to RFC 3986 and Envoy, ``/b`` to an upstream that
  merges slashes first).

Case is kept: a route whose match says ``case_insensitive: true`` compares the
case-folded path instead (see ``extproc.policy.model``).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_plus

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Printable ASCII Envoy forwards escaped (it rejects a raw space and `#`).
_ESCAPED_BY_ENVOY = frozenset('"<>`{}|^')
_HEX = frozenset("0123456789abcdefABCDEF")
# Escaped bytes that make a path ambiguous, and why.
_REFUSED_ESCAPES = {
    0x25: ("path_double_encoding", "%25: the upstream may decode it again"),
    0x2F: ("path_encoded_separator", "encoded slash"),
    0x5C: ("path_encoded_separator", "encoded backslash"),
    0x3B: ("path_parameter", "encoded ';' path parameter"),
}
# Already canonical: `/`-separated non-empty segments of characters that need
# no decoding or escaping, none ending in `.` (so no `.`/`..` segments and no
# trailing dots). Almost every real path takes this exit.
_CANONICAL = re.compile(r"(?:/[A-Za-z0-9\-._~!$&'()*+,:=@\[\]]*[A-Za-z0-9\-_~!$&'()*+,:=@\[\]])*/?")


_EMPTY_SEGMENTS = re.compile(r"//+")


class AmbiguousPath(ValueError):
    """A path the processor refuses to authorize: ``code`` is the stable
    error code the client gets, ``reason`` the detail for the audit record."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def canonical_path(path: str) -> str:
    """The canonical form of ``path`` (no query); raises ``AmbiguousPath``."""
    if _CANONICAL.fullmatch(path) and path:
        return path
    if not path.startswith("/"):
        raise AmbiguousPath("path_not_absolute", "path does not start with /")
    out: list[str] = []
    i, n = 0, len(path)
    while i < n:
        char = path[i]
        if char == "%":
            digits = path[i + 1:i + 3]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise AmbiguousPath("path_malformed_escape", "% not followed by two hex digits")
            byte = int(digits, 16)
            _check_escaped(byte)
            out.append(chr(byte) if chr(byte) in _UNRESERVED else "%" + digits.upper())
            i += 3
            continue
        _check_raw(char)
        out.append(f"%{ord(char):02X}" if char in _ESCAPED_BY_ENVOY else char)
        i += 1
    return _resolve_segments("".join(out))


def _check_escaped(byte: int) -> None:
    refused = _REFUSED_ESCAPES.get(byte)
    if refused is not None:
        raise AmbiguousPath(*refused)
    if byte < 0x20 or byte == 0x7F:
        raise AmbiguousPath("path_control_char", "escaped control character")
    if byte >= 0x80:
        raise AmbiguousPath("path_non_ascii", "escaped non-ASCII byte")


def _check_raw(char: str) -> None:
    if char < " " or char == "\x7f":
        raise AmbiguousPath("path_control_char", "control character")
    if char > "\x7f":
        raise AmbiguousPath("path_non_ascii", "non-ASCII character")
    if char in " #":
        raise AmbiguousPath("path_invalid_char", f"raw {char!r} in path")
    if char == ";":
        raise AmbiguousPath("path_parameter", "';' path parameter")
    if char == "\\":
        raise AmbiguousPath("path_backslash", "backslash in path")


def _resolve_segments(path: str) -> str:
    # RFC 3986 §5.2.4 first, then empty segments merged: Envoy's order
    # (normalize_path, then merge_slashes). `..` after an empty segment
    # (`/a//../b`) is refused: it is /a/b that way and /b to an upstream that
    # merges first.
    parts = path.split("/")[1:]
    kept: list[str] = []
    last = len(parts) - 1
    for i, segment in enumerate(parts):
        if segment == "." or segment == "..":
            if segment == ".." and kept and kept.pop() == "":
                raise AmbiguousPath("path_ambiguous_dot_segment", "'..' after an empty segment")
            if i == last:
                kept.append("")  # `/a/.` and `/a/b/..` keep their trailing slash
            continue
        if segment.endswith("."):
            raise AmbiguousPath("path_trailing_dot", "path segment ends with '.'")
        kept.append(segment)
    return _EMPTY_SEGMENTS.sub("/", "/" + "/".join(kept))


def require_canonical_path(pattern: str) -> str:
    """Policy validator: a path (or path prefix) a request's canonical path can
    equal. ``/api/%61dmin`` or ``/api/admin;x`` could never match: say so at
    load time rather than let the rule silently not apply."""
    probe = pattern + "x" if pattern.endswith(".") else pattern  # a prefix may end mid-segment
    try:
        canonical = canonical_path(probe)
    except AmbiguousPath as exc:
        raise ValueError(f"{pattern!r} is a path every request is refused for ({exc.code})") from None
    if canonical != probe:
        suggestion = canonical[:-1] if probe != pattern else canonical
        raise ValueError(f"{pattern!r} is not in canonical form (see extproc.paths): write {suggestion!r}")
    return pattern


def printable_path(path: str) -> str:
    """``path`` safe to log or audit when it was refused: anything outside
    printable ASCII escaped, so a refused path cannot forge log lines."""
    return quote(path, safe="".join(chr(c) for c in range(0x21, 0x7F)), errors="surrogateescape")


def drop_query_params(query: str, names: frozenset[str] | set[str]) -> str:
    """``query`` without the parameters named ``names``, every other byte kept
    as it was (re-encoding could change what the upstream parses)."""
    kept = [part for part in query.split("&") if part and unquote_plus(part.partition("=")[0]) not in names]
    return "&".join(kept)
