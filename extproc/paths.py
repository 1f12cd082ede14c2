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
* ``path_too_long`` (414) — over ``MAX_PATH_LENGTH`` characters;
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
_ENVOY_ESCAPES = str.maketrans({c: f"%{ord(c):02X}" for c in '"<>`{}|^'})
_REFUSED_RAW = re.compile(r"[^\x21-\x7e]|[#;\\]")
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# What each allowed escape becomes: unreserved characters decoded, the rest
# kept with upper-case hex (a table: one dictionary lookup per escape).
_DECODED = {
    f"{hi}{lo}": chr(b) if chr(b) in _UNRESERVED else f"%{b:02X}"
    for b in range(0x20, 0x7F)
    for hi in {f"{b:02x}"[0], f"{b:02X}"[0]}
    for lo in {f"{b:02x}"[1], f"{b:02X}"[1]}
}
# Escapes of bytes that are refused (see _check_escaped): found in one scan.
_REFUSED_ESCAPE = re.compile(r"%(?:25|2[fF]|5[cC]|3[bB]|[01][0-9a-fA-F]|7[fF]|[89a-fA-F][0-9a-fA-F])")
# Far beyond any real path, and it bounds what one request can cost here.
MAX_PATH_LENGTH = 8192
# Escaped bytes that make a path ambiguous, and why.
_REFUSED_ESCAPES = {
    0x25: ("path_double_encoding", "%25: the upstream may decode it again"),
    0x2F: ("path_encoded_separator", "encoded slash"),
    0x5C: ("path_encoded_separator", "encoded backslash"),
    0x3B: ("path_parameter", "encoded ';' path parameter"),
}
# Characters that need no decoding or escaping. A path of only these, with no
# empty segment and no segment ending in `.` (so no `.`/`..` and no trailing
# dot), is already canonical: almost every real path takes that exit.
_PLAIN = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,:=@\[\]/]*").fullmatch


_EMPTY_SEGMENTS = re.compile(r"//+")


class AmbiguousPath(ValueError):
    """A path the processor refuses to authorize: ``code`` is the stable
    error code the client gets, ``reason`` the detail for the audit record."""

    def __init__(self, code: str, reason: str, status: int = 400):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status


def canonical_path(path: str) -> str:
    """The canonical form of ``path`` (no query); raises ``AmbiguousPath``."""
    if len(path) > MAX_PATH_LENGTH:
        raise AmbiguousPath("path_too_long", f"path longer than {MAX_PATH_LENGTH} characters", status=414)
    if _PLAIN(path) and "//" not in path and "./" not in path and not path.endswith("."):
        return path
    if not path.startswith("/"):
        raise AmbiguousPath("path_not_absolute", "path does not start with /")
    # Whole-string scans and a table, not a loop per character: with the
    # length bound, a hostile path costs at most a few milliseconds.
    refused = _REFUSED_RAW.search(path)
    if refused is not None:
        _check_raw(refused.group())
    if _MALFORMED_ESCAPE.search(path):
        raise AmbiguousPath("path_malformed_escape", "% not followed by two hex digits")
    refused = _REFUSED_ESCAPE.search(path)
    if refused is not None:
        _check_escaped(int(refused.group()[1:], 16))
    # Every `%` now starts a valid, allowed escape (checked above).
    head, *escaped = path.split("%")
    decoded = head + "".join([_DECODED[part[:2]] + part[2:] for part in escaped])
    return _resolve_segments(decoded.translate(_ENVOY_ESCAPES))


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
