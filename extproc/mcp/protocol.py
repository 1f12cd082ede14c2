"""MCP methods as the gateway sees them: which name a request targets, which
list a response carries.

Covers both eras the SDKs speak: the initialize handshake with sessions
(2024-11-05 … 2025-11-25; ``Mcp-Session-Id``) and the stateless per-request
envelope of 2026-07-28 (``server/discover``, ``_meta`` protocol fields,
``Mcp-Method``/``Mcp-Name`` routing headers mirroring the body). The body is
what the gateway authorizes; the server itself refuses a request whose
routing headers disagree with its body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extproc.jsonrpc.wire import INVALID_PARAMS, Message
from extproc.mcp.policy import NOT_GIVEN

# Requests that name one tool / resource / prompt, and where the name is.
TARGETED = {
    "tools/call": ("tool", "name"),
    "prompts/get": ("prompt", "name"),
    "resources/read": ("resource", "uri"),
    "resources/subscribe": ("resource", "uri"),
    "resources/unsubscribe": ("resource", "uri"),
}

# List results the gateway filters: method → (kind, result key, name field).
LISTS = {
    "tools/list": ("tool", "tools", "name"),
    "resources/list": ("resource", "resources", "uri"),
    "resources/templates/list": ("resource", "resourceTemplates", "uriTemplate"),
    "prompts/list": ("prompt", "prompts", "name"),
}

# Methods with nothing to authorize beyond the caller's identity.
PASS = frozenset(
    {
        "initialize",
        "ping",
        "server/discover",
        "logging/setLevel",
        "subscriptions/listen",
        "tasks/get",
        "tasks/result",
        "tasks/list",
        "tasks/cancel",
    }
)


def is_notification(method: str) -> bool:
    return method.startswith("notifications/")


@dataclass(slots=True)
class Target:
    kind: str
    name: str
    arguments: Any  # a dict, or NOT_GIVEN for name-only questions


class ParamsError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.code = INVALID_PARAMS
        self.message = message


def target_of(message: Message) -> Target | None:
    """What a request targets, or None for methods that target nothing.
    Raises ParamsError when the params cannot be governed."""
    method, params = message.method, message.params
    if method == "completion/complete":
        # Completing a prompt's or a resource template's argument reveals them:
        # authorized like using them, by name only.
        ref = params.get("ref") if isinstance(params, dict) else None
        if not isinstance(ref, dict):
            raise ParamsError("completion/complete needs params.ref")
        if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
            return Target("prompt", ref["name"], NOT_GIVEN)
        if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
            return Target("resource", ref["uri"], NOT_GIVEN)
        raise ParamsError("completion/complete ref must be ref/prompt with a name or ref/resource with a uri")
    spec = TARGETED.get(method) if method is not None else None
    if spec is None:
        return None
    kind, field = spec
    if not isinstance(params, dict):
        raise ParamsError(f"{method} needs params as an object")
    name = params.get(field)
    if not isinstance(name, str) or not name:
        raise ParamsError(f"{method} needs params.{field} as a non-empty string")
    if kind == "resource":
        return Target(kind, name, NOT_GIVEN)
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ParamsError(f"{method} params.arguments must be an object")
    return Target(kind, name, arguments)
