"""Signatures: what verifies, and every way a bundle is refused."""

from __future__ import annotations

import base64
import io
import json
import tarfile
from pathlib import Path

import pytest

from extproc.bundle.archive import BundleError, build_archive
from extproc.bundle.cache import open_signed
from extproc.bundle.signing import KeyRing, SignatureError, load_private_key, sign, verify
from tests.unit.bundle.conftest import ALLOW_A, KeyPair

FILES = {"a.yaml": ALLOW_A.encode()}


@pytest.fixture
def archive() -> bytes:
    return build_archive(FILES, "rev1", ["a"])


def _sign(archive: bytes, keys: KeyPair, revision: str = "rev1", signed_at: int = 1000) -> bytes:
    return sign(archive, revision, load_private_key(keys.private), signed_at=signed_at)


def test_a_signed_bundle_verifies(archive: bytes, keys: KeyPair) -> None:
    statement, bundle = open_signed(archive, _sign(archive, keys), KeyRing.from_files([keys.public]))
    assert (statement.revision, statement.signed_at, statement.kid) == ("rev1", 1000, keys.kid)
    assert bundle.files == FILES


def test_a_flipped_archive_byte_is_refused(archive: bytes, keys: KeyPair) -> None:
    signature = _sign(archive, keys)
    for position in (0, len(archive) // 2, len(archive) - 1):
        tampered = bytearray(archive)
        tampered[position] ^= 0x01
        with pytest.raises(SignatureError, match="not the one signed"):
            verify(bytes(tampered), signature, KeyRing.from_files([keys.public]))


def test_a_rewritten_manifest_is_refused(archive: bytes, keys: KeyPair) -> None:
    # Repack the same files with a manifest naming another revision: a
    # well-formed archive, but not the signed bytes.
    signature = _sign(archive, keys)
    with pytest.raises(SignatureError, match="not the one signed"):
        verify(build_archive(FILES, "rev2", ["a"]), signature, KeyRing.from_files([keys.public]))


def test_a_manifest_disagreeing_with_the_signed_revision_is_refused(keys: KeyPair) -> None:
    archive = build_archive(FILES, "rev1", ["a"])
    signature = _sign(archive, keys, revision="rev9")  # the signer vouches for another revision
    with pytest.raises(BundleError, match="not the signed one"):
        open_signed(archive, signature, KeyRing.from_files([keys.public]))


def test_a_statement_rewritten_under_the_old_signature_is_refused(archive: bytes, keys: KeyPair) -> None:
    header, payload, signature = _sign(archive, keys).decode().strip().split(".")
    statement = json.loads(base64.urlsafe_b64decode(payload + "=="))
    statement["sha256"] = "0" * 64
    forged = base64.urlsafe_b64encode(json.dumps(statement).encode()).decode().rstrip("=")
    with pytest.raises(SignatureError, match="does not verify"):
        verify(archive, f"{header}.{forged}.{signature}".encode(), KeyRing.from_files([keys.public]))


def test_another_key_is_refused(archive: bytes, keys: KeyPair, other_keys: KeyPair) -> None:
    with pytest.raises(SignatureError, match="not a trusted key"):
        verify(archive, _sign(archive, other_keys), KeyRing.from_files([keys.public]))


def test_another_key_claiming_a_trusted_kid_is_refused(archive: bytes, keys: KeyPair, other_keys: KeyPair) -> None:
    header, payload, signature = _sign(archive, other_keys).decode().strip().split(".")
    claimed = json.loads(base64.urlsafe_b64decode(header + "=="))
    claimed["kid"] = keys.kid
    header = base64.urlsafe_b64encode(json.dumps(claimed).encode()).decode().rstrip("=")
    with pytest.raises(SignatureError, match="does not verify"):
        verify(archive, f"{header}.{payload}.{signature}".encode(), KeyRing.from_files([keys.public]))


@pytest.mark.parametrize(
    ("signature", "expected"),
    [(b"", "unsigned"), (b"\n", "unsigned"), (b"not a jws", "not a JWS"), (b"x" * 9000, "too large")],
)
def test_unsigned_or_garbage_is_refused(archive: bytes, keys: KeyPair, signature: bytes, expected: str) -> None:
    with pytest.raises(SignatureError, match=expected):
        verify(archive, signature, KeyRing.from_files([keys.public]))


def test_a_non_eddsa_jws_is_refused(archive: bytes, keys: KeyPair) -> None:
    import jwt

    token = jwt.api_jws.PyJWS().encode(b"{}", "s" * 32, algorithm="HS256", headers={"kid": keys.kid})
    with pytest.raises(SignatureError, match="malformed"):
        verify(archive, token.encode(), KeyRing.from_files([keys.public]))


def test_key_rotation_trusts_old_and_new(archive: bytes, keys: KeyPair, other_keys: KeyPair) -> None:
    ring = KeyRing.from_files([keys.public, other_keys.public])
    assert verify(archive, _sign(archive, keys), ring).kid == keys.kid
    assert verify(archive, _sign(archive, other_keys), ring).kid == other_keys.kid


def test_key_files_are_checked(tmp_path: Path, keys: KeyPair) -> None:
    with pytest.raises(SignatureError, match="not a PEM public key"):
        KeyRing.from_files([keys.private])
    with pytest.raises(SignatureError, match="not an unencrypted PEM private key"):
        load_private_key(keys.public)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "ec.pub").write_bytes(
        ec_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SignatureError, match="not an Ed25519 public key"):
        KeyRing.from_files([tmp_path / "ec.pub"])


def test_verification_happens_before_the_archive_is_parsed(keys: KeyPair) -> None:
    # A hostile archive (a link out of the tree) that nobody signed never
    # reaches the tar reader: the signature check refuses it first.
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        link = tarfile.TarInfo("manifest.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(SignatureError, match="unsigned"):
        open_signed(out.getvalue(), b"", KeyRing.from_files([keys.public]))
