"""The `rbac` capability: deny overrides allow, deny by default, path
patterns, conditions on identity fields and claims, load-time validation."""

from __future__ import annotations

import textwrap

import pytest
from pydantic import ValidationError

from extproc.capabilities.rbac import Rbac, RbacConfig, compile_path_pattern
from extproc.context import ANONYMOUS, Identity, Mode
from extproc.policy.loader import PolicyLoadError, load_policy_dir
from extproc.runtime import Runtime
from tests import builders


def make(*rules: dict) -> Rbac:
    return Rbac(RbacConfig.model_validate({"rules": list(rules)}), Mode.ENFORCE)


def user(subject="alice", roles=(), methods=("jwt",), claims=None, **fields) -> Identity:
    return Identity(subject=subject, roles=frozenset(roles), methods=frozenset(methods), claims=claims or {}, **fields)


async def decide(
    cap: Rbac, identity: Identity = ANONYMOUS, path: str = "/api/x", method: str = "GET", host: str = "api.example.com"
):
    ctx = builders.context(None, method, path, host=host, who=identity)
    return await cap.on_request_headers(ctx), ctx


async def allowed(cap, *args, **kwargs) -> bool:
    deny, _ = await decide(cap, *args, **kwargs)
    return deny is None


# -- the decision -----------------------------------------------------------------

DEMO_RULES = [
    {"name": "admins", "who": {"roles": ["admin"]}, "paths": ["/api/**"]},
    {
        "name": "readers",
        "who": {"roles": ["reader"]},
        "methods": ["GET", "HEAD"],
        "paths": ["/api/**"],
        "except_paths": ["/api/admin/**"],
    },
]


@pytest.mark.parametrize(
    "roles, method, path, expected",
    [
        (["reader"], "GET", "/api/hello", None),
        (["reader"], "HEAD", "/api/hello", None),
        (["reader"], "GET", "/api", None),  # ** also matches nothing
        (["reader"], "POST", "/api/hello", 403),
        (["reader"], "GET", "/api/admin/x", 403),
        (["reader"], "GET", "/api/admin", 403),  # the carve-out covers the directory itself
        (["reader"], "GET", "/api/admin/../admin/x", 403),  # normalized before matching
        (["reader"], "GET", "/api/%61dmin/x", 403),  # so is percent-encoding
        (["reader"], "GET", "/api/administrators", None),  # a segment, not a string prefix
        (["reader"], "GET", "/other", 403),
        (["admin"], "DELETE", "/api/admin/x", None),
        (["reader", "admin"], "POST", "/api/admin/x", None),
        ([], "GET", "/api/hello", 403),
        (["Reader"], "GET", "/api/hello", 403),  # role names are exact
    ],
)
async def test_demo_rules(roles, method, path, expected):
    deny, _ = await decide(make(*DEMO_RULES), user(roles=roles), path, method)
    assert (deny.status if deny else None) == expected


async def test_default_deny_is_401_for_anonymous_and_403_for_authenticated():
    cap = make(*DEMO_RULES)
    deny, _ = await decide(cap, ANONYMOUS)
    assert deny.status == 401 and deny.code == "unauthenticated"
    assert dict(deny.headers)["www-authenticate"] == 'Bearer realm="extproc"'
    deny, _ = await decide(cap, user(roles=["nobody"]))
    assert deny.status == 403 and deny.code == "forbidden" and deny.reason == "no allow rule matched"


async def test_deny_overrides_allow_whatever_the_order():
    deny_first = make(
        {"name": "no-delete", "effect": "deny", "methods": ["DELETE"]}, {"name": "admins", "who": {"roles": ["admin"]}}
    )
    allow_first = make(
        {"name": "admins", "who": {"roles": ["admin"]}}, {"name": "no-delete", "effect": "deny", "methods": ["DELETE"]}
    )
    for cap in (deny_first, allow_first):
        deny, _ = await decide(cap, user(roles=["admin"]), method="DELETE")
        assert deny.status == 403 and deny.reason == "deny rule no-delete"
        assert await allowed(cap, user(roles=["admin"]), method="GET")
    # A deny rule applies to anonymous callers too (403, not a login prompt).
    deny, _ = await decide(deny_first, ANONYMOUS, method="DELETE")
    assert deny.status == 403


async def test_the_matching_rule_is_recorded():
    _, ctx = await decide(make(*DEMO_RULES), user(roles=["reader"]))
    assert ctx.established.rbac_rule == "readers"


