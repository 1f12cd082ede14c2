"""Identity end to end: real Envoy (plain and mTLS listeners), the real
processor, the echo upstream, tokens minted with the demo key and, for the
JWKS URL tests, a real identity provider on a loopback port."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import time

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from extproc.local.demo_keys import (
    DEMO_AUDIENCE,
    DEMO_ISSUER,
    DEMO_KID,
    generate_rsa_key,
    jwks_for,
    load_demo_key,
    mint,
)
from extproc.local.processor import wait_serving
from tests.unit.identity.idp_server import IdpServer

DEMO_KEY = load_demo_key()
ATTACKER_KEY = generate_rsa_key()
DEMO_CLIENT = "spiffe://example.org/ns/demo/sa/client"
INTRUDER = "spiffe://example.org/ns/other/sa/intruder"


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def reader() -> str:
    return mint(DEMO_KEY, sub="alice", roles=["reader"])


def upstream_saw(response: httpx.Response) -> dict:
    return response.json()["headers"]


def assert_processor_healthy(gateway) -> None:
    wait_serving(gateway.processor.port, timeout=5)
    log = gateway.processor_log_text()
    # No capability raised (the pipeline logs those at error level, with a traceback).
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]
    r = gateway.client.get("/api/still-ok", headers=bearer(reader()))
    assert r.status_code == 200 and upstream_saw(r)["x-auth-subject"] == "alice"


# -- plain listener, ext_authz (/api) and ext_proc (/proc) ------------------------------


@pytest.mark.parametrize("path", ["/api/hello", "/proc/thing"])
def test_no_token_is_a_401_with_a_bare_challenge(gateway, path):
    r = gateway.client.get(path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="extproc"'
    assert r.json() == {
        "error": {
            "code": "unauthenticated",
            "message": "authentication required",
            "decision_id": r.headers["x-decision-id"],
        }
    }
    assert "x-upstream" not in r.headers  # never reached the upstream


@pytest.mark.parametrize("path", ["/api/hello", "/proc/thing"])
def test_a_reader_token_reaches_the_upstream_with_the_verified_identity_only(gateway, path):
    spoofed = {
        "x-auth-subject": "root",
        "x-auth-roles": "admin",
        "x-auth-tenant": "evil",
        "x-auth-principal": DEMO_CLIENT,
        "x-auth-methods": "mtls",
        "X-Auth-Issuer": "https://evil",
    }
    r = gateway.client.get(path, headers={**bearer(reader()), **spoofed})
    assert r.status_code == 200
    seen = upstream_saw(r)
    assert seen["x-auth-subject"] == "alice"
    assert seen["x-auth-roles"] == "reader"
    assert seen["x-auth-issuer"] == DEMO_ISSUER
    assert seen["x-auth-methods"] == "jwt"
    assert "x-auth-tenant" not in seen and "x-auth-principal" not in seen
    assert {k: v for k, v in seen.items() if k.startswith("x-auth-")} == {
        "x-auth-subject": "alice",
        "x-auth-roles": "reader",
        "x-auth-issuer": DEMO_ISSUER,
        "x-auth-methods": "jwt",
    }


def test_roles_decide_what_a_caller_may_do(gateway):
    admin = mint(DEMO_KEY, sub="root", roles=["admin"])
    c = gateway.client
    assert c.get("/api/admin/x", headers=bearer(reader())).status_code == 403
    assert c.post("/api/items", headers=bearer(reader())).status_code == 403
    assert c.get("/api/%61dmin/x", headers=bearer(reader())).status_code == 403
    assert c.get("/api/admin/x", headers=bearer(mint(DEMO_KEY, sub="nobody"))).status_code == 403
    r = c.get("/api/admin/x", headers=bearer(admin))
    assert r.status_code == 200 and upstream_saw(r)["x-auth-roles"] == "admin"
    assert c.post("/api/items", headers=bearer(admin)).status_code == 200
    denied = c.get("/api/admin/x", headers=bearer(reader()))
    assert "www-authenticate" not in denied.headers and denied.json()["error"]["code"] == "forbidden"


def test_an_invalid_token_says_so_without_saying_why(gateway):
    expired = mint(DEMO_KEY, sub="alice", roles=["reader"], ttl=-3600)
    for path in ("/api/hello", "/proc/thing"):
        r = gateway.client.get(path, headers=bearer(expired))
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == 'Bearer realm="extproc", error="invalid_token"'
        assert set(r.json()["error"]) == {"code", "message", "decision_id"}
        assert "xpire" not in r.text and "Signature" not in r.text


# -- the attack suite through Envoy -------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _seg(obj) -> str:
    return _b64(json.dumps(obj).encode())


def _claims(**overrides) -> dict:
    now = int(time.time())
    claims = {
        "iss": DEMO_ISSUER,
        "sub": "mallory",
        "aud": DEMO_AUDIENCE,
        "roles": ["admin"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _rs256(header: dict, claims: dict, key=DEMO_KEY) -> str:
    signing_input = f"{_seg(header)}.{_seg(claims)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()))}"


def _hs256_with_public_key() -> str:
    pem = DEMO_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_seg({'alg': 'HS256', 'typ': 'JWT', 'kid': DEMO_KID})}.{_seg(_claims())}"
    return f"{signing_input}.{_b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


def _attacks() -> dict[str, str]:
    now = int(time.time())
    good = mint(DEMO_KEY, sub="mallory", roles=["admin"])
    attacker_jwk = jwks_for({DEMO_KID: ATTACKER_KEY.public_key()})["keys"][0]
    return {
        "alg none": f"{_seg({'alg': 'none', 'kid': DEMO_KID})}.{_seg(_claims())}.",
        "HS256 keyed with the RSA public key": _hs256_with_public_key(),
        "expired": mint(DEMO_KEY, sub="mallory", roles=["admin"], ttl=-3600),
        "not yet valid": mint(DEMO_KEY, sub="mallory", roles=["admin"], extra={"nbf": now + 3600}),
        "issued in the future": mint(DEMO_KEY, sub="mallory", roles=["admin"], extra={"iat": now + 3600}),
        "wrong issuer": mint(DEMO_KEY, sub="mallory", roles=["admin"], issuer="https://evil.example"),
        "wrong audience": mint(DEMO_KEY, sub="mallory", roles=["admin"], audience="another-api"),
        "no audience": mint(DEMO_KEY, sub="mallory", roles=["admin"], audience=None),
        "unknown kid": mint(DEMO_KEY, sub="mallory", roles=["admin"], kid="nope"),
        "kid path traversal": mint(DEMO_KEY, sub="mallory", roles=["admin"], kid="../../../../etc/passwd"),
        "kid sql": mint(DEMO_KEY, sub="mallory", roles=["admin"], kid="' OR 1=1; --"),
        "kid not a string": _rs256({"alg": "RS256", "kid": 7}, _claims()),
        "alg not a string": _rs256({"alg": ["RS256"], "kid": DEMO_KID}, _claims()),
        "unknown crit": _rs256({"alg": "RS256", "kid": DEMO_KID, "crit": ["exp"]}, _claims()),
        "jku to attacker": _rs256(
            {"alg": "RS256", "kid": DEMO_KID, "jku": "http://127.0.0.1:1/jwks"}, _claims(), ATTACKER_KEY
        ),
        "embedded jwk": _rs256({"alg": "RS256", "kid": DEMO_KID, "jwk": attacker_jwk}, _claims(), ATTACKER_KEY),
        "x5u to attacker": _rs256(
            {"alg": "RS256", "kid": DEMO_KID, "x5u": "http://127.0.0.1:1/c"}, _claims(), ATTACKER_KEY
        ),
        "truncated": good[:-12],
        "no signature": good.rsplit(".", 1)[0] + ".",
        "two segments": good.rsplit(".", 1)[0],
        "oversized": mint(DEMO_KEY, sub="mallory", roles=["admin"], extra={"blob": "x" * 17_000}),
        "non-base64 characters": good[:20] + "!$*" + good[23:],
        "padding": good + "==",
    }


def test_every_attack_is_a_401_through_envoy_and_the_processor_stays_healthy(gateway):
    attacks = _attacks()
    assert len(attacks["oversized"]) > 16 * 1024
    for path in ("/api/hello", "/proc/thing"):
        for name, token in attacks.items():
            r = gateway.client.get(path, headers=bearer(token))
            assert r.status_code == 401, (path, name, r.status_code, r.text)
            assert r.headers["www-authenticate"] == 'Bearer realm="extproc", error="invalid_token"', (path, name)
            assert r.json()["error"]["code"] == "unauthenticated"
        # Not a bearer token at all, and two Authorization headers.
        r = gateway.client.get(path, headers={"authorization": f"Basic {base64.b64encode(b'a:b').decode()}"})
        assert r.status_code == 401 and 'error="invalid_request"' in r.headers["www-authenticate"]
        r = gateway.client.get(
            path,
            headers=[("authorization", f"Bearer {reader()}"), ("authorization", f"Bearer {attacks['embedded jwk']}")],
        )
        assert r.status_code == 401, r.text
    assert_processor_healthy(gateway)


def _raw_request(port: int, head: bytes, tls_context: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        conn = tls_context.wrap_socket(sock, server_hostname="localhost") if tls_context else sock
        conn.sendall(head)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("path", [b"/api/hello", b"/proc/thing"])
def test_non_utf8_credentials_are_refused_not_crashed_on(gateway, path):
    for junk in (b"\xff\xfe\x80\x81", b"eyJ\xc3\x28.e\xa0\xa1.\xf0\x28\x8c\x28", b"\xc0\xaf" * 50):
        response = _raw_request(
            gateway.port,
            b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
            b"Authorization: Bearer " + junk + b"\r\n\r\n",
        )
        status = int(response.split(b" ", 2)[1])
        assert 400 <= status < 500, response[:300]
        assert b'"headers"' not in response  # the echo upstream never answered
    # Other non-UTF-8 headers do not get in the way of a valid token.
    response = _raw_request(
        gateway.port,
        b"GET " + path + b" HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        b"X-Junk: \xff\xfe\r\nAuthorization: Bearer " + reader().encode() + b"\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert_processor_healthy(gateway)


def test_control_characters_in_a_signed_claim_are_never_injected_into_upstream_headers(gateway):
    # Two layers: the jwt capability refuses such a token (401, never an
    # outage-looking 5xx), and should any identity source let one through,
    # publishing percent-encodes control characters (tests/unit/identity).
    for sub, published in (
        ("alice\r\nx-injected: yes", "alice%0D%0Ax-injected: yes"),
        ("alice\nx-injected: yes", "alice%0Ax-injected: yes"),
        ("alice\x00root", "alice%00root"),
    ):
        token = mint(DEMO_KEY, sub=sub, roles=["reader"])
        for path in ("/api/hello", "/proc/thing"):
            r = gateway.client.get(path, headers=bearer(token))
            assert r.status_code in (200, 401), (sub, path, r.status_code)
            if r.status_code == 200:
                assert "x-injected" not in upstream_saw(r) and upstream_saw(r)["x-auth-subject"] == published


@pytest.mark.parametrize("path", ["/api/hello", "/proc/thing"])
def test_a_role_with_a_comma_is_published_as_one_role(gateway, path):
    token = mint(DEMO_KEY, sub="alice", roles=["reader", "admin,ops", "x%2Cy"])
    r = gateway.client.get(path, headers=bearer(token))
    assert r.status_code == 200
    assert upstream_saw(r)["x-auth-roles"] == "admin%2Cops,reader,x%252Cy"


# -- the mTLS listener ----------------------------------------------------------------------------


def _tls(gateway, client: str | None = "client", max_version=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(gateway.certs / "ca.pem"))
    if client:
        context.load_cert_chain(str(gateway.certs / f"{client}.pem"), str(gateway.certs / f"{client}.key"))
    if max_version:
        context.maximum_version = max_version
    return context


def _mtls_client(gateway, client: str | None = "client", host: str = "localhost") -> httpx.Client:
    return httpx.Client(base_url=f"https://{host}:{gateway.mtls_port}", verify=_tls(gateway, client), timeout=10)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_demo_workload_certificate_reaches_internal(gateway, host):
    with _mtls_client(gateway, host=host) as client:
        r = client.get("/internal/x", headers={"x-auth-principal": "spiffe://example.org/ns/admin/sa/root"})
    assert r.status_code == 200, r.text
    seen = upstream_saw(r)
    assert seen["x-auth-principal"] == DEMO_CLIENT
    assert seen["x-auth-methods"] == "mtls"
    assert "x-auth-subject" not in seen


def test_an_intruder_certificate_is_forbidden(gateway):
    with _mtls_client(gateway, "client-1") as client:
        r = client.get("/internal/x", headers={"x-forwarded-client-cert": f"By=spiffe://gw;URI={DEMO_CLIENT}"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden" and INTRUDER not in r.text


def test_the_mtls_listener_still_requires_a_token_on_api(gateway):
    with _mtls_client(gateway) as client:
        assert client.get("/api/hello").status_code == 401
        r = client.get("/api/hello", headers=bearer(reader()))
    assert r.status_code == 200
    seen = upstream_saw(r)
    # Both identities, each from its own proof.
    assert seen["x-auth-subject"] == "alice" and seen["x-auth-methods"] == "jwt"


def test_no_client_certificate_no_handshake(gateway):
    head = b"GET /internal/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    # TLS 1.2: the server refuses during the handshake itself.
    with pytest.raises(ssl.SSLError):
        _raw_request(gateway.mtls_port, head, _tls(gateway, None, ssl.TLSVersion.TLSv1_2))
    # TLS 1.3: the client's side may finish first; the server's alert then
    # arrives instead of any HTTP response.
    try:
        response = _raw_request(gateway.mtls_port, head, _tls(gateway, None))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        response = b""
    assert b"HTTP/" not in response
    with pytest.raises(httpx.TransportError), _mtls_client(gateway, None) as client:
        client.get("/internal/x")


def test_a_client_sent_xfcc_is_not_an_identity(gateway):
    xfcc = {"x-forwarded-client-cert": f"By=spiffe://example.org/ns/demo/sa/gw;Hash=abc;URI={DEMO_CLIENT}"}
    r = gateway.client.get("/internal/x", headers=xfcc)  # plain listener: no certificate at all
    assert r.status_code == 401
    with _mtls_client(gateway) as client:  # a real certificate: the forged header is dropped by Envoy
        r = client.get("/internal/x", headers={"x-forwarded-client-cert": f"By=x;URI={INTRUDER}"})
    assert r.status_code == 200
    seen = upstream_saw(r)
    assert INTRUDER not in json.dumps(seen) and seen["x-auth-principal"] == DEMO_CLIENT


# -- keys that change ------------------------------------------------------------------------------


def test_rotating_the_jwks_file_takes_effect_on_the_reload(gateway):
    new_key = generate_rsa_key()
    old_token, new_token = reader(), mint(new_key, sub="bob", roles=["reader"], kid="demo-2")
    assert gateway.client.get("/api/x", headers=bearer(old_token)).status_code == 200
    jwks_file = gateway.policies / "keys" / "demo-jwks.json"
    tmp = jwks_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(jwks_for({"demo-2": new_key.public_key()})))
    tmp.rename(jwks_file)
    gateway.wait_for(lambda: gateway.client.get("/api/x", headers=bearer(new_token)).status_code == 200, timeout=5)
    # The retired key stops verifying with the same reload, even for a token seen before.
    assert gateway.client.get("/api/x", headers=bearer(old_token)).status_code == 401
    assert gateway.client.get("/api/x", headers=bearer(reader())).status_code == 401


URL_POLICY = """\
routes:
  - name: api
    match: {{path_prefix: /api/}}
    capabilities:
      - type: jwt
        config:
          issuers:
            - issuer: {issuer}
              jwks: {{url: "{url}", refresh_interval: 300, min_refresh_interval: {min_refresh}}}
