"""The `api_key` capability: keys stored only as hashes, looked up by hash."""

from __future__ import annotations

import hashlib
import textwrap

import pytest
from pydantic import ValidationError

from extproc.capabilities.api_key import ApiKeyAuth, ApiKeyConfig, hash_key, new_key
from extproc.cli import main as cli_main
from extproc.context import Identity, Mode
from extproc.pipeline import start
from extproc.policy.loader import PolicyLoadError, load_policy_dir
from extproc.runtime import Runtime
from tests import builders

KEY, KEY_HASH = new_key()
OTHER, OTHER_HASH = new_key()


def make(**config) -> ApiKeyAuth:
    config.setdefault(
        "keys", [{"id": "ci", "hash": KEY_HASH, "subject": "ci-bot", "tenant": "acme", "roles": ["deployer"]}]
    )
    return ApiKeyAuth(ApiKeyConfig.model_validate(config), Mode.ENFORCE, Runtime())


async def present(cap: ApiKeyAuth, headers: dict) -> tuple:
    ctx = builders.context(None, "GET", "/api/x", headers)
    return await cap.on_request_headers(ctx), ctx


def test_new_keys_are_random_and_hashed_with_sha256():
    key, digest = new_key()
    assert key.startswith("egk_") and len(key) > 40 and key != new_key()[0]
    assert digest == "sha256:" + hashlib.sha256(key.encode()).hexdigest() == hash_key(key)


def test_the_cli_prints_a_key_and_its_hash(capsys):
    assert cli_main(["api-key", "--id", "svc"]) == 0
    out = capsys.readouterr().out
    key = out.split("key:", 1)[1].split()[0]
    assert f"hash: {hash_key(key)}" in out


@pytest.mark.parametrize(
    "bad_hash",
    [
        KEY,  # the key itself, pasted by mistake
        KEY_HASH.removeprefix("sha256:"),  # no algorithm prefix
        KEY_HASH.upper().replace("SHA256", "sha256"),  # upper-case hex
        "sha256:" + "0" * 63,
        "md5:" + hashlib.md5(b"x").hexdigest(),
    ],
    ids=["plaintext-key", "no-prefix", "upper-hex", "short-hex", "md5"],  # stable ids: keys are random per run
)
def test_only_hashes_can_be_configured(bad_hash):
    with pytest.raises(ValidationError):
        ApiKeyConfig.model_validate({"keys": [{"id": "a", "hash": bad_hash, "subject": "s"}]})


def test_the_capability_holds_no_plaintext_key():
    cap = make()
    assert KEY not in repr(cap._by_hash) and KEY.encode() not in b"".join(d for d in cap._by_hash)


async def test_a_valid_key_authenticates_and_is_removed_from_the_upstream_request():
    deny, ctx = await present(make(), {"x-api-key": KEY})
    assert deny is None
    ident = ctx.identity
    assert (ident.subject, ident.tenant, ident.api_key_id) == ("ci-bot", "acme", "ci")
    assert ident.roles == {"deployer"} and ident.methods == {"api_key"}
    assert ctx.request_headers_out.set == {
        "x-auth-subject": "ci-bot",
        "x-auth-tenant": "acme",
        "x-auth-roles": "deployer",
        "x-auth-methods": "api_key",
    }
    assert ctx.request_headers_out.remove == ["x-api-key"]


async def test_forward_key_keeps_the_header():
    deny, ctx = await present(make(forward_key=True), {"x-api-key": KEY})
    assert deny is None and ctx.request_headers_out.remove == []


async def test_a_custom_header_name_is_normalised():
    deny, ctx = await present(make(header="X-Service-Key"), {"x-service-key": KEY})
    assert deny is None and ctx.request_headers_out.remove == ["x-service-key"]


@pytest.mark.parametrize(
    "presented",
    [
        OTHER,
        KEY + " ",
        " " + KEY,
        KEY[:-1],
        KEY.upper(),
        KEY_HASH,
        KEY_HASH.removeprefix("sha256:"),
        "",
        KEY + "\udcff",  # non-UTF-8 bytes as the servicers decode them
    ],
    ids=[
        "other-key",
        "trailing-space",
        "leading-space",
        "truncated",
        "upper-case",
        "the-hash",
        "bare-hash",
        "empty",
        "non-utf8",
    ],
)
async def test_unknown_keys_are_refused(presented):
    deny, ctx = await present(make(), {"x-api-key": presented})
    assert deny.status == 401 and deny.code == "unauthenticated"
    assert dict(deny.headers)["www-authenticate"] == 'Bearer realm="extproc", error="invalid_token"'
    assert not ctx.identity.authenticated and not ctx.request_headers_out


