"""Trusted identity headers for the upstream.

Only the processor writes ``x-auth-*``: any copy a client sent is removed
before capabilities run (see ``strip_spoofable``), and the verified identity is
published after authentication succeeds.
"""

from __future__ import annotations

from extproc.context import Identity, RequestContext

IDENTITY_HEADER_PREFIX = "x-auth-"


def strip_spoofable(ctx: RequestContext) -> None:
    headers = ctx.request.headers
    spoofed = [name for name in headers if name.startswith(IDENTITY_HEADER_PREFIX)]
    for name in spoofed:
        del headers[name]  # capabilities must not see them either
        ctx.request_headers_out.remove.append(name)


def publish(ctx: RequestContext, identity: Identity) -> None:
    ctx.identity = identity
    for name, value in (
        ("x-auth-subject", identity.subject),
        ("x-auth-issuer", identity.issuer),
        ("x-auth-tenant", identity.tenant),
        ("x-auth-roles", ",".join(sorted(identity.roles)) or None),
        ("x-auth-principal", identity.principal),
        ("x-auth-agent", identity.agent_id),
        ("x-auth-methods", ",".join(sorted(identity.methods)) or None),
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