async def test_subjects_principals_hosts_and_methods():
    cap = make(
        {"name": "svc", "who": {"subjects": ["svc-*"]}, "hosts": ["API.example.com", "*.internal"]},
        {"name": "wl", "who": {"principals": ["spiffe://example.org/ns/demo/*"]}, "paths": ["/internal/**"]},
    )
    assert await allowed(cap, user(subject="svc-build"), host="api.example.com:8443")
    assert await allowed(cap, user(subject="svc-build"), host="db.internal")
    assert not await allowed(cap, user(subject="svc-build"), host="api.example.com.evil")
    assert not await allowed(cap, user(subject="alice"))
    assert not await allowed(cap, user(subject=None))
    wl = user(subject=None, methods=("mtls",), principal="spiffe://example.org/ns/demo/sa/client")
    assert await allowed(cap, wl, path="/internal/x")
    assert not await allowed(cap, wl, path="/api/x")
    assert not await allowed(
        cap, user(subject=None, principal="spiffe://example.org/ns/other/sa/x"), path="/internal/x"
    )


async def test_authenticated_by_requires_every_listed_method():
    cap = make({"name": "workload-and-user", "who": {"authenticated_by": ["mtls", "jwt"]}})
    principal = "spiffe://example.org/ns/demo/sa/client"
    assert await allowed(cap, user(methods=("mtls", "jwt"), principal=principal))
    assert await allowed(cap, user(methods=("mtls", "jwt", "api_key"), principal=principal))
    deny, _ = await decide(cap, user(methods=("jwt",)))
    assert deny.status == 403
    deny, _ = await decide(cap, user(subject=None, methods=("mtls",), principal=principal))
    assert deny.status == 403
    deny, _ = await decide(cap, ANONYMOUS)
    assert deny.status == 401


# -- path patterns ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, path, matches",
    [
        ("/api/*", "/api/x", True),
        ("/api/*", "/api/x/y", False),
        ("/api/*", "/api", False),
        ("/api/*", "/api/", False),
        ("/api/**", "/api", True),
        ("/api/**", "/api/", True),
        ("/api/**", "/api/x/y/z", True),
        ("/api/**", "/apix", False),
        ("/api/**/edit", "/api/edit", True),
        ("/api/**/edit", "/api/a/b/edit", True),
        ("/api/**/edit", "/api/a/b/edit/x", False),
        ("/api/v*/users", "/api/v2/users", True),
        ("/api/v*/users", "/api/v2/x/users", False),
        ("/files/a.txt", "/files/a.txt", True),
        ("/files/a.txt", "/files/aXtxt", False),  # a literal dot, not a regex dot
        ("/tenants/{tenant}/**", "/tenants/acme/x", True),
        ("/tenants/{tenant}/**", "/tenants/", False),
        ("/tenants/{tenant}", "/tenants/acme", True),
        ("/tenants/{tenant}", "/tenants/acme/x", False),
        ("/", "/", True),
        ("/", "/x", False),
        ("/**", "/anything/at/all", True),
        ("/dir/", "/dir/", True),
        ("/dir/", "/dir", False),
    ],
)
def test_path_patterns(pattern, path, matches):
    assert (compile_path_pattern(pattern).fullmatch(path) is not None) is matches


@pytest.mark.parametrize(
    "pattern", ["api/x", "", "/x/{Tenant}", "/x/pre{id}", "/x/{id}.json", "/x/{id}/{id}", "/x/{a-b}"]
)
def test_invalid_path_patterns(pattern):
    with pytest.raises(ValueError):
        compile_path_pattern(pattern)
    with pytest.raises(ValidationError):  # a ValueError, so the loader reports it with a line
        RbacConfig.model_validate({"rules": [{"name": "r", "paths": [pattern]}]})


# -- conditions -----------------------------------------------------------------------------

TENANT_RULE = {
    "name": "own-tenant",
    "who": {"conditions": [{"field": "tenant", "equals_param": "tenant"}]},
    "paths": ["/tenants/{tenant}/**"],
}


