"""The `mtls` capability: the peer identity Envoy verified, and nothing else."""

from __future__ import annotations

import pytest
from google.protobuf import struct_pb2
from pydantic import ValidationError

from extproc.capabilities.mtls import MtlsAuth, MtlsConfig
from extproc.context import Mode
from tests import builders

DEMO = "spiffe://example.org/ns/demo/sa/client"


def make(**config) -> MtlsAuth:
    return MtlsAuth(MtlsConfig.model_validate(config), Mode.ENFORCE)


async def present(cap: MtlsAuth, principal=None, headers: dict | None = None):
    attributes = {} if principal is None else {"source.principal": principal}
    ctx = builders.context(None, "GET", "/internal/x", headers, attributes=attributes)
    return await cap.on_request_headers(ctx), ctx


@pytest.mark.parametrize(
    "principal, accepted",
    [
        (DEMO, True),
        ("spiffe://example.org/ns/demo/sa/other", True),
        ("spiffe://example.org/ns/demo/x", True),
        ("spiffe://example.org/ns/other/sa/intruder", False),
        ("spiffe://example.org/ns/demo", False),  # the namespace itself, no workload
        ("spiffe://example.org/ns/demox/sa/client", False),  # a prefix lookalike
        ("spiffe://evil.org/ns/demo/sa/client", False),
        ("SPIFFE://example.org/ns/demo/sa/client", False),  # matching is exact, case included
        ("xspiffe://example.org/ns/demo/sa/client", False),
        (" " + DEMO, False),
    ],
)
async def test_principal_globs(principal, accepted):
    deny, ctx = await present(make(principals=["spiffe://example.org/ns/demo/*"]), principal)
    if accepted:
        assert deny is None
        assert ctx.identity.principal == principal and ctx.identity.methods == {"mtls"}
        assert ctx.request_headers_out.set == {"x-auth-principal": principal, "x-auth-methods": "mtls"}
    else:
        assert deny is not None and deny.status == 403 and deny.code == "forbidden"
        assert principal in deny.reason
        assert not ctx.identity.authenticated and not ctx.request_headers_out


async def test_several_globs_and_exact_principals():
    cap = make(principals=[DEMO, "spiffe://example.org/ns/jobs/sa/batch-?"])
    assert (await present(cap, DEMO))[0] is None
    assert (await present(cap, "spiffe://example.org/ns/jobs/sa/batch-1"))[0] is None
    assert (await present(cap, "spiffe://example.org/ns/jobs/sa/batch-10"))[0].status == 403
    assert (await present(cap, DEMO + "/more"))[0].status == 403


async def test_no_principals_accepts_any_verified_certificate():
    deny, ctx = await present(make(), "spiffe://anything/at/all")
    assert deny is None and ctx.identity.principal == "spiffe://anything/at/all"


@pytest.mark.parametrize("principal", [None, "", struct_pb2.Value(number_value=1)])
async def test_a_missing_principal_is_unauthenticated(principal):
    deny, ctx = await present(make(principals=["spiffe://example.org/ns/demo/*"]), principal)
    assert deny.status == 401 and deny.code == "unauthenticated"
    assert dict(deny.headers)["www-authenticate"] == 'Bearer realm="extproc"'
    assert not ctx.identity.authenticated


async def test_optional_mtls_continues_anonymous_but_still_checks_a_present_principal():
    cap = make(principals=["spiffe://example.org/ns/demo/*"], required=False)
    deny, ctx = await present(cap, "")
    assert deny is None and not ctx.identity.authenticated
    assert (await present(cap, "spiffe://example.org/ns/other/sa/x"))[0].status == 403


async def test_client_sent_certificate_headers_are_never_an_identity():
    headers = {
        "x-forwarded-client-cert": f"By=spiffe://gw;URI={DEMO}",
        "x-ssl-client-s-dn": "CN=client",
        "x-client-principal": DEMO,
    }
    deny, ctx = await present(make(principals=[DEMO]), None, headers)
    assert deny.status == 401 and ctx.identity.principal is None


async def test_mtls_adds_to_an_existing_identity():
    cap = make()
    ctx = builders.context(attributes={"source.principal": DEMO}, who=builders.identity("alice", roles=["reader"]))
    assert await cap.on_request_headers(ctx) is None
    ident = ctx.identity
    assert (ident.subject, ident.principal, ident.methods) == ("alice", DEMO, {"jwt", "mtls"})
    assert ident.roles == {"reader"}


def test_blank_principals_are_refused():
    with pytest.raises(ValidationError):
        MtlsConfig.model_validate({"principals": ["spiffe://x", "  "]})
