"""Demo PKI for the mTLS listener: a CA, a server certificate for
localhost/127.0.0.1, and client certificates whose URI SAN is a SPIFFE ID.
For local runs and tests only; production certificates come from your PKI
(SPIRE, cert-manager, ...)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEMO_CLIENT_ID = "spiffe://example.org/ns/demo/sa/client"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "extproc demo"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    sans: list[x509.GeneralName],
    usage: list[Any],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 if ca else 90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def generate(out: str | Path, client_ids: list[str] | None = None) -> dict[str, Path]:
    """Write ca.pem, server.pem/.key and client.pem/.key (plus client-N for
    extra SPIFFE IDs) into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _issue(_name("extproc demo CA"), ca_key, None, ca_key, ca=True, sans=[], usage=[])
    out.joinpath("ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    server_key = _key()
    server = _issue(
        _name("localhost"),
        server_key,
        ca,
        ca_key,
        ca=False,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    _write(out / "server", server, server_key)
    paths = {"ca": out / "ca.pem", "server": out / "server.pem", "server_key": out / "server.key"}

    for i, spiffe_id in enumerate(client_ids or [DEMO_CLIENT_ID]):
        name = "client" if i == 0 else f"client-{i}"
        key = _key()
        cert = _issue(
            _name(spiffe_id.rsplit("/", 1)[-1]),
            key,
            ca,
            ca_key,
            ca=False,
            sans=[x509.UniformResourceIdentifier(spiffe_id)],
            usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        _write(out / name, cert, key)
        paths[name] = out / f"{name}.pem"
        paths[f"{name}_key"] = out / f"{name}.key"
    return paths
