"""The `jwt` capability: the attacks it must refuse, the claims it maps, the
challenge it answers with. Tokens are signed for real (the demo key and
freshly generated ones); keys come from real JWKS files."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from extproc.capabilities import jwt_auth
from extproc.capabilities.jwt_auth import JwtAuth, JwtConfig
from extproc.context import Identity, Mode, RequestContext
from extproc.local.demo_keys import (
    DEMO_AUDIENCE,
    DEMO_ISSUER,
    DEMO_KID,
    generate_rsa_key,
    jwks_for,
    load_demo_key,
    mint,
)
from extproc.pipeline import error_body
from extproc.policy.loader import load_policy_dir
from extproc.runtime import Runtime
from tests import builders
from tests.profiles import examples

POLICIES = Path(__file__).resolve().parents[3] / "policies"
DEMO_KEY = load_demo_key()
DEMO_PUBLIC_PEM = DEMO_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
DEMO_ISSUER_CONFIG = {"issuer": DEMO_ISSUER, "jwks": {"file": "keys/demo-jwks.json"}, "audiences": [DEMO_AUDIENCE]}


@pytest.fixture(scope="module")
def attacker_key():
    return generate_rsa_key()


@pytest.fixture(scope="module")
def other_key():
    return generate_rsa_key()


@pytest.fixture
async def runtime():
    rt = Runtime(policy_dir=POLICIES)
    yield rt
    await rt.aclose()


def make(runtime: Runtime, **config) -> JwtAuth:
    config.setdefault("issuers", [DEMO_ISSUER_CONFIG])
    return JwtAuth(JwtConfig.model_validate(config), Mode.ENFORCE, runtime)


@pytest.fixture
def cap(runtime) -> JwtAuth:
    return make(runtime)


def context(headers: dict | None = None, query: str = "") -> RequestContext:
    path = "/api/x" + (f"?{query}" if query else "")
    return builders.context(None, "GET", path, headers)


async def present(cap: JwtAuth, token: str | None = None, headers: dict | None = None, query: str = ""):
    headers = dict(headers or {})
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    ctx = context(headers, query)
    return await cap.on_request_headers(ctx), ctx


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj) -> str:
    return b64(json.dumps(obj).encode())


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {"iss": DEMO_ISSUER, "sub": "mallory", "aud": DEMO_AUDIENCE, "iat": now, "nbf": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign_rs256(header: dict, payload: dict, key=DEMO_KEY) -> str:
    """RS256 over any header we like (PyJWT would normalise it)."""
    signing_input = f"{seg(header)}.{seg(payload)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def assert_invalid(deny, reason_part: str = "", error: str = "invalid_token"):
    assert deny is not None, "token was accepted"
    assert deny.status == 401 and deny.code == "unauthenticated"
    assert dict(deny.headers)["www-authenticate"] == f'Bearer realm="extproc", error="{error}"'
    assert reason_part in deny.reason, deny.reason


# -- the happy path, to know the rejections below are for the stated reason --


async def test_a_valid_demo_token_is_accepted_and_published(cap):
    deny, ctx = await present(cap, mint(DEMO_KEY, sub="alice", roles=["reader", "auditor"], tenant="acme"))
    assert deny is None
    ident = ctx.identity
    assert (ident.subject, ident.issuer, ident.tenant) == ("alice", DEMO_ISSUER, "acme")
    assert ident.roles == {"reader", "auditor"} and ident.methods == {"jwt"} and ident.authenticated
    assert ctx.request_headers_out.set == {
        "x-auth-subject": "alice",
        "x-auth-issuer": DEMO_ISSUER,
        "x-auth-tenant": "acme",
        "x-auth-roles": "auditor,reader",
        "x-auth-methods": "jwt",
    }
    assert ctx.request_headers_out.remove == []  # the token is forwarded by default


# -- algorithm attacks ------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(cap, alg):
    token = f"{seg({'alg': alg, 'typ': 'JWT', 'kid': DEMO_KID})}.{seg(claims())}."
    assert_invalid((await present(cap, token))[0], "not allowed")


async def test_hs256_signed_with_the_rsa_public_key_is_refused(cap):
    # The classic key-confusion attack: the public key (which anyone can get
    # from the JWKS) used as an HMAC secret.
    signing_input = f"{seg({'alg': 'HS256', 'typ': 'JWT', 'kid': DEMO_KID})}.{seg(claims())}"
    for secret in (DEMO_PUBLIC_PEM, DEMO_PUBLIC_PEM.strip()):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert_invalid((await present(cap, f"{signing_input}.{b64(signature)}"))[0], "'HS256' not allowed")


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "HS256"], ["none"], []])
def test_symmetric_or_no_algorithms_cannot_be_configured(algorithms):
    with pytest.raises(ValidationError):
        JwtConfig.model_validate({"issuers": [{**DEMO_ISSUER_CONFIG, "algorithms": algorithms}]})


async def test_an_algorithm_that_does_not_fit_the_key_is_refused(runtime):
    cap = make(runtime, issuers=[{**DEMO_ISSUER_CONFIG, "algorithms": ["RS256", "PS256", "ES256"]}])
    # ES256 named on an RSA key.
    token = f"{seg({'alg': 'ES256', 'kid': DEMO_KID})}.{seg(claims())}.{b64(b'x' * 64)}"
    assert_invalid((await present(cap, token))[0], "algorithm does not match key")
    # A correct PS256 signature by the right key, but the JWK pins RS256.
    token = jwt.encode(claims(), DEMO_KEY, algorithm="PS256", headers={"kid": DEMO_KID})
    assert_invalid((await present(cap, token))[0], "algorithm does not match key")


@pytest.mark.parametrize("alg", [["RS256"], {"alg": "RS256"}, 256, None, True])
async def test_a_non_string_alg_is_refused_not_a_crash(cap, alg):
    header = {"kid": DEMO_KID} if alg is None else {"alg": alg, "kid": DEMO_KID}
    token = sign_rs256(header, claims())
    assert_invalid((await present(cap, token))[0])


# -- time claims ------------------------------------------------------------


async def test_expired_tokens_are_refused_outside_the_leeway(runtime):
    cap = make(runtime)  # leeway 30 s
    now = int(time.time())
    assert (await present(cap, mint(DEMO_KEY, sub="a", ttl=-10)))[0] is None  # within leeway
    assert_invalid((await present(cap, mint(DEMO_KEY, sub="a", ttl=-3600)))[0], "ExpiredSignatureError")
    strict = make(Runtime(policy_dir=POLICIES), issuers=[{**DEMO_ISSUER_CONFIG, "leeway": 0}])
    assert_invalid(
        (
            await present(
                strict, sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(exp=now - 2, nbf=now - 60, iat=now - 60))
            )
        )[0],
        "ExpiredSignatureError",
    )


async def test_not_yet_valid_tokens_are_refused(cap):
    now = int(time.time())
    assert_invalid(
        (await present(cap, mint(DEMO_KEY, sub="a", extra={"nbf": now + 3600})))[0], "ImmatureSignatureError"
    )
    # Within the leeway, a clock slightly ahead is tolerated.
    assert (await present(cap, mint(DEMO_KEY, sub="a", extra={"nbf": now + 10})))[0] is None


async def test_tokens_issued_in_the_future_are_refused(cap):
    now = int(time.time())
    assert_invalid((await present(cap, mint(DEMO_KEY, sub="a", extra={"iat": now + 3600, "nbf": now})))[0], "iat")


@pytest.mark.parametrize("missing", ["exp", "sub"])
async def test_required_claims_are_required(cap, missing):
    assert_invalid(
        (await present(cap, sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(**{missing: None}))))[0],
        "MissingRequiredClaimError",
    )


# -- issuer and audience ------------------------------------------------------


@pytest.mark.parametrize("iss", ["https://evil.example", DEMO_ISSUER + "/", DEMO_ISSUER.upper(), [DEMO_ISSUER], None])
async def test_a_wrong_issuer_is_refused(cap, iss):
    assert_invalid(
        (await present(cap, sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(iss=iss))))[0], "unknown issuer"
    )


async def test_an_issuer_only_trusts_its_own_keys(runtime, tmp_path, other_key):
    # Two issuers: a token claiming issuer B but signed with A's key (and A's
    # kid) must be looked up in B's key set only.
    (tmp_path / "b.json").write_text(json.dumps(jwks_for({"b-1": other_key.public_key()})))
    cap = make(
        runtime,
        issuers=[DEMO_ISSUER_CONFIG, {"issuer": "https://b.example", "jwks": {"file": str(tmp_path / "b.json")}}],
    )
    forged = sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(iss="https://b.example"))
    assert_invalid((await present(cap, forged))[0], "unknown kid")
    good = sign_rs256({"alg": "RS256", "kid": "b-1"}, claims(iss="https://b.example"), key=other_key)
    deny, ctx = await present(cap, good)
    assert deny is None and ctx.identity.issuer == "https://b.example"


@pytest.mark.parametrize(
    "aud, reason",
    [
        ("another-api", "InvalidAudienceError"),
        (["another-api", "third"], "InvalidAudienceError"),
        (None, "MissingRequiredClaimError"),
    ],
)
async def test_a_wrong_audience_is_refused(cap, aud, reason):
    assert_invalid((await present(cap, sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(aud=aud))))[0], reason)


async def test_one_matching_audience_in_a_list_is_enough(cap):
    token = sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(aud=["another-api", DEMO_AUDIENCE]))
    assert (await present(cap, token))[0] is None


# -- kid and key-location header attacks -------------------------------------


@pytest.mark.parametrize(
    "kid, reason",
    [
        ("unknown-kid", "unknown kid"),
        ("../../etc/passwd", "unknown kid"),
        ("../../../../../../dev/null", "unknown kid"),
        ("' OR '1'='1' --", "unknown kid"),
        ("demo-1'; DROP TABLE keys; --", "unknown kid"),
        ("demo-1\x00", "unknown kid"),
        ("k" * 300, "bad kid"),
        (1, "undecodable"),
        (["demo-1"], "undecodable"),
    ],
)
async def test_hostile_kids_are_refused(cap, kid, reason):
    token = sign_rs256({"alg": "RS256", "kid": kid}, claims())
    assert_invalid((await present(cap, token))[0], reason)


class _AttackerServer:
    """Serves the attacker's JWKS/certificate and records any request."""

    def __init__(self, jwks: dict):
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                body = json.dumps(jwks).encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("kid", [DEMO_KID, "attacker"])
async def test_jku_x5u_jwk_headers_never_supply_the_key(cap, attacker_key, kid):
    attacker_jwk = jwks_for({kid: attacker_key.public_key()})
    server = _AttackerServer(attacker_jwk)
    try:
        variants = [
            {"jku": server.url + "/jwks.json"},
            {"x5u": server.url + "/cert.pem"},
            {"jwk": attacker_jwk["keys"][0]},
            {"x5c": [b64(b"not a certificate")]},
            {"jku": server.url + "/jwks.json", "x5u": server.url + "/c", "jwk": attacker_jwk["keys"][0]},
        ]
        for extra in variants:
            token = sign_rs256({"alg": "RS256", "kid": kid, **extra}, claims(), key=attacker_key)
            deny, ctx = await present(cap, token)
            assert_invalid(deny, "InvalidSignatureError" if kid == DEMO_KID else "unknown kid")
            assert ctx.identity.authenticated is False
        assert server.hits == []  # never fetched
    finally:
        server.stop()


