import logging
import os

import pytest

from extproc.policy.loader import PolicyLoadError
from extproc.policy.store import PolicyStore
from extproc.runtime import Runtime
from tests import builders

GOOD = "routes: [{name: api, match: {path_prefix: /api/}}]\n"


def settle(store: PolicyStore) -> None:
    """Two watcher scans: a change is applied once it looks the same twice."""
    store.check_for_changes()
    store.check_for_changes()


def test_valid_change_is_swapped_in(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    store = PolicyStore(tmp_path)
    old = store.current
    path.write_text(GOOD + "  # edited\n")
    os.utime(path, ns=(1, 1))  # mtime granularity must not hide the change
    store.check_for_changes()
    assert store.current is old  # seen once: maybe mid-sync, not applied yet
    store.check_for_changes()
    assert store.current is not old
    assert store.current.revision != old.revision
    assert store.reloads_ok == 1


def test_invalid_change_keeps_last_good_policy(tmp_path, caplog):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    store = PolicyStore(tmp_path)
    good = store.current
    path.write_text("routes: [{name: api, match: {path_prefix: api}}]\n")
    with caplog.at_level(logging.ERROR, "extproc.policy"):
        assert store.reload() is False
    assert store.current is good
    assert store.reloads_failed == 1
    assert store.last_errors == [f"{path}:1: routes[0].match.path_prefix: must start with /"]
    assert "still serving revision " + good.revision in caplog.text


def test_unchanged_files_are_not_reloaded(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD)
    store = PolicyStore(tmp_path)
    store.check_for_changes()
    assert store.reloads_ok == 0 and store.reloads_failed == 0


def test_new_and_deleted_files_are_noticed(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD)
    store = PolicyStore(tmp_path)
    (tmp_path / "q.yaml").write_text("routes: [{name: other}]\n")
    settle(store)
    assert set(store.current.routes) == {"api", "other"}
    (tmp_path / "q.yaml").unlink()
    settle(store)
    assert set(store.current.routes) == {"api"}  # half the routes: within max_route_removal 0.5


# Kubernetes mounts a ConfigMap as symlinks into a timestamped directory and
# updates it by swapping one symlink (kubelet's AtomicWriter):
#   p.yaml -> ..data/p.yaml,  ..data -> ..2026_11_27_10_00_00.1/
def _configmap_version(mount, files: dict[str, str], n: int, mtime_ns: int | None = None):
    version = mount / f"..2026_11_27_10_00_0{n}.{n}"
    for name, text in files.items():
        path = version / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
    tmp = mount / "..data_tmp"
    tmp.symlink_to(version.name)
    os.rename(tmp, mount / "..data")  # atomic: readers see the old or the new version, never a mix
    for name in files:
        top = name.split("/", 1)[0]
        if not (mount / top).is_symlink():
            (mount / top).symlink_to(f"..data/{top}")
    return version


def _configmap_swap(mount, old_version, files: dict[str, str], n: int, mtime_ns: int | None = None):
    version = _configmap_version(mount, files, n, mtime_ns)
    import shutil

    shutil.rmtree(old_version)
    return version


def test_configmap_symlink_swap_is_detected(tmp_path):
    # Same size, same mtime: only the swap itself can give the change away.
    first = _configmap_version(tmp_path, {"p.yaml": GOOD}, 1, mtime_ns=10**18)
    store = PolicyStore(tmp_path)
    old = store.current
    _configmap_swap(tmp_path, first, {"p.yaml": GOOD.replace("/api/", "/apx/")}, 2, mtime_ns=10**18)
    settle(store)
    assert store.current is not old and store.reloads_ok == 1
    assert store.current.routes["api"].matcher is not None
    settle(store)  # and nothing more until the next swap
    assert store.reloads_ok == 1


def _jwks_policy() -> str:
    return """routes:
  - name: api
    match: { path_prefix: /api/ }
    capabilities:
      - type: jwt
        config:
          issuers:
            - issuer: https://demo.extproc.local
              jwks: { file: keys/jwks.json }
              audiences: [extproc-demo]
"""


def _other_jwks() -> str:
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    from extproc.local.demo_keys import DEMO_KID

    jwk = json.loads(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()))
    return json.dumps({"keys": [{**jwk, "kid": DEMO_KID, "alg": "RS256", "use": "sig"}]})


async def test_configmap_swap_of_a_referenced_file_alone_is_applied(tmp_path):
    # Key rotation: only the JWKS in the ConfigMap changes, the policy text
    # (and so its revision) does not. The live policy must use the new keys.
    from pathlib import Path

    from extproc.local.demo_keys import load_demo_key, mint
    from extproc.pipeline import start
    from extproc.runtime import Runtime

    demo_jwks = (Path(__file__).resolve().parents[3] / "policies/keys/demo-jwks.json").read_text()
    first = _configmap_version(tmp_path, {"p.yaml": _jwks_policy(), "keys/jwks.json": _other_jwks()}, 1)
    store = PolicyStore(tmp_path, Runtime())
    token = mint(load_demo_key(), sub="alice")

    async def status() -> int | None:
        ctx = builders.context(store.current, "GET", "/api/x", {"authorization": f"Bearer {token}"}, resolve=False)
        deny = await start(ctx, "api")
        return deny.status if deny else None

    assert await status() == 401  # signed by a key this JWKS does not have
    _configmap_swap(tmp_path, first, {"p.yaml": _jwks_policy(), "keys/jwks.json": demo_jwks}, 2)
    settle(store)
    assert await status() is None


