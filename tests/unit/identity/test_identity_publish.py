"""Trusted identity headers: client copies stripped, verified ones published,
and nothing stale left over when a second identity capability publishes."""

from __future__ import annotations

import textwrap
from pathlib import Path

from extproc.capabilities.api_key import hash_key
from extproc.context import Identity, RequestContext
from extproc.identity.publish import publish, strip_spoofable
from extproc.identity.responses import unauthenticated
from extproc.local.demo_keys import load_demo_key, mint
from extproc.pipeline import start
from extproc.policy.loader import load_policy_dir
from extproc.runtime import Runtime
from tests import builders

REPO = Path(__file__).resolve().parents[3]


def ctx_with(headers: dict) -> RequestContext:
    return builders.context(None, "GET", "/api/x", headers)


def test_strip_spoofable_removes_every_client_x_auth_header():
    ctx = ctx_with(
        {
            "x-auth-subject": "admin",
            "x-auth-roles": "admin",
            "x-auth-whatever": "1",
            "x-authorization": "keep",
            "authorization": "keep",
        }
    )
    strip_spoofable(ctx)
    assert set(ctx.request.headers) == {"x-authorization", "authorization"}  # capabilities can't see them
    assert sorted(ctx.request_headers_out.remove) == ["x-auth-roles", "x-auth-subject", "x-auth-whatever"]


def test_publish_overrides_a_stripped_header_instead_of_removing_it():
    ctx = ctx_with({"x-auth-subject": "admin"})
    strip_spoofable(ctx)
    publish(ctx, Identity(subject="alice", methods=frozenset({"jwt"})))
    assert ctx.request_headers_out.set == {"x-auth-subject": "alice", "x-auth-methods": "jwt"}
    assert "x-auth-subject" not in ctx.request_headers_out.remove


def test_a_second_identity_leaves_nothing_stale_behind():
    # An API key (tenant, roles) then a JWT without them: the upstream must
    # not see the key's tenant and roles next to the JWT's subject.
    ctx = ctx_with({})
    publish(ctx, Identity(subject="svc", tenant="acme", roles=frozenset({"admin"}), methods=frozenset({"api_key"})))
    publish(ctx, Identity(subject="bob", methods=frozenset({"api_key", "jwt"})))
    assert ctx.request_headers_out.set == {"x-auth-subject": "bob", "x-auth-methods": "api_key,jwt"}
    assert {"x-auth-tenant", "x-auth-roles"} <= set(ctx.request_headers_out.remove)
    assert ctx.identity.tenant is None and ctx.identity.roles == frozenset()


def test_publish_in_monitor_mode_mutates_nothing():
    ctx = ctx_with({})
    ctx.dry_run = True
    publish(ctx, Identity(subject="alice", methods=frozenset({"jwt"})))
    assert not ctx.request_headers_out
    ctx.dry_run = False
    publish(ctx, Identity(subject="alice", tenant="t", methods=frozenset({"jwt"})))
    ctx.dry_run = True
    publish(ctx, Identity(subject="bob", methods=frozenset({"jwt"})))
    assert ctx.request_headers_out.set["x-auth-tenant"] == "t"  # dry run: not even a removal


def test_unauthenticated_challenge():
    bare = unauthenticated("no token", None)
    assert (bare.status, bare.code, bare.headers) == (
        401,
        "unauthenticated",
        (("www-authenticate", 'Bearer realm="extproc"'),),
    )
    bad = unauthenticated("signature", "invalid_token")
    assert bad.headers == (("www-authenticate", 'Bearer realm="extproc", error="invalid_token"'),)
    assert bad.reason == "signature"


