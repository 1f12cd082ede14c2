"""JWKS caches across policy reloads, against real HTTP identity providers
(see idp_server.py) and the real PolicyStore: a reload's refresh settings
take effect, a removed issuer stops polling, nothing leaks, and a request
still running on the replaced revision keeps verifying."""

from __future__ import annotations

import asyncio

import pytest

from extproc.identity.jwks import JwksCache
from extproc.local.demo_keys import mint
from extproc.pipeline import start
from extproc.policy.loader import validate_policy_dir
from extproc.policy.store import PolicyStore
from extproc.runtime import Runtime
from tests import builders
from tests.unit.identity.idp_server import JWKS_PATH, IdpServer


def issuer(idp: IdpServer, refresh_interval: float) -> str:
    return (
        f"            - issuer: {idp.issuer}\n"
        f"              jwks: {{url: '{idp.jwks_url}', refresh_interval: {refresh_interval}, "
        f"min_refresh_interval: 0.1}}\n"
        f"              audiences: [gw]\n"
    )


def policy(*issuers: str) -> str:
    return (
        "routes:\n  - name: api\n    capabilities:\n      - type: jwt\n        config:\n"
        "          issuers:\n" + "".join(issuers)
    )


@pytest.fixture
def second_idp():
    server = IdpServer(issuer="https://other.test")
    yield server
    server.stop()


@pytest.fixture
async def runtime():
    made = Runtime()
    yield made
    await made.aclose()


def refresh_loops() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == JwksCache._refresh_loop.__qualname__]


async def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_reload_changing_the_refresh_interval_takes_effect(tmp_path, idp, rsa_keys, runtime):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 300)))
    store = PolicyStore(tmp_path, runtime)
    assert await wait_until(lambda: idp.hits[JWKS_PATH] == 1)  # fetched at load
    await asyncio.sleep(0.5)
    assert idp.hits[JWKS_PATH] == 1  # every 300 s: nothing more
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 0.1)))
    assert store.reload()
    assert await wait_until(lambda: idp.hits[JWKS_PATH] >= 5), "the new 0.1 s interval is not followed"
    assert len(refresh_loops()) == 1  # the 300 s cache's loop was stopped


async def test_removing_an_issuer_stops_its_polling(tmp_path, idp, second_idp, rsa_keys, runtime):
    for server in (idp, second_idp):
        server.serve_keys({"k1": rsa_keys[0].public_key()})
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 0.1), issuer(second_idp, 0.1)))
    store = PolicyStore(tmp_path, runtime)
    assert await wait_until(lambda: second_idp.hits[JWKS_PATH] >= 2)
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 0.1)))
    assert store.reload()
    await asyncio.sleep(0.05)  # a fetch already on the wire may still land
    removed_hits, kept_hits = second_idp.hits[JWKS_PATH], idp.hits[JWKS_PATH]
    await asyncio.sleep(0.6)
    assert second_idp.hits[JWKS_PATH] == removed_hits
    assert idp.hits[JWKS_PATH] > kept_hits  # the issuer still named keeps refreshing


async def test_reloads_leak_no_task_and_no_runtime_entry(tmp_path, idp, second_idp, rsa_keys, runtime):
    for server in (idp, second_idp):
        server.serve_keys({"k1": rsa_keys[0].public_key()})
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 1)))
    store = PolicyStore(tmp_path, runtime)
    variants = [
        policy(issuer(idp, 2)),
        policy(issuer(second_idp, 3)),
        policy(issuer(idp, 4), issuer(second_idp, 4)),
        "routes: [{name: api, match: {path_prefix: /x/}}]\n",
        policy(issuer(second_idp, 5)),
    ]
    for _ in range(3):
        for text in variants:
            (tmp_path / "p.yaml").write_text(text)
            assert store.reload()
            await asyncio.sleep(0)  # let cancelled loops finish
    await asyncio.sleep(0.05)
    assert len(refresh_loops()) == 1
    assert [key for key in runtime._shared if key[0] == "jwks"] == [
        ("jwks", None, second_idp.jwks_url, None, None, 5.0, 0.1)
    ]


async def test_a_refused_reload_releases_what_it_built(tmp_path, idp, second_idp, rsa_keys, runtime):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 1)))
    store = PolicyStore(tmp_path, runtime)
    # A valid issuer, then an invalid file: the load fails after the new cache was made.
    (tmp_path / "p.yaml").write_text(policy(issuer(second_idp, 1)))
    (tmp_path / "q.yaml").write_text("routes: [{name: BAD}]\n")
    assert not store.reload()
    await asyncio.sleep(0.05)
    assert len(refresh_loops()) == 1 and len(runtime._shared) == 1


async def test_a_request_on_the_replaced_revision_still_verifies(tmp_path, idp, second_idp, rsa_keys, runtime):
    for server in (idp, second_idp):
        server.serve_keys({"k1": rsa_keys[0].public_key()})
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 0.1), issuer(second_idp, 0.1)))
    store = PolicyStore(tmp_path, runtime)
    old = store.current
    token = mint(rsa_keys[0], sub="alice", issuer=second_idp.issuer, audience="gw", kid="k1")
    assert await wait_until(lambda: second_idp.hits[JWKS_PATH] >= 1)
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 0.1)))
    assert store.reload()

    async def status(revision) -> int | None:
        ctx = builders.context(revision, "GET", "/api/x", {"authorization": f"Bearer {token}"}, resolve=False)
        deny = await start(ctx, "api")
        return deny.status if deny else None

    assert await status(old) is None  # in flight on the old revision: the cached keys still work
    assert await status(store.current) == 401  # the new revision no longer trusts that issuer


async def test_validating_a_policy_leaves_nothing_running(tmp_path, idp, rsa_keys):
    idp.serve_keys({"k1": rsa_keys[0].public_key()})
    (tmp_path / "p.yaml").write_text(policy(issuer(idp, 0.1)))
    before = len(refresh_loops())
    policy_set = validate_policy_dir(tmp_path)
    assert "api" in policy_set.routes
    await asyncio.sleep(0.05)
    assert len(refresh_loops()) == before
