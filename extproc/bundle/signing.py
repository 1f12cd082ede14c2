"""Bundle signatures: a compact JWS (EdDSA over Ed25519) in ``FILE.sig``.

The signed payload is a statement about the archive's bytes::

    {"typ": "extproc-policy-bundle-signature/1", "sha256": "<archive digest>",
     "size": <archive bytes>, "revision": "<manifest revision>", "signed_at": <unix seconds>}

So verification needs nothing from the archive but its digest: a follower
checks the signature before it parses a single byte of the archive. The
header's ``kid`` (the first 16 hex digits of the SHA-256 of the raw public
key) picks the verifying key among the trusted ones, which is what lets a
fleet trust an old and a new key at once while keys rotate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.api_jws import PyJWS
from jwt.exceptions import DecodeError, InvalidSignatureError, InvalidTokenError

STATEMENT_TYPE = "extproc-policy-bundle-signature/1"
ALGORITHM = "EdDSA"
_MAX_SIGNATURE_BYTES = 8192
_JWS = PyJWS(algorithms=[ALGORITHM])


class SignatureError(Exception):
    """A bundle whose signature does not hold; the message is one line and
    carries no key material."""


@dataclass(frozen=True, slots=True)
class Statement:
    """What a verified signature vouches for."""

    sha256: str
    size: int
    revision: str
    signed_at: int
    kid: str


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key_pair() -> tuple[bytes, bytes, str]:
    """A new key: (private PEM, public PEM, key id)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem, key_id(private.public_key())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        # The library's message never quotes the key; still, keep it short.
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


class KeyRing:
    """The public keys a follower trusts, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]):
        self.keys = {key_id(k): k for k in keys}
        if not self.keys:
            raise SignatureError("no trusted public key")

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> KeyRing:
        keys = []
        for path in paths:
            try:
                key = serialization.load_pem_public_key(Path(path).read_bytes())
            except ValueError:
                raise SignatureError(f"{path}: not a PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise SignatureError(f"{path}: not an Ed25519 public key")
            keys.append(key)
        return cls(keys)


def sign(archive: bytes, revision: str, key: Ed25519PrivateKey, signed_at: int | None = None) -> bytes:
    """The ``.sig`` file's content for ``archive``."""
    payload = {
        "typ": STATEMENT_TYPE,
        "sha256": hashlib.sha256(archive).hexdigest(),
        "size": len(archive),
        "revision": revision,
        "signed_at": int(time.time()) if signed_at is None else signed_at,
    }
    token = _JWS.encode(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode(),
        key,
        algorithm=ALGORITHM,
        headers={"kid": key_id(key.public_key()), "typ": "JOSE"},
    )
    return token.encode() + b"\n"


def verify(archive: bytes, signature: bytes, keys: KeyRing) -> Statement:
    """The statement ``signature`` makes about ``archive``, if a trusted key
    made it and it matches these bytes; else ``SignatureError``."""
    if not signature.strip():
        raise SignatureError("unsigned: the signature is empty")
    if len(signature) > _MAX_SIGNATURE_BYTES:
        raise SignatureError("the signature file is too large to be one")
    token = signature.strip()
    try:
        header = _JWS.get_unverified_header(token)
    except InvalidTokenError:
        raise SignatureError("the signature is not a JWS") from None
    kid = header.get("kid")
    key = keys.keys.get(kid) if isinstance(kid, str) else None
    if key is None or not isinstance(kid, str):
        raise SignatureError(f"signed by key {str(kid)[:32]!r}, which is not a trusted key")
    try:
        decoded = _JWS.decode_complete(token, key, algorithms=[ALGORITHM])
    except InvalidSignatureError:
        raise SignatureError(f"the signature does not verify with trusted key {kid}") from None
    except (DecodeError, InvalidTokenError) as exc:
        raise SignatureError(f"the signature is malformed: {exc}") from None
    statement = _statement(decoded["payload"], kid)
    if statement.size != len(archive) or statement.sha256 != hashlib.sha256(archive).hexdigest():
        raise SignatureError(
            f"the archive is not the one signed (digest mismatch; signed revision {statement.revision})"
        )
    return statement


def _statement(payload: bytes, kid: str) -> Statement:
    try:
        document: Any = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SignatureError("the signed statement is not JSON") from None
    if not isinstance(document, dict) or document.get("typ") != STATEMENT_TYPE:
        raise SignatureError(f"the signed statement is not an {STATEMENT_TYPE}")
    sha256, size, revision, signed_at = (document.get(k) for k in ("sha256", "size", "revision", "signed_at"))
    if not (
        isinstance(sha256, str)
        and isinstance(revision, str)
        and isinstance(size, int)
        and isinstance(signed_at, int)
        and not isinstance(size, bool)
        and not isinstance(signed_at, bool)
    ):
        raise SignatureError("the signed statement is malformed")
    return Statement(sha256, size, revision, signed_at, kid)
