import logging
import os

from extproc.policy.store import PolicyStore

GOOD = "routes: [{name: api, match: {path_prefix: /api/}}]\n"


def test_valid_change_is_swapped_in(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    store = PolicyStore(tmp_path)
    old = store.current
    path.write_text(GOOD + "  # edited\n")
    os.utime(path, ns=(1, 1))  # mtime granularity must not hide the change
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
    store.check_for_changes()
    assert set(store.current.routes) == {"api", "other"}
    (tmp_path / "q.yaml").unlink()
    store.check_for_changes()
    assert set(store.current.routes) == {"api"}


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
    store.check_for_changes()
    assert store.current is not old and store.reloads_ok == 1
    assert store.current.routes["api"].matcher is not None
    store.check_for_changes()  # and nothing more until the next swap
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

    from extproc.context import HttpRequest, RequestContext
    from extproc.local.demo_keys import load_demo_key, mint
    from extproc.pipeline import start
    from extproc.runtime import Runtime

    demo_jwks = (Path(__file__).resolve().parents[3] / "policies/keys/demo-jwks.json").read_text()
    first = _configmap_version(tmp_path, {"p.yaml": _jwks_policy(), "keys/jwks.json": _other_jwks()}, 1)
    store = PolicyStore(tmp_path, Runtime())
    token = mint(load_demo_key(), sub="alice")

    async def status() -> int | None:
        ctx = RequestContext(store.current, HttpRequest("GET", "/api/x", "h", {"authorization": f"Bearer {token}"}))
        deny = await start(ctx, "api")
        return deny.status if deny else None

    assert await status() == 401  # signed by a key this JWKS does not have
    _configmap_swap(tmp_path, first, {"p.yaml": _jwks_policy(), "keys/jwks.json": demo_jwks}, 2)
    store.check_for_changes()
    assert await status() is None
