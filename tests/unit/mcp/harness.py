"""Drive a capability through the phases the ext_proc service runs, with a
real RequestContext and route, but no gRPC: what a unit test needs."""

from __future__ import annotations

import json
from typing import Any

from extproc.context import Deny, Identity, RequestContext
from tests import builders


def user(
    subject="alice", roles=(), agent_id=None, principal=None, scopes=(), methods=("jwt",), claims=None, delegation=()
) -> Identity:
    return builders.identity(
        subject,
        roles=roles,
        scopes=scopes,
        methods=methods,
        claims=claims,
        delegation=delegation,
        agent_id=agent_id,
        principal=principal,
    )


def context(
    cap,
    identity: Identity,
    method: str = "POST",
    path: str = "/mcp",
    headers: dict | None = None,
    route_name: str = "mcp",
) -> RequestContext:
    return builders.context(cap, method, path, headers, who=identity, route_name=route_name)


def body_of(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


async def request(cap, ctx: RequestContext, payload: Any = None) -> Deny | None:
    deny = await cap.on_request_headers(ctx)
    if deny is not None or payload is None:
        return deny
    ctx.request_body = body_of(payload)
    return await cap.on_request_body(ctx)


async def respond(
    cap,
    ctx: RequestContext,
    chunks: list[bytes],
    content_type: str = "application/json",
    status: int = 200,
    headers: dict | None = None,
) -> bytes:
    """What the client receives, chunk replacements applied."""
    ctx.response_status = status
    ctx.response_headers = {"content-type": content_type, **(headers or {})}
    deny = await cap.on_response_headers(ctx)
    assert deny is None, deny
    out = b""
    for n, chunk in enumerate(chunks):
        ctx.response_chunk, ctx.response_end, ctx.response_chunk_replaced = chunk, n == len(chunks) - 1, False
        deny = await cap.on_response_body(ctx)
        assert deny is None, deny
        out += ctx.response_chunk if ctx.response_chunk_replaced else chunk
    return out


def sse(*payloads: Any, eol: str = "\n") -> bytes:
    return "".join(f"event: message{eol}data: {json.dumps(p)}{eol}{eol}" for p in payloads).encode()


def sse_payloads(raw: bytes) -> list[Any]:
    out = []
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].strip() for line in block.split("\n") if line.startswith("data:"))
        if data.startswith(("{", "[")):  # JSON-RPC messages; not pings, priming events
            out.append(json.loads(data))
    return out


def deny_payload(deny: Deny) -> Any:
    assert deny is not None and deny.body is not None
    if deny.content_type == "text/event-stream":
        return sse_payloads(deny.body)
    return json.loads(deny.body)