# -- malformed tokens ---------------------------------------------------------


async def test_truncated_tokens_are_refused(cap):
    token = mint(DEMO_KEY, sub="a")
    header, payload, signature = token.split(".")
    for bad, reason in [
        (token[:-1], ""),  # undecodable or a wrong signature, depending on where base64 breaks
        (token[:-3], ""),
        (token[:-50], ""),
        (
            f"{header}.{payload}.{signature[:100]}{'A' if signature[100] != 'A' else 'B'}{signature[101:]}",
            "InvalidSignatureError",
        ),  # not truncated: tampered, to show the signature really is checked
        (f"{header}.{payload}.", "InvalidSignatureError"),
        (f"{header}.{payload}", "malformed"),
        (header, "malformed"),
        (f"{header}.{payload[: len(payload) // 2]}.{signature}", "undecodable"),
        ("", "malformed"),
    ]:
        assert_invalid((await present(cap, bad))[0], reason)


async def test_oversized_tokens_are_refused_before_any_parsing(runtime, monkeypatch):
    big = mint(DEMO_KEY, sub="a", extra={"blob": "x" * 17_000})
    assert len(big) > 16 * 1024
    calls = []
    monkeypatch.setattr(jwt_auth.jwt, "get_unverified_header", lambda *a, **k: calls.append(1))
    assert_invalid((await present(make(runtime), big))[0], "token too large")
    assert calls == []
    monkeypatch.undo()
    # The same token is fine where the limit allows it: the size is the reason.
    assert (await present(make(Runtime(policy_dir=POLICIES), max_token_bytes=65536), big))[0] is None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace(".", "+.", 1),
        lambda t: t.replace(".", "/.", 1),
        lambda t: t + "==",
        lambda t: t[:10] + "!" + t[11:],
        lambda t: t[:10] + " " + t[10:],
        lambda t: t[:10] + "é" + t[10:],
        lambda t: t + "\n",
        lambda t: t + "\x00",
        lambda t: t[:10] + "\udcff\udcfe" + t[10:],  # non-UTF-8 bytes as the servicers decode them
        lambda t: t + ".extra",
    ],
)
async def test_non_base64url_characters_are_refused(runtime, mangle):
    # Through a query parameter: unlike a header value, it is not stripped of
    # surrounding blanks, so every byte reaches the shape check.
    cap = make(runtime, sources=[{"query": "access_token"}])
    token = mangle(mint(DEMO_KEY, sub="a"))
    assert_invalid(
        (await present(cap, query="access_token=" + quote(token, safe="", errors="surrogateescape")))[0], "malformed"
    )
    if token == token.strip():
        bearer = make(runtime)
        assert_invalid((await present(bearer, token))[0], "malformed")


