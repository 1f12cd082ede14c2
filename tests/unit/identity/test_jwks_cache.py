"""JwksCache against a real HTTP server (see conftest.IdpServer): rotation,
refresh rate limiting under concurrency, outages, OIDC discovery."""

from __future__ import annotations

import asyncio
import json
import time
import types

import pytest

from extproc.capabilities.jwt_auth import JwksSource, JwtAuth, JwtConfig
from extproc.context import Mode
from extproc.identity import jwks as jwks_module
from extproc.identity.jwks import MAX_JWKS_BYTES, JwksCache, parse_jwks
from extproc.local.demo_keys import jwks_for, mint
from extproc.policy.loader import PolicyLoadError, load_policy_dir
from extproc.runtime import Runtime
from tests import builders
from tests.unit.identity.idp_server import DISCOVERY_PATH, JWKS_PATH


@pytest.fixture
async def make_cache():
    made: list[JwksCache] = []

    def make(**kwargs) -> JwksCache:
        kwargs.setdefault("refresh_interval", 300.0)
        kwargs.setdefault("min_refresh_interval", 10.0)
        kwargs.setdefault("timeout", 2.0)
        cache = JwksCache(**kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_first_lookup_fetches_the_key_set(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url)
    key = await cache.get("k1")
    assert key is not None and key.kty == "RSA" and key.kid == "k1" and key.algorithm == "RS256"
    assert key.key.public_numbers() == rsa_keys[0].public_key().public_numbers()
    assert idp.hits[JWKS_PATH] == 1
    assert await cache.get("k1") is key and idp.hits[JWKS_PATH] == 1  # known kid: no fetch


async def test_first_fetch_happens_even_on_a_freshly_booted_host(idp, rsa_keys, make_cache, monkeypatch):
    # time.monotonic() counts from boot: on a host up for 1 s, "last refresh at
    # 0" would look recent and block the first fetch for min_refresh_interval.
    monkeypatch.setattr(jwks_module, "time", types.SimpleNamespace(monotonic=lambda: 1.0))
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url, min_refresh_interval=10.0)
    assert await cache.get("k1") is not None


async def test_background_refresh_picks_up_a_rotation(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url, refresh_interval=0.2, min_refresh_interval=0.1)
    assert await cache.get("k1") is not None
    idp.serve_keys({"k2": rsa_keys[1].public_key()})  # rotate: k1 retired
    # No lookup in between: only the background refresh can notice.
    await wait_until(lambda: "k2" in cache.keys)
    assert "k1" not in cache.keys and not cache.has_kid("k1")
    assert cache.keys["k2"].key.public_numbers() == rsa_keys[1].public_key().public_numbers()


async def test_an_unknown_kid_fetches_the_rotated_key_at_once(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url, min_refresh_interval=0)
    assert await cache.get("k1") is not None
    idp.serve_keys({"k1": rsa_keys[0].public_key(), "k2": rsa_keys[1].public_key()})
    key = await cache.get("k2")
    assert key is not None and idp.hits[JWKS_PATH] == 2