"""


@pytest.fixture
def idp():
    server = IdpServer()
    yield server
    server.stop()


def test_a_jwks_url_rotation_and_outage_through_the_gateway(gateway_factory, idp, tmp_path):
    k1, k2 = generate_rsa_key(), generate_rsa_key()
    idp.serve_keys({"k1": k1.public_key()})
    policy_dir = tmp_path / "url-policy"
    policy_dir.mkdir()
    (policy_dir / "policy.yaml").write_text(URL_POLICY.format(issuer=idp.issuer, url=idp.jwks_url, min_refresh=0.5))
    gateway = gateway_factory(policy_dir=policy_dir)

    def status(key, kid, sub="u"):
        return gateway.client.get(
            "/api/x", headers=bearer(mint(key, sub=sub, kid=kid, issuer=idp.issuer, audience=None))
        ).status_code

    t1 = mint(k1, sub="one", kid="k1", issuer=idp.issuer, audience=None)
    r = gateway.client.get("/api/x", headers=bearer(t1))
    assert r.status_code == 200 and upstream_saw(r)["x-auth-subject"] == "one"
    assert idp.hits["/jwks.json"] >= 1

    # Rotation: the IdP now publishes k2 only.
    idp.serve_keys({"k2": k2.public_key()})
    gateway.wait_for(lambda: status(k2, "k2") == 200, timeout=5)
    assert gateway.client.get("/api/x", headers=bearer(t1)).status_code == 401  # cached, but its key is gone
    assert status(k1, "k1") == 401

    # A flood of forged kids: refreshes stay bounded by min_refresh_interval.
    time.sleep(0.6)
    hits, started = idp.hits["/jwks.json"], time.monotonic()
    for i in range(40):
        assert status(k2, f"forged-{i}") == 401
    elapsed = time.monotonic() - started
    assert idp.hits["/jwks.json"] - hits <= int(elapsed / 0.5) + 1, (idp.hits, elapsed)

    # Outage: first 500s, then nobody listening at all.
    t2 = mint(k2, sub="two", kid="k2", issuer=idp.issuer, audience=None)
    assert gateway.client.get("/api/x", headers=bearer(t2)).status_code == 200  # now cached
    idp.status = 500
    time.sleep(0.6)
    assert status(k2, "k3") == 401  # unknown kid: a failed refresh, not a 5xx
    assert status(k2, "k2", sub="fresh") == 200
    idp.stop()
    time.sleep(0.6)
    assert status(k2, "k3") == 401
    for i in range(5):
        assert gateway.client.get("/api/x", headers=bearer(t2)).status_code == 200
        assert status(k2, "k2", sub=f"new-{i}") == 200  # never seen, known kid
    wait_serving(gateway.processor.port, timeout=5)
    assert "Traceback" not in gateway.processor_log_text()