async def test_a_non_bearer_authorization_is_an_invalid_request(cap):
    token = mint(DEMO_KEY, sub="a")
    for value in (f"Basic {token}", token, f"Bearer{token}", "Bearer"):
        deny, _ = await present(cap, headers={"authorization": value})
        assert_invalid(deny, error="invalid_request")
    # The scheme is case-insensitive and surrounding blanks are tolerated.
    for value in (f"bearer {token}", f"BEARER {token}", f"Bearer   {token}  "):
        assert (await present(cap, headers={"authorization": value}))[0] is None


# -- several token locations ----------------------------------------------------


@pytest.fixture
def multi(runtime) -> JwtAuth:
    return make(
        runtime,
        sources=[{"header": "Authorization", "prefix": "Bearer "}, {"cookie": "session"}, {"query": "access_token"}],
    )


async def test_each_location_works_alone(multi):
    token = mint(DEMO_KEY, sub="a")
    assert (await present(multi, token))[0] is None
    assert (await present(multi, headers={"cookie": f"theme=dark; session={token}"}))[0] is None
    assert (await present(multi, headers={"cookie": f'session="{token}"'}))[0] is None
    assert (await present(multi, query=f"x=1&access_token={token}"))[0] is None
    # An unrelated malformed cookie must not hide the token.
    assert (await present(multi, headers={"cookie": f"pref=a b c; session={token}"}))[0] is None


