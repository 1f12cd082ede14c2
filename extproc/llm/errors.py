"""Refusals in each LLM API's own error shape, so unchanged SDKs raise their
usual exception types (``openai.BadRequestError``, ``anthropic.PermissionDeniedError``...)."""

from __future__ import annotations

import json

from extproc.context import Deny

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def llm_error(
    api: str, status: int, error_type: str, message: str, reason: str | None = None, code: str | None = None
) -> Deny:
    """``message`` goes to the client (keep it generic); ``reason`` only to the audit record."""
    if api.startswith("anthropic"):
        payload = {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message}}
    else:
        payload = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return Deny(
        status,
        code or error_type,
        reason or message,
        message=message,
        body=json.dumps(payload, separators=(",", ":")).encode(),
    )