# -- an empty or shrunken policy is never applied by accident -----------------

FOUR = "routes: [{name: a}, {name: b}, {name: c}]\n"


def test_start_refuses_a_directory_without_routes(tmp_path):
    (tmp_path / "p.yaml").write_text("defaults: {unmatched: deny}\n")
    with pytest.raises(PolicyLoadError, match=f"^{tmp_path}: no routes"):
        PolicyStore(tmp_path, Runtime())


def test_reload_to_an_empty_directory_keeps_serving(tmp_path, caplog):
    (tmp_path / "p.yaml").write_text(GOOD)
    store = PolicyStore(tmp_path, Runtime())
    good = store.current
    (tmp_path / "p.yaml").unlink()
    with caplog.at_level(logging.ERROR, "extproc.policy"):
        settle(store)
    assert store.current is good and store.reloads_failed == 1
    assert store.last_errors[0].startswith(f"{tmp_path}: no routes")
    assert "still serving revision " + good.revision in caplog.text


def test_a_file_missing_for_one_scan_is_never_applied(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD)
    (tmp_path / "q.yaml").write_text(FOUR)
    store = PolicyStore(tmp_path, Runtime())
    good = store.current
    saved = (tmp_path / "q.yaml").read_text()
    (tmp_path / "q.yaml").unlink()  # a sync rewrites the file...
    store.check_for_changes()
    (tmp_path / "q.yaml").write_text(saved)  # ...and it is back by the next scan
    settle(store)
    assert store.current.routes.keys() == good.routes.keys() and store.reloads_failed == 0


def test_a_file_missing_longer_is_refused_past_max_route_removal(tmp_path):
    (tmp_path / "p.yaml").write_text(GOOD)
    (tmp_path / "q.yaml").write_text(FOUR)
    store = PolicyStore(tmp_path, Runtime())
    good = store.current
    (tmp_path / "q.yaml").unlink()  # 3 of 4 routes gone, for many scans
    for _ in range(3):
        settle(store)
    assert store.current is good and store.reloads_failed == 1
    assert "removes 3 of 4 routes (a, b, c), more than max_route_removal 0.5" in store.last_errors[0]
    (tmp_path / "q.yaml").write_text(FOUR)  # back: serving continues, nothing to swap
    settle(store)
    assert store.current is good and store.last_errors == []


def test_max_route_removal_is_configurable(tmp_path):
    (tmp_path / "p.yaml").write_text("defaults: {max_route_removal: 0}\n" + GOOD)
    (tmp_path / "q.yaml").write_text("routes: [{name: b}]\n")
    store = PolicyStore(tmp_path, Runtime())
    (tmp_path / "q.yaml").unlink()
    settle(store)
    assert set(store.current.routes) == {"api", "b"} and "more than max_route_removal 0" in store.last_errors[0]


@pytest.mark.parametrize("change", ["remove most", "remove all"])
def test_the_explicit_marker_applies_the_removal(tmp_path, change):
    (tmp_path / "p.yaml").write_text(GOOD)
    (tmp_path / "q.yaml").write_text(FOUR)
    store = PolicyStore(tmp_path, Runtime())
    (tmp_path / "q.yaml").unlink()
    if change == "remove most":
        (tmp_path / "p.yaml").write_text("allow_route_removal: true\n" + GOOD)
        expected = {"api"}
    else:
        (tmp_path / "p.yaml").write_text("allow_route_removal: true\nallow_empty: true\n")
        expected = set()
    settle(store)
    assert set(store.current.routes) == expected and store.reloads_ok == 1 and store.last_errors == []


def test_replaced_and_refused_revisions_are_closed(tmp_path, monkeypatch):
    from extproc.capabilities.base import Capability

    closed: list[int] = []
    monkeypatch.setattr(Capability, "close", lambda self: closed.append(id(self)))
    text = "routes: [{name: api, capabilities: [{type: header_match, config: {deny: [{name: x, present: true}]}}]}]\n"
    (tmp_path / "p.yaml").write_text(text)
    store = PolicyStore(tmp_path, Runtime())
    first = store.current.routes["api"].capabilities[0]
    assert store.reload() is True  # same revision: the copy just built is closed, the live one is not
    assert len(closed) == 1 and id(first) not in closed
    (tmp_path / "p.yaml").write_text(text.replace("name: x,", "name: y,"))
    assert store.reload() is True
    assert id(first) in closed and id(store.current.routes["api"].capabilities[0]) not in closed


async def test_shared_resources_survive_reloads_that_use_them_and_only_those(tmp_path):
    runtime = Runtime()
    quota = (
        "routes: [{name: api, capabilities: [{type: quota, config: "
        "{limits: [{name: l, key: [route], rate: {requests: %d, per: 1h}}]}}]}]\n"
    )
    (tmp_path / "p.yaml").write_text(quota % 5)
    store = PolicyStore(tmp_path, runtime)
    backend = runtime._shared[("quota", "memory")]
    (tmp_path / "p.yaml").write_text(quota % 6)
    assert store.reload() and store.current.routes["api"].capabilities[0]._backend is backend
    (tmp_path / "p.yaml").write_text(GOOD)  # the same route, without a quota
    assert store.reload() and ("quota", "memory") not in runtime._shared  # no revision uses it any more
    await runtime.aclose()