async def test_two_tokens_are_refused_whatever_their_locations(multi):
    t1, t2 = mint(DEMO_KEY, sub="a"), mint(DEMO_KEY, sub="b")
    for kwargs in [
        {"token": t1, "headers": {"cookie": f"session={t2}"}},
        {"token": t1, "query": f"access_token={t2}"},
        {"headers": {"cookie": f"session={t1}"}, "query": f"access_token={t2}"},
        {"token": t1, "headers": {"cookie": f"session={t1}"}, "query": f"access_token={t1}"},  # same token thrice
        {"query": f"access_token={t1}&access_token={t2}"},
        {"headers": {"cookie": f"session={t1}; session={t2}"}},
        {"headers": {"cookie": f"session={t2}; other=1; session={t1}"}},
    ]:
        deny, ctx = await present(multi, **kwargs)
        assert_invalid(deny, "more than one token", error="invalid_request")
        assert not ctx.identity.authenticated


# -- key removal and the verified-token cache -----------------------------------------


@pytest.fixture
def two_key_file(tmp_path, other_key):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_for({DEMO_KID: DEMO_KEY.public_key(), "k2": other_key.public_key()})))
    return path


async def test_a_cached_token_stops_verifying_once_its_key_leaves_the_jwks(runtime, two_key_file, other_key):
    cap = make(runtime, issuers=[{**DEMO_ISSUER_CONFIG, "jwks": {"file": str(two_key_file)}}])
    token = mint(other_key, sub="bob", kid="k2")
    assert (await present(cap, token))[0] is None
    assert (await present(cap, token))[0] is None  # served from the cache now
    two_key_file.write_text(json.dumps(jwks_for({DEMO_KID: DEMO_KEY.public_key()})))
    assert await cap._issuers[DEMO_ISSUER].jwks.refresh()
    assert_invalid((await present(cap, token))[0], "unknown kid")
    assert (await present(cap, mint(DEMO_KEY, sub="a")))[0] is None  # the remaining key still works


