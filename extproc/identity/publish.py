"""Trusted identity headers for the upstream.

Only the processor writes ``x-auth-*``: any copy a client sent is removed
before capabilities run (see ``strip_spoofable``), and the verified identity is
published after authentication succeeds.

Names are compared the way upstream stacks read them: CGI, WSGI and Rack turn
``x_auth_tenant`` and ``X-Auth-Tenant`` alike into ``HTTP_X_AUTH_TENANT``. So a
client header whose name has ``_`` is stripped whatever it spells (Envoy's
``headers_with_underscores_action: REJECT_REQUEST`` refuses it at the edge;
this covers a listener configured otherwise), as are routing-override headers
(``x-original-url``, ``x-http-method-override``…) that would make the upstream
serve something other than what was authorized.

Values are encoded so each one reads back to exactly one identity:

* a list (``x-auth-roles``, ``x-auth-methods``) is its items, sorted, joined
  with ``,``; each item is percent-encoded (RFC 3986, UTF-8) except
  ``A-Z a-z 0-9 - . _ ~ : / @ ! $ & ' * + =`` — so a role ``admin,ops`` is
  published as ``admin%2Cops`` and can never read as two roles;
* a single value (``x-auth-subject``…) is percent-encoded only where it holds
  ``%``, a control character or DEL, so a CR, LF or NUL is never published.

Ordinary values (``alice``, ``spiffe://example.org/ns/demo/sa/client``,
``reader``) are unchanged; an upstream reading unusual ones percent-decodes.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from extproc.context import Identity, RequestContext
from extproc.headers import ROUTING_OVERRIDE_HEADERS, fold_header_name

IDENTITY_HEADER_PREFIX = "x-auth-"
_LIST_ITEM_SAFE = "-._~:/@!$&'*+="
_SINGLE_VALUE_UNSAFE = frozenset([*map(chr, range(0x20)), "\x7f", "%"])


@lru_cache(maxsize=4096)  # a few dozen distinct names in practice; bounded against a hostile variety
def untrusted_client_header(name: str) -> bool:
    """A client-sent header the upstream must never see."""
    folded = fold_header_name(name)
    return folded != name or folded.startswith(IDENTITY_HEADER_PREFIX) or folded in ROUTING_OVERRIDE_HEADERS


def strip_spoofable(ctx: RequestContext) -> None:
    headers = ctx.request.headers
    spoofed = [name for name in headers if untrusted_client_header(name)]
    for name in spoofed:
        del headers[name]  # capabilities must not see them either
        ctx.request_headers_out.remove.append(name)


@lru_cache(maxsize=4096)  # role and method sets repeat across requests
def encode_list(items: frozenset[str]) -> str | None:
    return ",".join(quote(item, safe=_LIST_ITEM_SAFE) for item in sorted(items)) or None


def encode_single(value: str | None) -> str | None:
    if not value or _SINGLE_VALUE_UNSAFE.isdisjoint(value):
        return value
    return "".join(f"%{ord(c):02X}" if c in _SINGLE_VALUE_UNSAFE else c for c in value)


def publish(ctx: RequestContext, identity: Identity) -> None:
    ctx.identity = identity
    for name, value in (
        ("x-auth-subject", encode_single(identity.subject)),
        ("x-auth-issuer", encode_single(identity.issuer)),
        ("x-auth-tenant", encode_single(identity.tenant)),
        ("x-auth-roles", encode_list(identity.roles)),
        ("x-auth-principal", encode_single(identity.principal)),
        ("x-auth-agent", encode_single(identity.agent_id)),
        ("x-auth-methods", encode_list(identity.methods)),
    ):
        if value:
            ctx.set_request_header(name, value)
        elif not ctx.dry_run:
            # An identity published earlier on this request (an API key before
            # a JWT) must not leave its tenant or roles behind as if they were
            # this identity's: the upstream trusts these headers. Its `set`
            # also cancelled the removal of a client-sent copy: restore that.
            out = ctx.request_headers_out
            if out.set.pop(name, None) is not None and name not in out.remove:
                out.remove.append(name)