@pytest.mark.parametrize(
    "tenant, path, expected",
    [
        ("acme", "/tenants/acme/orders", None),
        ("acme", "/tenants/acme", None),
        ("acme", "/tenants/globex/orders", 403),
        ("acme", "/tenants/acme/../globex/orders", 403),  # normalized: it is globex's
        ("acme", "/tenants/%61cme/orders", None),  # decoded: it is acme's
        ("acme", "/tenants/ACME/orders", 403),
        ("acme", "/tenants/acme2/orders", 403),
        (None, "/tenants/acme/orders", 403),  # no tenant claim: no access to any tenant
        ("", "/tenants//orders", 403),
    ],
)
async def test_tenant_must_equal_the_path_segment(tenant, path, expected):
    deny, _ = await decide(make(TENANT_RULE), user(tenant=tenant), path)
    assert (deny.status if deny else None) == expected


async def test_tenant_rule_with_anonymous_caller():
    deny, _ = await decide(make(TENANT_RULE), ANONYMOUS, "/tenants/acme/x")
    assert deny.status == 401


async def test_equals_param_on_a_claim_and_a_number():
    cap = make(
        {
            "name": "own-account",
            "paths": ["/accounts/{account}/**", "/a/{account}"],
            "who": {"conditions": [{"field": "claims.account.id", "equals_param": "account"}]},
        }
    )
    assert await allowed(cap, user(claims={"account": {"id": 42}}), "/accounts/42/x")
    assert await allowed(cap, user(claims={"account": {"id": "42"}}), "/a/42")
    assert not await allowed(cap, user(claims={"account": {"id": 42}}), "/accounts/43/x")
    assert not await allowed(cap, user(claims={"account": 42}), "/accounts/42/x")


@pytest.mark.parametrize(
    "condition, claims, expected",
    [
        ({"field": "claims.plan", "equals": "pro"}, {"plan": "pro"}, True),
        ({"field": "claims.plan", "equals": "pro"}, {"plan": "free"}, False),
        ({"field": "claims.plan", "equals": "pro"}, {"plan": ["pro"]}, False),
        ({"field": "claims.level", "equals": 3}, {"level": 3}, True),
        ({"field": "claims.level", "equals": 3}, {"level": "3"}, False),
        ({"field": "claims.mfa", "equals": True}, {"mfa": True}, True),
        ({"field": "claims.mfa", "equals": True}, {"mfa": 1}, False),  # 1 == True in Python; not here
        ({"field": "claims.mfa", "equals": True}, {"mfa": "true"}, False),
        ({"field": "claims.level", "equals": 1}, {"level": True}, False),
        ({"field": "claims.level", "equals": 0}, {"level": False}, False),
        ({"field": "claims.plan", "one_of": ["pro", "team"]}, {"plan": "team"}, True),
        ({"field": "claims.plan", "one_of": ["pro", "team"]}, {"plan": "free"}, False),
        ({"field": "claims.plan", "one_of": [1, 2]}, {"plan": True}, False),
        ({"field": "claims.plan", "one_of": [1, 2]}, {"plan": 2}, True),
        ({"field": "claims.groups", "contains": "ops"}, {"groups": ["dev", "ops"]}, True),
        ({"field": "claims.groups", "contains": "ops"}, {"groups": "dev ops"}, True),
        ({"field": "claims.groups", "contains": "ops"}, {"groups": "devops"}, False),
        ({"field": "claims.groups", "contains": "ops"}, {"groups": {"ops": True}}, False),
        ({"field": "claims.org.role", "equals": "owner"}, {"org": {"role": "owner"}}, True),
        ({"field": "claims.org.role", "equals": "owner"}, {"org": "owner"}, False),
        ({"field": "claims.mfa", "present": True}, {"mfa": False}, True),
        ({"field": "claims.mfa", "present": True}, {}, False),
        ({"field": "claims.mfa", "present": False}, {}, True),
        ({"field": "claims.mfa", "present": False}, {"mfa": None}, False),  # present, even if null
    ],
)
async def test_claim_conditions(condition, claims, expected):
    cap = make({"name": "r", "who": {"conditions": [condition]}})
    assert await allowed(cap, user(claims=claims)) is expected


async def test_identity_field_conditions():
    cap = make(
        {
            "name": "r",
            "who": {
                "conditions": [{"field": "issuer", "equals": "https://idp"}, {"field": "agent_id", "present": False}]
            },
        }
    )
    assert await allowed(cap, user(issuer="https://idp"))
    assert not await allowed(cap, user(issuer="https://idp", agent_id="bot"))  # all conditions must hold
    assert not await allowed(cap, user(issuer="https://other"))