async def test_api_key_then_jwt_on_one_route_publishes_one_consistent_identity(tmp_path):
    key = "egk_test-key-123"
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "demo-jwks.json").write_text((REPO / "policies/keys/demo-jwks.json").read_text())
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent(f"""\
        routes:
          - name: api
            match: {{path_prefix: /api/}}
            capabilities:
              - type: api_key
                config:
                  keys: [{{id: k1, hash: "{hash_key(key)}", subject: svc, tenant: acme, roles: [admin]}}]
              - type: jwt
                config:
                  issuers: [{{issuer: "https://demo.extproc.local", jwks: {{file: keys/demo-jwks.json}}}}]
    """)
    )
    runtime = Runtime()
    try:
        policy = load_policy_dir(tmp_path, runtime)
        token = mint(load_demo_key(), sub="bob", audience=None)
        headers = {"x-api-key": key, "authorization": f"Bearer {token}", "x-auth-tenant": "spoofed"}
        ctx = builders.context(policy, "GET", "/api/x", headers, resolve=False)
        assert await start(ctx, "api") is None
        out = ctx.request_headers_out
        assert ctx.identity.subject == "bob" and ctx.identity.methods == {"api_key", "jwt"}
        assert out.set["x-auth-subject"] == "bob" and out.set["x-auth-methods"] == "api_key,jwt"
        assert "x-auth-tenant" not in out.set and "x-auth-roles" not in out.set
        assert "x-auth-tenant" in out.remove  # the client's copy is still removed
        assert "x-api-key" in out.remove
    finally:
        await runtime.aclose()


# -- header twins, routing overrides, unambiguous values ---------------------

from urllib.parse import unquote  # noqa: E402

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from extproc.headers import ROUTING_OVERRIDE_HEADERS  # noqa: E402
from extproc.identity.publish import encode_list, encode_single  # noqa: E402


def test_strip_spoofable_compares_names_as_the_upstream_reads_them():
    # CGI/WSGI/Rack read every one of these as HTTP_X_AUTH_* or HTTP_X_DEBUG.
    twins = {
        "x_auth_tenant": "evil",
        "X_Auth_Roles": "admin",
        "x-auth_subject": "root",
        "X-AUTH-ISSUER": "x",
        "x_debug": "1",
        "some_header": "v",
    }
    overrides = dict.fromkeys(ROUTING_OVERRIDE_HEADERS, "/admin")
    ctx = ctx_with({**twins, **overrides, "x-request-id": "keep", "authorization": "keep"})
    strip_spoofable(ctx)
    assert set(ctx.request.headers) == {"x-request-id", "authorization"}
    assert set(ctx.request_headers_out.remove) == set(twins) | ROUTING_OVERRIDE_HEADERS


def test_a_role_with_a_comma_can_never_read_as_two_roles():
    ctx = ctx_with({})
    publish(
        ctx,
        Identity(
            subject="alice", roles=frozenset({"admin,ops", "reader", " admin", "50%"}), methods=frozenset({"jwt"})
        ),
    )
    published = ctx.request_headers_out.set["x-auth-roles"]
    assert published == "%20admin,50%25,admin%2Cops,reader"
    assert {unquote(item) for item in published.split(",")} == {"admin,ops", "reader", " admin", "50%"}


def test_control_characters_are_never_published():
    ctx = ctx_with({})
    publish(
        ctx,
        Identity(
            subject="alice\r\nx-injected: yes",
            tenant="t\x00",
            issuer="100%",
            principal="spiffe://example.org/ns/demo/sa/client",
            methods=frozenset({"jwt"}),
        ),
    )
    out = ctx.request_headers_out.set
    assert out["x-auth-subject"] == "alice%0D%0Ax-injected: yes"
    assert out["x-auth-tenant"] == "t%00" and out["x-auth-issuer"] == "100%25"
    assert out["x-auth-principal"] == "spiffe://example.org/ns/demo/sa/client"  # ordinary values unchanged


@given(st.frozensets(st.text(max_size=8), max_size=5))
def test_every_published_list_decodes_to_exactly_its_items(items):
    published = encode_list(frozenset(items))
    if published is None:  # nothing to publish: no header at all
        assert items <= {""}
        return
    decoded = [unquote(item) for item in published.split(",")]
    assert sorted(decoded) == sorted(items)
    assert published.isascii() and published.isprintable() and " " not in published


@given(st.text(max_size=12))
def test_every_published_value_is_printable_and_decodes_to_itself(value):
    published = encode_single(value)
    if value:
        assert unquote(published) == value
        assert not any(c < " " or c == "\x7f" for c in published)