async def test_a_missing_key():
    deny, _ = await present(make(), {})
    assert deny.status == 401 and dict(deny.headers)["www-authenticate"] == 'Bearer realm="extproc"'
    deny, ctx = await present(make(required=False), {})
    assert deny is None and not ctx.identity.authenticated
    # Optional does not mean a wrong key is let through.
    deny, _ = await present(make(required=False), {"x-api-key": OTHER})
    assert deny.status == 401


async def test_an_api_key_keeps_an_mtls_principal():
    cap = make()
    ctx = builders.context(None, "GET", "/", {"x-api-key": KEY})
    ctx.identity = Identity(principal="spiffe://x/y", methods=frozenset({"mtls"}))
    assert await cap.on_request_headers(ctx) is None
    assert ctx.identity.principal == "spiffe://x/y" and ctx.identity.methods == {"mtls", "api_key"}


def test_duplicate_hashes_are_refused():
    with pytest.raises(ValueError, match="same hash"):
        make(keys=[{"id": "a", "hash": KEY_HASH, "subject": "a"}, {"id": "b", "hash": KEY_HASH, "subject": "b"}])


def test_keys_or_keys_file_is_required():
    with pytest.raises(ValidationError):
        ApiKeyConfig.model_validate({})


# -- keys_file, through the policy loader ---------------------------------------------------

POLICY = """\
routes:
  - name: api
    match: {{path_prefix: /api/}}
    capabilities:
      - type: api_key
        config:
          keys_file: keys/consumers.yaml
{inline}
"""


def write_policy(directory, keys_yaml: str, inline: str = "") -> None:
    (directory / "keys").mkdir(exist_ok=True)
    (directory / "keys" / "consumers.yaml").write_text(textwrap.dedent(keys_yaml))
    (directory / "policy.yaml").write_text(POLICY.format(inline=inline))


async def test_keys_file_is_relative_to_the_policy_directory(tmp_path, monkeypatch):
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    write_policy(
        policy_dir,
        f"""\
        keys:
          - {{id: ci, hash: "{KEY_HASH}", subject: ci-bot}}
          - {{id: ops, hash: "{OTHER_HASH}", subject: ops, roles: [admin]}}
    """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    runtime = Runtime()
    policy = load_policy_dir(policy_dir, runtime)
    assert (policy_dir / "keys" / "consumers.yaml").resolve() in runtime.referenced_files  # reload on change
    for key, subject in ((KEY, "ci-bot"), (OTHER, "ops")):
        ctx = builders.context(policy, "GET", "/api/x", {"x-api-key": key}, resolve=False)
        assert await start(ctx, "api") is None and ctx.identity.subject == subject
    ctx = builders.context(policy, "GET", "/api/x", {"x-api-key": "egk_nope"}, resolve=False)
    assert (await start(ctx, "api")).status == 401


def test_a_change_to_the_keys_file_changes_the_revision(tmp_path):
    write_policy(tmp_path, f"keys: [{{id: ci, hash: '{KEY_HASH}', subject: a}}]\n")
    first = load_policy_dir(tmp_path, Runtime()).revision
    write_policy(tmp_path, f"keys: [{{id: ci, hash: '{OTHER_HASH}', subject: a}}]\n")
    assert load_policy_dir(tmp_path, Runtime()).revision != first


@pytest.mark.parametrize(
    "keys_yaml, inline, message",
    [
        (None, "", "keys_file"),  # missing file
        ("keys: [{id: a, hash: nothex, subject: s}]\n", "", "consumers.yaml: keys.0.hash"),
        (f"keys: [{{id: a, hash: '{KEY_HASH}', subject: s, extra: 1}}]\n", "", "consumers.yaml: keys.0.extra"),
        ("- just a list\n", "", "keys_file"),
        ("keys: [\n", "", "keys_file"),
        (
            f"keys: [{{id: a, hash: '{KEY_HASH}', subject: s}}]\n",
            f"          keys: [{{id: b, hash: '{KEY_HASH}', subject: t}}]",
            "same hash",
        ),
    ],
)
def test_keys_file_errors_fail_the_policy_load(tmp_path, keys_yaml, inline, message):
    if keys_yaml is None:
        (tmp_path / "policy.yaml").write_text(POLICY.format(inline=inline))
    else:
        write_policy(tmp_path, keys_yaml, inline)
    with pytest.raises(PolicyLoadError) as info:
        load_policy_dir(tmp_path, Runtime())
    assert message in str(info.value)
    assert "policy.yaml:" in str(info.value)
