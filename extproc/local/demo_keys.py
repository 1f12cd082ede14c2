"""The demo signing key that `extproc token` signs with and the demo policy
trusts (policies/keys/demo-jwks.json). DEMO ONLY: it is public in this
repository, so anyone can mint tokens it verifies. Production policies point
`jwt` at their identity provider's JWKS or OIDC discovery URL instead."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from jwt.algorithms import AllowedPrivateKeys

KEY_PATH = Path(__file__).with_name("demo_signing_key.pem")
DEMO_ISSUER = "https://demo.extproc.local"
DEMO_AUDIENCE = "extproc-demo"
DEMO_KID = "demo-1"


def generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: AllowedPrivateKeys) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def jwks_for(public_keys: dict[str, rsa.RSAPublicKey]) -> dict[str, Any]:
    keys = []
    for kid, public_key in public_keys.items():
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
        jwk.update(kid=kid, use="sig", alg="RS256")
        keys.append(jwk)
    return {"keys": keys}


def load_demo_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(KEY_PATH.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{KEY_PATH} is not an RSA key")
    return key


def mint(
    private_key: AllowedPrivateKeys,
    *,
    sub: str,
    roles: Sequence[str] = (),
    tenant: str | None = None,
    ttl: int = 3600,
    issuer: str = DEMO_ISSUER,
    audience: str | None = DEMO_AUDIENCE,
    kid: str = DEMO_KID,
    extra: dict[str, Any] | None = None,
    algorithm: str = "RS256",
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "sub": sub, "iat": now, "nbf": now, "exp": now + ttl}
    if audience:
        claims["aud"] = audience
    if roles:
        claims["roles"] = list(roles)
    if tenant:
        claims["tenant"] = tenant
    claims.update(extra or {})
    return jwt.encode(claims, private_key, algorithm=algorithm, headers={"kid": kid})
