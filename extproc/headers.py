"""HTTP header helpers shared by the servicers and capabilities."""

from __future__ import annotations

import re

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def validate_methods(value: list[str]) -> list[str]:
    upper = [m.upper() for m in value]
    unknown = sorted(set(upper) - HTTP_METHODS)
    if unknown:
        raise ValueError(f"unknown HTTP method(s): {', '.join(unknown)}")
    return upper


# RFC 9110 token characters, lower case: Envoy lower-cases header names, so a
# policy that names ``X-Foo`` would never match; we lower-case at load instead.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
# Headers a processor may not (Envoy ignores it) or must not (it would reroute
# or forge the request) mutate.
PROTECTED = frozenset({"host", ":authority", ":method", ":path", ":scheme", ":status", "content-length"})


# Headers that tell some upstream framework to route or dispatch the request
# as something other than what was authorized (IIS/Symfony/Laravel/Rails/
# Express/Spring/Traefik/nginx conventions). A client's copy never reaches
# the upstream.
ROUTING_OVERRIDE_HEADERS = frozenset(
    {
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "x-override-url",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-forwarded-prefix",
        "x-original-method",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
    }
)


def fold_header_name(name: str) -> str:
    """The name CGI, WSGI and Rack stacks read: ``X_Auth_Tenant`` and
    ``x-auth-tenant`` both become ``HTTP_X_AUTH_TENANT``, so compare on this."""
    return name.lower().replace("_", "-")


def validate_header_name(value: str) -> str:
    name = value.strip().lower()
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {value!r}")
    if "_" in name:
        # The edge rejects such requests (headers_with_underscores_action) and
        # the processor strips such headers: a rule naming one would never apply.
        raise ValueError(f"header name {value!r} has '_': such headers never reach a policy; use '-'")
    return name


def validate_mutable_header_name(value: str) -> str:
    name = validate_header_name(value)
    if name in PROTECTED or name.startswith("x-envoy-"):
        raise ValueError(f"header {name!r} cannot be changed by the processor")
    return name


def decode_header_value(raw: bytes) -> str:
    # surrogateescape keeps arbitrary (non-UTF-8) bytes round-trippable, so a
    # malformed value is compared and forwarded as the exact bytes it was.
    return raw.decode("utf-8", "surrogateescape")


def encode_header_value(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


def content_encoding(headers: dict[str, str]) -> str:
    """The body's content coding, lower-cased; "" for an unencoded body
    (no header, or ``identity``)."""
    encoding = headers.get("content-encoding", "").strip().lower()
    return "" if encoding == "identity" else encoding