async def test_a_policy_reload_after_the_jwks_file_changed_uses_the_new_key_set(tmp_path, other_key):
    # The JWKS cache is shared across policy revisions; the reload that a
    # change to the file triggers must not keep verifying a removed key.
    (tmp_path / "keys").mkdir()
    jwks_file = tmp_path / "keys" / "jwks.json"
    jwks_file.write_text(json.dumps(jwks_for({"k1": DEMO_KEY.public_key(), "k2": other_key.public_key()})))
    (tmp_path / "policy.yaml").write_text(
        "routes:\n  - name: api\n    capabilities:\n      - type: jwt\n        config:\n"
        f"          issuers: [{{issuer: '{DEMO_ISSUER}', jwks: {{file: keys/jwks.json}}}}]\n"
    )
    runtime = Runtime()
    try:
        first = load_policy_dir(tmp_path, runtime)
        cap = first.routes["api"].capabilities[0]
        token = mint(other_key, sub="bob", kid="k2")
        assert (await present(cap, token))[0] is None
        jwks_file.write_text(json.dumps(jwks_for({"k1": DEMO_KEY.public_key()})))  # k2 revoked
        second = load_policy_dir(tmp_path, runtime)
        assert second.revision != first.revision
        assert_invalid((await present(second.routes["api"].capabilities[0], token))[0], "unknown kid")
        assert_invalid((await present(cap, token))[0], "unknown kid")  # in-flight old revision too
    finally:
        await runtime.aclose()


async def test_repeat_tokens_are_served_from_the_cache(runtime, monkeypatch):
    calls = []
    real_decode = jwt.decode

    def counting_decode(*args, **kwargs):
        calls.append(kwargs.get("options", {}).get("verify_signature", True))
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(jwt_auth.jwt, "decode", counting_decode)
    cap = make(runtime)
    token = mint(DEMO_KEY, sub="alice", roles=["reader"])
    deny, first = await present(cap, token)
    assert deny is None and calls == [False, True]  # unverified peek, then the verification
    for _ in range(5):
        deny, ctx = await present(cap, token)
        assert deny is None and ctx.identity.subject == "alice" and ctx.identity.roles == {"reader"}
    assert len(calls) == 2  # no decode at all on the cached path
    assert len(cap._cache) == 1
    assert (await present(cap, mint(DEMO_KEY, sub="bob")))[0] is None
    assert len(calls) == 4

    # Once the cached entry is past exp + leeway it is verified again.
    exp = first.identity.claims["exp"]
    monkeypatch.setattr(jwt_auth, "time", types.SimpleNamespace(time=lambda: exp + 31))
    assert (await present(cap, token))[0] is None  # PyJWT's clock is the real one: still valid
    assert len(calls) == 6


async def test_the_cache_is_bounded_and_can_be_disabled(runtime, monkeypatch):
    calls = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt_auth.jwt, "decode", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    bounded = make(runtime, cache_size=2)
    tokens = [mint(DEMO_KEY, sub=f"u{i}") for i in range(3)]
    for token in tokens:
        assert (await present(bounded, token))[0] is None
    assert len(bounded._cache) == 2
    disabled = make(runtime, cache_size=0)
    calls.clear()
    for _ in range(3):
        assert (await present(disabled, tokens[0]))[0] is None
    assert len(calls) == 6 and len(disabled._cache) == 0


async def test_a_rejected_token_is_not_cached(cap):
    token = mint(DEMO_KEY, sub="a", extra={"nbf": int(time.time()) + 3600})
    for _ in range(2):
        assert_invalid((await present(cap, token))[0], "ImmatureSignatureError")
    assert len(cap._cache) == 0


# -- claims mapping -------------------------------------------------------------------


@pytest.mark.parametrize(
    "roles, expected",
    [
        (["reader", "writer"], {"reader", "writer"}),
        ("reader writer", {"reader", "writer"}),
        ("  reader   writer ", {"reader", "writer"}),
        ([], set()),
        (["reader", 7, None, {"x": 1}, ["nested"]], {"reader", "7"}),
        ({"reader": True}, set()),
        (42, set()),
    ],
)
async def test_roles_as_list_or_space_separated_string(cap, roles, expected):
    deny, ctx = await present(cap, mint(DEMO_KEY, sub="a", extra={"roles": roles}))
    assert deny is None and ctx.identity.roles == expected
    if expected:
        assert ctx.request_headers_out.set["x-auth-roles"] == ",".join(sorted(expected))
    else:
        assert "x-auth-roles" not in ctx.request_headers_out.set


