"""The processor's refusal shape for Envoy's own refusals (RBAC, jwt_authn,
local_ratelimit): local_reply_config mappers keyed on the reply's response
code details, rewriting status, body and headers to what
``extproc.pipeline.error_body`` and ``extproc.identity.responses`` produce.
The decision id is the request's x-request-id. Replies the gate sends
itself (Lua ``respond``) already have that shape and match no mapper."""

from __future__ import annotations

from typing import Any

from extproc.identity.responses import REALM

DECISION_HEADER = "x-decision-id"
_REQUEST_ID = "%REQ(X-REQUEST-ID)%"


def _cel(expression: str) -> dict[str, Any]:
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression,
            },
        }
    }


def _body(code: str, message: str) -> dict[str, Any]:
    text = f'{{"error":{{"code":"{code}","message":"{message}","decision_id":"{_REQUEST_ID}"}}}}'
    return {"text_format_source": {"inline_string": text}, "content_type": "application/json"}


def _header(name: str, value: str) -> dict[str, Any]:
    return {"header": {"key": name, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _mapper(expression: str, status: int, code: str, message: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "filter": _cel(expression),
        "status_code": status,
        "headers_to_add": [_header(DECISION_HEADER, _REQUEST_ID), *(_header(k, v) for k, v in headers)],
        "body_format_override": _body(code, message),
    }


_DETAILS = "response.code_details"
_ANONYMOUS = "!('x-auth-methods' in request.headers)"


def local_reply_config() -> dict[str, Any]:
    return {
        "mappers": [
            # jwt_authn: no token → a bare challenge (RFC 6750); any other failure → invalid_token.
            _mapper(
                f"{_DETAILS}.startsWith('jwt_authn_access_denied{{Jwt_is_missing')",
                401,
                "unauthenticated",
                "authentication required",
                ("www-authenticate", REALM),
            ),
            _mapper(
                f"{_DETAILS}.startsWith('jwt_authn_access_denied')",
                401,
                "unauthenticated",
                "authentication required",
                ("www-authenticate", f'{REALM}, error="invalid_token"'),
            ),
            # RBAC's ALLOW filter matched no rule: an anonymous caller is asked to authenticate.
            _mapper(
                f"{_DETAILS} == 'rbac_access_denied_matched_policy[none]' && {_ANONYMOUS}",
                401,
                "unauthenticated",
                "authentication required",
                ("www-authenticate", REALM),
            ),
            _mapper(f"{_DETAILS}.startsWith('rbac_access_denied')", 403, "forbidden", "access denied"),
            _mapper(f"{_DETAILS} == 'local_rate_limited'", 429, "rate_limited", "too many requests"),
            # Envoy's own 503/504s tell clients when to come back (as envoy/gateway.yaml).
            {
                "filter": {
                    "and_filter": {
                        "filters": [
                            {
                                "status_code_filter": {
                                    "comparison": {
                                        "op": "GE",
                                        "value": {
                                            "default_value": 503,
                                            "runtime_key": "gateway.retry_after.min_status",
                                        },
                                    }
                                }
                            },
                            {
                                "status_code_filter": {
                                    "comparison": {
                                        "op": "LE",
                                        "value": {
                                            "default_value": 504,
                                            "runtime_key": "gateway.retry_after.max_status",
                                        },
                                    }
                                }
                            },
                        ]
                    }
                },
                "headers_to_add": [{"header": {"key": "retry-after", "value": "1"}, "append_action": "ADD_IF_ABSENT"}],
            },
        ]
    }