async def test_a_condition_on_a_missing_claim_neither_grants_nor_denies_everyone():
    cap = make(
        {
            "name": "block-suspended",
            "effect": "deny",
            "who": {"conditions": [{"field": "claims.status", "equals": "suspended"}]},
        },
        {
            "name": "block-other-tenants",
            "effect": "deny",
            "who": {"conditions": [{"field": "claims.tenant", "one_of": ["globex"]}]},
        },
        {"name": "pro-only", "who": {"conditions": [{"field": "claims.plan", "equals": "pro"}]}, "paths": ["/pro/**"]},
        {"name": "everyone", "paths": ["/api/**"], "who": {"authenticated_by": ["jwt"]}},
    )
    no_claims = user(claims={})
    assert await allowed(cap, no_claims, "/api/x")  # the deny rules do not fire
    assert not await allowed(cap, no_claims, "/pro/x")  # the allow rule does not either
    assert not await allowed(cap, user(claims={"status": "suspended"}), "/api/x")
    assert not await allowed(cap, user(claims={"tenant": "globex"}), "/api/x")
    assert await allowed(cap, user(claims={"plan": "pro"}), "/pro/x")
    # To refuse callers because a claim is missing, say so.
    strict = make(
        {
            "name": "need-tenant",
            "effect": "deny",
            "who": {"conditions": [{"field": "claims.tenant", "present": False}]},
        },
        {"name": "all"},
    )
    assert not await allowed(strict, no_claims)
    assert await allowed(strict, user(claims={"tenant": "acme"}))


# -- load-time validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules, message",
    [
        ([], "at least 1"),
        ([{"name": "a"}, {"name": "a"}], "unique"),
        ([{"name": "a", "effect": "maybe"}], "effect"),
        ([{"name": "a", "methods": ["FETCH"]}], "FETCH"),
        ([{"name": "a", "paths": ["api"]}], "must start with /"),
        (
            [{"name": "a", "who": {"conditions": [{"field": "tenant", "equals_param": "tenant"}]}}],
            "not every path pattern captures it",
        ),
        (
            [
                {
                    "name": "a",
                    "paths": ["/t/{tenant}/**", "/other/**"],
                    "who": {"conditions": [{"field": "tenant", "equals_param": "tenant"}]},
                }
            ],
            "not every path pattern captures it",
        ),
        (
            [
                {
                    "name": "a",
                    "paths": ["/t/{tenant}/**"],
                    "who": {"conditions": [{"field": "tenant", "equals_param": "org"}]},
                }
            ],
            "{org}",
        ),
        ([{"name": "a", "who": {"conditions": [{"field": "password", "equals": "x"}]}}], "unknown field"),
        ([{"name": "a", "who": {"conditions": [{"field": "claims.", "equals": "x"}]}}], "unknown field"),
        ([{"name": "a", "who": {"conditions": [{"field": "roles", "contains": "x"}]}}], "unknown field"),
        ([{"name": "a", "who": {"conditions": [{"field": "tenant"}]}}], "exactly one"),
        ([{"name": "a", "who": {"conditions": [{"field": "tenant", "equals": "a", "present": True}]}}], "exactly one"),
        ([{"name": "a", "who": {"authenticated_by": ["password"]}}], "authenticated_by"),
        ([{"name": "a", "who": {"role": ["admin"]}}], "role"),
        ([{"name": "a", "paths": ["/x/{id}/{id}"]}], "twice"),
    ],
)
def test_invalid_configs(rules, message):
    with pytest.raises(ValidationError) as info:
        RbacConfig.model_validate({"rules": rules})
    assert message in str(info.value)


def test_load_errors_point_at_the_policy_line(tmp_path):
    (tmp_path / "p.yaml").write_text(
        textwrap.dedent("""\
        routes:
          - name: api
            capabilities:
              - type: rbac
                config:
                  rules:
                    - name: own-tenant
                      paths: ["/tenants/**"]
                      who:
                        conditions: [{field: tenant, equals_param: tenant}]
                    - name: dup
                      paths: ["/x/{id}/{id}"]
    """)
    )
    with pytest.raises(PolicyLoadError) as info:
        load_policy_dir(tmp_path, Runtime())
    text = str(info.value)
    assert "p.yaml:7: routes[0].capabilities[0].config.rules[0]: condition uses path parameter {tenant}" in text
    assert "p.yaml:12: routes[0].capabilities[0].config.rules[1].paths" in text and "twice" in text