async def test_scope_tenant_agent_and_delegation_chain(cap):
    token = mint(
        DEMO_KEY,
        sub="alice",
        tenant="acme",
        extra={
            "scope": "read:docs write:docs",
            "agent_id": "planner-7",
            "act": {"sub": "agent-b", "act": {"sub": "agent-a", "act": {"not_sub": 1, "act": {"sub": "root"}}}},
        },
    )
    deny, ctx = await present(cap, token)
    assert deny is None
    ident = ctx.identity
    assert ident.scopes == {"read:docs", "write:docs"}
    assert ident.tenant == "acme" and ident.agent_id == "planner-7"
    assert ident.delegation == ("agent-b", "agent-a", "root")  # outermost actor first; a sub-less level skipped
    assert ctx.request_headers_out.set["x-auth-agent"] == "planner-7"
    assert ctx.request_headers_out.set["x-auth-tenant"] == "acme"


async def test_a_deep_or_odd_delegation_chain_is_bounded(cap):
    act: dict = {"sub": "a0"}
    for i in range(1, 100):
        act = {"sub": f"a{i}", "act": act}
    deny, ctx = await present(cap, mint(DEMO_KEY, sub="x", extra={"act": act}))
    assert deny is None and len(ctx.identity.delegation) == 16 and ctx.identity.delegation[0] == "a99"
    deny, ctx = await present(cap, mint(DEMO_KEY, sub="x", extra={"act": "not-an-object"}))
    assert deny is None and ctx.identity.delegation == ()


async def test_a_custom_claim_mapping(runtime):
    cap = make(
        runtime,
        issuers=[
            {
                **DEMO_ISSUER_CONFIG,
                "claims": {"subject": "email", "roles": "groups", "scopes": "scp", "tenant": "org", "agent_id": None},
            }
        ],
    )
    token = mint(
        DEMO_KEY,
        sub="u-1",
        extra={
            "email": "a@example.com",
            "groups": ["g1"],
            "scp": ["s1", "s2"],
            "org": 42,
            "agent_id": "ignored",
            "roles": ["admin"],
        },
    )
    deny, ctx = await present(cap, token)
    assert deny is None
    ident = ctx.identity
    assert (ident.subject, ident.tenant, ident.agent_id) == ("a@example.com", "42", None)
    assert ident.roles == {"g1"} and ident.scopes == {"s1", "s2"}  # `roles` claim not mapped, so not used


async def test_non_scalar_identity_claims_are_not_stringified(cap):
    deny, ctx = await present(
        cap, sign_rs256({"alg": "RS256", "kid": DEMO_KID}, claims(sub="ok", tenant={"id": "acme"}, agent_id=["x"]))
    )
    assert deny is None and ctx.identity.tenant is None and ctx.identity.agent_id is None
    assert "x-auth-tenant" not in ctx.request_headers_out.set


# -- WWW-Authenticate and what the client may learn -------------------------------------


async def test_a_missing_token_gets_a_bare_challenge(cap):
    deny, ctx = await present(cap)
    assert deny.status == 401
    assert dict(deny.headers) == {"www-authenticate": 'Bearer realm="extproc"'}
    assert "error" not in dict(deny.headers)["www-authenticate"]
    assert ctx.request_headers_out.set == {}


async def test_a_bad_token_gets_invalid_token_and_the_body_hides_the_reason(cap):
    deny, _ = await present(cap, mint(DEMO_KEY, sub="a", audience="another-api"))
    assert dict(deny.headers)["www-authenticate"] == 'Bearer realm="extproc", error="invalid_token"'
    body = error_body(deny, "d-1").decode()
    assert json.loads(body) == {
        "error": {"code": "unauthenticated", "message": "authentication required", "decision_id": "d-1"}
    }
    assert "Audience" not in body and "another-api" not in body and deny.reason not in body


async def test_optional_authentication(runtime):
    cap = make(runtime, required=False)
    deny, ctx = await present(cap)
    assert deny is None and not ctx.identity.authenticated and ctx.request_headers_out.set == {}
    # Optional means "may be absent", not "may be forged".
    assert_invalid((await present(cap, mint(DEMO_KEY, sub="a", audience="x")))[0])


