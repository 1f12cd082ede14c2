"""OIDC discovery resolved by the control plane: Envoy's jwt_authn needs the
JWKS URL itself, so the compiler reads the discovery document (with the
processor's checks: the issuer it names must be the trusted one, the
jwks_uri an http(s) URL) and remembers it for the issuer's refresh interval.
A document that cannot be read leaves the route in the processor."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

from extproc.identity.jwks import MAX_JWKS_BYTES
from extproc.xds.plan import NotNative

TIMEOUT = 3.0
_resolved: dict[tuple[str, str], tuple[str, float]] = {}  # (document URL, issuer) -> (jwks_uri, expiry)


def jwks_uri(document_url: str, issuer: str, ttl: float) -> str:
    key = (document_url, issuer)
    cached = _resolved.get(key)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    try:
        document = _get_json(document_url)
    except (OSError, ValueError) as exc:
        raise NotNative(f"OIDC discovery {document_url} unreadable ({exc})") from None
    uri = document.get("jwks_uri")
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
        raise NotNative(f"OIDC discovery {document_url}: no http(s) jwks_uri")
    if document.get("issuer") != issuer:
        raise NotNative(f"OIDC discovery {document_url}: issuer {document.get('issuer')!r} is not {issuer!r}")
    _resolved[key] = (uri, now + ttl)
    return uri


def _get_json(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"accept": "application/json", "user-agent": "extproc-xds"})
    # The policy schema admits https URLs only (http for a loopback host).
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("document too large")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document