async def test_unknown_kids_refresh_at_most_once_per_interval_under_concurrency(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    idp.delay = 0.2  # a slow IdP: concurrent lookups overlap with the fetch in flight
    cache = make_cache(url=idp.jwks_url, min_refresh_interval=1.0)
    assert await cache.get("k1") is not None
    assert idp.hits[JWKS_PATH] == 1

    # A flood of forged kids right after a refresh: no request to the IdP.
    results = await asyncio.gather(*(cache.get(f"forged-{i}") for i in range(100)))
    assert results == [None] * 100
    assert idp.hits[JWKS_PATH] == 1

    # Once the interval has passed: exactly one fetch for the whole flood.
    await asyncio.sleep(1.05 - (time.monotonic() - cache.last_refresh))
    results = await asyncio.gather(*(cache.get(f"forged-{i}") for i in range(100)))
    assert results == [None] * 100
    assert idp.hits[JWKS_PATH] == 2
    results = await asyncio.gather(*(cache.get(f"forged-{i}") for i in range(100)))
    assert idp.hits[JWKS_PATH] == 2

    # The same bound holds when the burst is for a key that did appear.
    idp.serve_keys({"k1": rsa_keys[0].public_key(), "k2": rsa_keys[1].public_key()})
    await asyncio.sleep(1.05 - (time.monotonic() - cache.last_refresh))
    results = await asyncio.gather(*(cache.get("k2") for _ in range(100)))
    assert all(r is not None and r.kid == "k2" for r in results)
    assert idp.hits[JWKS_PATH] == 3
    assert cache.fetches == 3


@pytest.mark.parametrize("failure", ["http_500", "garbage", "not_a_jwks", "stopped"])
async def test_an_outage_keeps_the_cached_keys(idp, rsa_keys, make_cache, failure):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url, min_refresh_interval=0)
    assert await cache.get("k1") is not None
    if failure == "http_500":
        idp.status = 500
    elif failure == "garbage":
        idp.jwks = "not json at all"  # served as a JSON string: valid JSON, not a JWKS
    elif failure == "not_a_jwks":
        idp.jwks = {"keys": 5}
    else:
        idp.stop()
    hits = idp.hits[JWKS_PATH]
    assert await cache.refresh() is False
    assert await cache.get("k1") is not None  # still verifies
    assert await cache.get("unknown") is None  # no exception, no key
    if failure != "stopped":
        assert idp.hits[JWKS_PATH] == hits + 2  # the refresh and the unknown kid really hit the server
    assert set(cache.keys) == {"k1"}


async def test_recovery_after_an_outage_serves_the_new_keys(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url, min_refresh_interval=0)
    await cache.get("k1")
    idp.status = 503
    assert await cache.refresh() is False
    idp.status = 200
    idp.serve_keys({"k2": rsa_keys[1].public_key()})
    assert await cache.get("k2") is not None
    assert set(cache.keys) == {"k2"}


async def test_an_oversized_response_is_refused(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(url=idp.jwks_url, min_refresh_interval=0)
    await cache.get("k1")
    idp.jwks = {"keys": [], "padding": "x" * (MAX_JWKS_BYTES + 10)}
    assert await cache.refresh() is False
    assert set(cache.keys) == {"k1"}


async def test_discovery_resolves_jwks_uri(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = make_cache(discovery=idp.discovery_url)
    assert await cache.get("k1") is not None
    assert idp.hits[DISCOVERY_PATH] == 1 and idp.hits[JWKS_PATH] == 1
    # The document is followed wherever it points.
    idp.discovery = {"issuer": idp.issuer, "jwks_uri": idp.url + "/elsewhere"}
    assert await cache.refresh() is False  # 404 there: keep the keys
    assert cache.has_kid("k1") and idp.hits["/elsewhere"] == 1


@pytest.mark.parametrize(
    "document",
    [
        {"issuer": "https://idp.test"},  # no jwks_uri
        {"jwks_uri": 42},
        ["not", "an", "object"],
    ],
)
async def test_discovery_without_a_usable_jwks_uri_fails_the_refresh(idp, make_cache, document):
    idp.discovery = document
    cache = make_cache(discovery=idp.discovery_url)
    assert await cache.refresh() is False
    assert cache.keys == {}


async def test_discovery_cannot_point_at_a_local_file(idp, rsa_keys, make_cache, tmp_path):
    # urllib opens file:// URLs too: a discovery document (or whoever can
    # tamper with a plain-http one) must not make the processor read local files.
    local = tmp_path / "jwks.json"
    local.write_text(json.dumps(jwks_for({"local": rsa_keys[2].public_key()})))
    idp.discovery = {"issuer": idp.issuer, "jwks_uri": local.as_uri()}
    cache = make_cache(discovery=idp.discovery_url)
    assert await cache.refresh() is False
    assert "local" not in cache.keys and await cache.get("local") is None


def test_discovery_url_normalisation():
    def src(value):
        return JwksSource(discovery=value)

    assert src("https://idp.example").discovery_url() == "https://idp.example/.well-known/openid-configuration"
    assert (
        src("https://idp.example/realms/x/").discovery_url()
        == "https://idp.example/realms/x/.well-known/openid-configuration"
    )
    well_known = "https://idp.example/.well-known/openid-configuration"
    assert src(well_known).discovery_url() == well_known


async def test_jwt_capability_verifies_through_oidc_discovery(idp, rsa_keys):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    config = JwtConfig.model_validate({"issuers": [{"issuer": idp.issuer, "jwks": {"discovery": idp.url}}]})
    runtime = Runtime()
    cap = JwtAuth(config, Mode.ENFORCE, runtime)
    try:
        token = mint(rsa_keys[0], sub="carol", issuer=idp.issuer, audience=None, kid="k1")
        ctx = builders.context(None, "GET", "/", {"authorization": f"Bearer {token}"})
        assert await cap.on_request_headers(ctx) is None
        assert ctx.identity.subject == "carol"
        assert idp.hits[DISCOVERY_PATH] >= 1 and idp.hits[JWKS_PATH] >= 1
    finally:
        await runtime.aclose()


def test_parse_jwks_keeps_only_asymmetric_signing_keys(rsa_keys):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    rsa = jwks_for({"rsa": rsa_keys[0].public_key()})["keys"][0]
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    ed_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ed25519.Ed25519PrivateKey.generate().public_key()))
    keys = parse_jwks(
        {
            "keys": [
                rsa,
                {**ec_jwk, "kid": "ec"},
                {**ed_jwk, "kid": "ed"},
                {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},  # a shared secret has no place in a JWKS
                {**rsa, "kid": "rsa-hs", "alg": "HS256"},  # an RSA key pinned to HMAC
                {**rsa, "kid": "rsa-enc", "use": "enc"},  # encryption key
                {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},  # unusable
                "not an object",
            ]
        }
    )
    assert {k: v.kty for k, v in keys.items()} == {"rsa": "RSA", "ec": "EC", "ed": "OKP"}


