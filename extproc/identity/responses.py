"""The 401 every identity capability answers with (RFC 6750 challenge)."""

from __future__ import annotations

from extproc.context import Deny

REALM = 'Bearer realm="extproc"'


def unauthenticated(reason: str, error: str | None = "invalid_token") -> Deny:
    """``error=None`` for missing credentials: RFC 6750 says a request with no
    credentials gets a bare challenge, without an error code."""
    challenge = f'{REALM}, error="{error}"' if error else REALM
    return Deny(401, "unauthenticated", reason, headers=(("www-authenticate", challenge),))
