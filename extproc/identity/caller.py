"""The caller as audit records and log lines name it: identifiers, never
credentials or claims."""

from __future__ import annotations

from typing import Any

from extproc.context import Identity

__all__ = ["caller", "caller_label"]


def caller(identity: Identity) -> dict[str, Any]:
    """The caller as audit records carry it: identifiers, never credentials."""
    out: dict[str, Any] = {}
    for name in ("subject", "agent_id", "principal", "issuer", "tenant", "api_key_id"):
        value = getattr(identity, name)
        if value:
            out[name] = value
    if identity.delegation:
        out["delegation"] = list(identity.delegation)
    if identity.methods:
        out["methods"] = sorted(identity.methods)
    return out


def caller_label(identity: Identity) -> str:
    """A short one-line form for log lines and deny reasons."""
    if not identity.authenticated:
        return "anonymous"
    parts = [f"sub={identity.subject}"] if identity.subject else []
    if identity.agent_id:
        parts.append(f"agent={identity.agent_id}")
    if identity.principal:
        parts.append(f"peer={identity.principal}")
    if identity.delegation:
        parts.append("act=" + ">".join(identity.delegation))
    return " ".join(parts) or "authenticated"
