import pytest

from extproc.capabilities.base import Capability
from extproc.context import Deny, Mode, Phase
from extproc.pipeline import error_body, finish, resolve_route, run_phase
from extproc.policy.model import CompiledRoute, compile_match
from extproc.policy.schema import RouteMatch
from tests import builders


class Recorder(Capability):
    name = "recorder"
    priority = 10

    def __init__(self, label, priority=10, deny=False, raises=False, mode=Mode.ENFORCE, calls=None):
        super().__init__(None, mode)
        self.label, self.priority, self.deny, self.raises = label, priority, deny, raises
        self.calls = calls if calls is not None else []

    async def on_request_headers(self, ctx):
        self.calls.append(self.label)
        ctx.set_request_header(f"x-{self.label}", "1")
        if self.raises:
            raise RuntimeError("boom")
        return Deny(403, "forbidden", f"{self.label} says no") if self.deny else None

    def on_log(self, ctx):
        self.calls.append(f"log:{self.label}")


def context(*capabilities, match=None, unmatched_allow=False):
    route = CompiledRoute("r", "test:1", capabilities, compile_match(RouteMatch(**match)) if match else None)
    return builders.context(builders.policy(route, unmatched_allow=unmatched_allow), "GET", "/x", resolve=False)


async def test_capabilities_run_by_priority_and_stop_at_first_enforced_deny():
    calls = []
    ctx = context(
        Recorder("low", 1, calls=calls), Recorder("high", 100, deny=True, calls=calls), Recorder("mid", 50, calls=calls)
    )
    assert resolve_route(ctx, "r") is None
    deny = await run_phase(ctx, Phase.REQUEST_HEADERS)
    assert deny.reason == "high says no"
    assert calls == ["high"]
    assert [(r.capability, r.decision) for r in ctx.records] == [("recorder", "deny")]


async def test_monitor_mode_records_but_neither_blocks_nor_mutates():
    calls = []
    ctx = context(Recorder("watch", 100, deny=True, mode=Mode.MONITOR, calls=calls), Recorder("next", 1, calls=calls))
    resolve_route(ctx, "r")
    assert await run_phase(ctx, Phase.REQUEST_HEADERS) is None
    assert calls == ["watch", "next"]
    assert ctx.records[0].mode is Mode.MONITOR and ctx.records[0].decision == "deny"
    assert ctx.request_headers_out.set == {"x-next": "1"}  # the monitor's header was not applied


async def test_exception_fails_closed_with_500():
    ctx = context(Recorder("bad", raises=True))
    resolve_route(ctx, "r")
    deny = await run_phase(ctx, Phase.REQUEST_HEADERS)
    assert deny.status == 500 and deny.code == "internal_error"
    assert ctx.records[0].decision == "error"


async def test_exception_in_monitor_mode_does_not_block():
    ctx = context(Recorder("bad", raises=True, mode=Mode.MONITOR))
    resolve_route(ctx, "r")
    assert await run_phase(ctx, Phase.REQUEST_HEADERS) is None
    assert ctx.records[0].decision == "error"


def test_unknown_bound_route_is_denied():
    ctx = context()
    deny = resolve_route(ctx, "nope")
    assert deny.status == 403 and ctx.route is None


def test_unmatched_request_denied_by_default_and_allowed_when_policy_says():
    assert resolve_route(context(match={"path_prefix": "/other/"}), None).status == 403
    assert resolve_route(context(match={"path_prefix": "/other/"}, unmatched_allow=True), None) is None
    ctx = context(match={"path_prefix": "/x"})
    assert resolve_route(ctx, None) is None and ctx.route.name == "r"


def test_finish_runs_every_log_handler_even_after_one_fails():
    calls = []

    class BadLog(Recorder):
        def on_log(self, ctx):
            raise RuntimeError("log broke")

    ctx = context(BadLog("a", 2, calls=calls), Recorder("b", 1, calls=calls))
    resolve_route(ctx, "r")
    finish(ctx)
    assert calls == ["log:b"]


def test_error_body_never_carries_the_reason():
    body = error_body(Deny(403, "forbidden", "jwt signature mismatch on kid k1"), "abc")
    assert b"signature" not in body and b'"decision_id":"abc"' in body


# -- staged edits: monitor isolation by construction ----------------------


class BodyEditor(Capability):
    """Rewrites the request body, then (optionally) refuses or fails."""

    name = "editor"

    def __init__(self, label, priority, mode=Mode.ENFORCE, deny=False, raises=False, seen=None):
        super().__init__(None, mode)
        self.label, self.priority, self.deny, self.raises = label, priority, deny, raises
        self.seen = seen if seen is not None else []

    async def on_request_body(self, ctx):
        self.seen.append(ctx.request_body)
        ctx.replace_request_body(ctx.request_body + self.label.encode())
        ctx.set_request_header(f"x-{self.label}", "1")
        ctx.remove_query_param(self.label)
        if self.raises:
            raise RuntimeError("boom")
        return Deny(400, "bad_request", "no") if self.deny else None


@pytest.mark.parametrize(
    "editor",
    [
        {"mode": Mode.MONITOR},  # monitor: decides, never edits
        {"mode": Mode.MONITOR, "deny": True},
        {"mode": Mode.MONITOR, "raises": True},
    ],
)
async def test_monitor_edits_never_reach_the_traffic_and_enforce_edits_chain(editor):
    seen = []
    ctx = context(
        BodyEditor("m", 30, seen=seen, **editor), BodyEditor("a", 20, seen=seen), BodyEditor("b", 10, seen=seen)
    )
    resolve_route(ctx, "r")
    ctx.request_body = b"body:"
    assert await run_phase(ctx, Phase.REQUEST_BODY) is None
    assert seen == [b"body:", b"body:", b"body:a"]  # the next capability sees an enforce edit, never a monitor one
    assert ctx.request_body == b"body:ab" and ctx.request_body_replaced
    assert ctx.request_headers_out.set == {"x-a": "1", "x-b": "1"}
    assert ctx.query_remove == ["a", "b"]


async def test_a_failing_enforce_capability_leaves_no_half_edit():
    ctx = context(BodyEditor("bad", 10, raises=True))
    resolve_route(ctx, "r")
    ctx.request_body = b"body"
    assert (await run_phase(ctx, Phase.REQUEST_BODY)).status == 500
    assert ctx.request_body == b"body" and not ctx.request_body_replaced and not ctx.request_headers_out


def _pii(entities, mode):
    from extproc.capabilities.pii import Pii

    return Pii(Pii.Config(entities=entities), mode)


async def test_monitor_pii_does_not_redact_what_enforce_pii_leaves():
    # The finding: pii (monitor, EMAIL) + pii (enforce, SSN) on one route sent
    # both redacted, because the monitor one edited the shared parsed request.
    import json

    for order in ((Mode.MONITOR, Mode.ENFORCE), (Mode.ENFORCE, Mode.MONITOR)):
        email_mode, ssn_mode = order
        route = CompiledRoute(
            "r", "test:1", [_pii({"EMAIL": "redact"}, email_mode), _pii({"US_SSN": "redact"}, ssn_mode)], None
        )
        ctx = builders.chat(route, [builders.user("mail alice@example.com ssn 078-05-1120")])
        assert await run_phase(ctx, Phase.REQUEST_BODY) is None
        sent = json.loads(ctx.request_body)["messages"][0]["content"] if ctx.request_body_replaced else ""
        if email_mode is Mode.MONITOR:
            assert sent == "mail alice@example.com ssn [US_SSN_1]"
        else:
            assert sent == "mail [EMAIL_1] ssn 078-05-1120"
