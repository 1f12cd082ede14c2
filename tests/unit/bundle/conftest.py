"""Fixtures for the bundle tests: real keys, real policy directories."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from extproc.bundle.signing import generate_key_pair

ALLOW_A = "routes:\n  - name: a\n    match: {path_prefix: /a/}\n"
ALLOW_A_AND_B = ALLOW_A + "  - name: b\n    match: {path_prefix: /b/}\n"
JWKS = '{"keys": []}\n'
# A policy that refers to a file (a JWKS) inside its directory.
WITH_JWKS = (
    "routes:\n  - name: api\n    match: {path_prefix: /api/}\n    capabilities:\n"
    "      - type: jwt\n        config:\n          issuers:\n"
    "            - issuer: https://idp.example\n              jwks: {file: keys/jwks.json}\n"
)


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path
    kid: str


def make_keys(directory: Path, name: str) -> KeyPair:
    private_pem, public_pem, kid = generate_key_pair()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.key").write_bytes(private_pem)
    (directory / f"{name}.pub").write_bytes(public_pem)
    return KeyPair(directory / f"{name}.key", directory / f"{name}.pub", kid)


def make_policy(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return make_keys(tmp_path / "keys", "signer")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    return make_keys(tmp_path / "keys", "other")