async def test_the_token_header_can_be_kept_from_the_upstream(runtime):
    cap = make(runtime, forward_token=False)
    deny, ctx = await present(cap, mint(DEMO_KEY, sub="a"))
    assert deny is None and ctx.request_headers_out.remove == ["authorization"]


async def test_the_jwt_identity_keeps_an_mtls_principal(cap):
    ctx = context({"authorization": f"Bearer {mint(DEMO_KEY, sub='alice')}"})
    ctx.identity = Identity(principal="spiffe://example.org/ns/demo/sa/client", methods=frozenset({"mtls"}))
    assert await cap.on_request_headers(ctx) is None
    assert ctx.identity.principal == "spiffe://example.org/ns/demo/sa/client"
    assert ctx.identity.methods == {"mtls", "jwt"} and ctx.identity.subject == "alice"


# -- fuzzing: nothing a client sends may raise or pass -----------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def test_fuzzed_tokens_never_raise_and_never_authenticate():
    loop = asyncio.new_event_loop()
    runtime = Runtime(policy_dir=POLICIES)
    cap = make(
        runtime, issuers=[{**DEMO_ISSUER_CONFIG, "jwks": {"file": "keys/demo-jwks.json", "min_refresh_interval": 3600}}]
    )

    def check(token: str) -> None:
        ctx = context({"authorization": f"Bearer {token}"})
        deny = loop.run_until_complete(cap.on_request_headers(ctx))  # an exception here fails the test
        assert deny is not None and deny.status == 401, token
        assert not ctx.identity.authenticated

    @settings(max_examples=examples(400), deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        header=st.fixed_dictionaries(
            {},
            optional={
                "alg": st.sampled_from(["RS256", "none", "HS256", "ES256", "PS256"]) | _json,
                "kid": st.sampled_from([DEMO_KID, "other"]) | _json,
                "typ": _json,
                "crit": _json,
                "jku": _json,
                "jwk": _json,
                "b64": _json,
            },
        ),
        payload=st.fixed_dictionaries(
            {},
            optional={
                "iss": st.just(DEMO_ISSUER) | _json,
                "sub": _json,
                "aud": st.just(DEMO_AUDIENCE) | _json,
                "exp": _json,
                "nbf": _json,
                "iat": _json,
                "roles": _json,
                "act": _json,
            },
        ),
        signature=st.binary(max_size=300),
        raw=st.booleans(),
    )
    def fuzz(header, payload, signature, raw):
        if raw:  # arbitrary JSON where objects are expected
            check(f"{seg(list(header.values()))}.{seg(payload.get('iss'))}.{b64(signature)}")
        else:
            check(f"{seg(header)}.{seg(payload)}.{b64(signature)}")

    @settings(max_examples=examples(200), deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.text(max_size=200))
    def fuzz_text(token):
        check(token.strip() or "x")

    try:
        fuzz()
        fuzz_text()
    finally:
        loop.run_until_complete(runtime.aclose())
        loop.close()


def test_control_characters_in_identity_claims_are_refused():
    from extproc.capabilities.jwt_auth import IssuerConfig, _identity_from, _Rejected

    cfg = IssuerConfig(issuer="https://i", jwks={"url": "https://i/jwks"})
    for claims in ({"sub": "alice\r\nx-auth-roles: admin"}, {"sub": "a", "roles": ["reader\n"]}, {"sub": "a\x00"}):
        with pytest.raises(_Rejected):
            _identity_from(claims, cfg)
    assert _identity_from({"sub": "alice", "roles": "a b"}, cfg).roles == frozenset({"a", "b"})


@pytest.mark.parametrize(
    "source, ok",
    [
        ({"url": "https://idp.example.com/jwks"}, True),
        ({"url": "http://127.0.0.1:8080/jwks"}, True),
        ({"discovery": "http://localhost:9000"}, True),
        ({"url": "http://idp.example.com/jwks"}, False),  # keys over plain HTTP from the network
        ({"discovery": "http://10.0.0.5"}, False),
        ({"url": "file:///etc/passwd"}, False),
    ],
)
def test_jwks_urls_must_be_https_unless_loopback(source, ok):
    from pydantic import ValidationError

    from extproc.capabilities.jwt_auth import JwksSource

    if ok:
        JwksSource(**source)
    else:
        with pytest.raises(ValidationError):
            JwksSource(**source)
