import pytest

from extproc.capabilities.base import Capability
from extproc.context import Deny, HttpRequest, Mode, Phase, RequestContext
from extproc.pipeline import error_body, finish, resolve_route, run_phase
from extproc.policy.model import CompiledRoute, PolicySet, compile_match
from extproc.policy.schema import RouteMatch


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
    policy = PolicySet("rev1", {"r": route}, unmatched_allow=unmatched_allow)
    return RequestContext(policy, HttpRequest("GET", "/x", "h", {}))


async def test_capabilities_run_by_priority_and_stop_at_first_enforced_deny():
    calls = []
    ctx = context(Recorder("low", 1, calls=calls), Recorder("high", 100, deny=True, calls=calls),
                  Recorder("mid", 50, calls=calls))
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