@pytest.mark.parametrize("document", [[], {"keys": 5}, {"keys": {"kid": "x"}}, "keys"])
def test_a_file_that_is_not_a_jwks_fails_the_policy_load_cleanly(tmp_path, document):
    (tmp_path / "jwks.json").write_text(json.dumps(document))
    (tmp_path / "policy.yaml").write_text(
        "routes:\n  - name: api\n    capabilities:\n      - type: jwt\n        config:\n"
        "          issuers: [{issuer: x, jwks: {file: jwks.json}}]\n"
    )
    with pytest.raises(PolicyLoadError) as info:
        load_policy_dir(tmp_path, Runtime())
    assert "not a JWKS" in str(info.value)


async def test_aclose_stops_the_background_refresh(idp, rsa_keys):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    cache = JwksCache(url=idp.jwks_url, refresh_interval=0.05, min_refresh_interval=0)
    await cache.get("k1")
    await cache.aclose()
    await asyncio.sleep(0)
    hits = idp.hits[JWKS_PATH]
    await asyncio.sleep(0.3)
    assert idp.hits[JWKS_PATH] == hits


def test_an_empty_key_set_revokes_every_key_but_a_non_jwks_changes_nothing():
    from extproc.identity.jwks import parse_jwks

    assert parse_jwks({"keys": []}) == {}
    with pytest.raises(ValueError):
        parse_jwks({})


async def test_discovery_document_for_another_issuer_is_refused(idp, rsa_keys, make_cache):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    assert await make_cache(discovery=idp.discovery_url, issuer=idp.issuer).get("k1") is not None
    impostor = make_cache(discovery=idp.discovery_url, issuer="https://someone-else.test")
    assert await impostor.get("k1") is None
    assert impostor.keys == {}


async def test_a_policy_with_a_jwks_url_fetches_keys_when_it_loads(idp, rsa_keys):
    import asyncio

    from extproc.capabilities.jwt_auth import JwtAuth, JwtConfig
    from extproc.context import Mode
    from extproc.runtime import Runtime

    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    runtime = Runtime()
    cap = JwtAuth(
        JwtConfig.model_validate({"issuers": [{"issuer": idp.issuer, "jwks": {"url": idp.jwks_url}}]}),
        Mode.ENFORCE,
        runtime,
    )
    jwks = next(iter(cap._issuers.values())).jwks
    await asyncio.sleep(0.05)
    assert idp.hits[JWKS_PATH] == 0  # constructing does no I/O
    await cap.start()  # what the policy load does before the revision serves
    for _ in range(100):  # before any request arrives
        if jwks.has_kid("k1"):
            break
        await asyncio.sleep(0.02)
    assert jwks.has_kid("k1") and idp.hits[JWKS_PATH] == 1
    await runtime.aclose()
