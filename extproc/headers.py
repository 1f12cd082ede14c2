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


def validate_header_name(value: str) -> str:
    name = value.strip().lower()
    if not _TOKEN.match(name):
        raise ValueError(f"invalid header name {value!r}")
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
