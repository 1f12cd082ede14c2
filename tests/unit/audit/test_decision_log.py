"""The decision log: OPA-shaped lines, masking, a writer that never blocks."""

from __future__ import annotations

import json
import threading

from extproc.audit.decision_log import DecisionLog, HeaderMask
from extproc.audit.record import build
from extproc.context import Deny, Identity, RequestContext
from tests import builders

LABELS = {"service": "extproc", "instance_id": "host/1", "version": "0.1.0"}


def context(headers: dict, path="/api/x?token=abc") -> RequestContext:
    policy = builders.policy(builders.route(name="api"), revision="rev9")
    return builders.context(policy, "POST", path, headers, host="gw.example", route_name="api", via="ext_proc")


def test_default_mask_covers_credentials():
    mask = HeaderMask()
    for name in (
        "authorization",
        "Proxy-Authorization",
        "cookie",
        "x-api-key",
        "x-auth-token",
        "x-session-id",
        "x-client-secret",
        "x-amz-security-token",
        "x-forwarded-client-cert",
        "x-signing-key",
    ):
        assert mask.masked_name(name), name
    for name in ("user-agent", "accept", "x-request-id", "content-type", "keep-alive"):
        assert not mask.masked_name(name), name
    assert HeaderMask(["x-tenant-*"]).masked_name("x-tenant-secret-ish")


def test_values_that_look_sensitive_are_erased_whatever_the_name():
    erased: list[str] = []
    out = HeaderMask().apply(
        {
            ":path": "/api/x?token=abc",
            "x-forwarded-user": "dave@example.com",
            "x-upstream-auth": "Bearer abcdef",
            "x-jwt": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
            "x/odd~name": "a@b.co",
            "x-plain": "hello",
        },
        erased,
    )
    assert out == {"x-plain": "hello"}
    assert erased == [
        "/input/headers/x-forwarded-user",
        "/input/headers/x-upstream-auth",
        "/input/headers/x-jwt",
        "/input/headers/x~1odd~0name",
    ]


def test_entry_is_opa_shaped(tmp_path):
    log = DecisionLog(str(tmp_path / "d.jsonl"), LABELS)
    try:
        ctx = context({"authorization": "Bearer s3cret", "user-agent": "curl/8", "cookie": "sid=1"})
        ctx.identity = Identity(
            subject="alice",
            roles=frozenset({"reader"}),
            methods=frozenset({"jwt"}),
            claims={"email": "alice@example.com"},
        )
        ctx.deny = Deny(403, "forbidden", "no allow rule matched")
        entry = log.entry(ctx, build(ctx), 1_790_000_000_123_456_789, "ab" * 16, "cd" * 8)
    finally:
        log.close()
    assert entry["decision_id"] == ctx.decision_id and entry["revision"] == "rev9"
    assert entry["timestamp"] == "2026-09-21T14:13:20.123456Z"
    assert entry["path"] == "extproc/ext_proc/api"
    assert entry["input"] == {
        "method": "POST",
        "path": "/api/x",
        "host": "gw.example",
        "scheme": "http",
        "route": "api",
        "filter": "ext_proc",
        "headers": {"user-agent": "curl/8"},
        "identity": {"subject": "alice", "roles": ["reader"], "methods": ["jwt"]},
    }
    assert entry["result"] == {
        "allowed": False,
        "status": 403,
        "code": "forbidden",
        "reason": "no allow rule matched",
        "records": [],
    }
    assert entry["erased"] == [
        "/input/headers/authorization",
        "/input/headers/cookie",
        "/input/query",
        "/input/identity/claims",
    ]
    assert entry["labels"] == LABELS and entry["trace_id"] == "ab" * 16 and entry["span_id"] == "cd" * 8
    assert "s3cret" not in json.dumps(entry) and "alice@example.com" not in json.dumps(entry)


def test_lines_are_written_whole_and_parse(tmp_path):
    path = tmp_path / "d.jsonl"
    log = DecisionLog(str(path), LABELS)
    for i in range(50):
        ctx = context({"x-n": str(i)}, path="/api/x")
        log.submit(log.entry(ctx, build(ctx), 1_000_000_000 * i))
    log.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line)["input"]["headers"]["x-n"] for line in lines] == [str(i) for i in range(50)]


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    path = tmp_path / "d.jsonl"
    drops = []
    log = DecisionLog(str(path), LABELS, queue_size=2, on_drop=lambda: drops.append(1))
    gate = threading.Event()
    real_run_write = log._queue.get

    def slow_get(*args, **kwargs):  # hold the writer so the queue fills up
        gate.wait(5)
        return real_run_write(*args, **kwargs)

    log._queue.get = slow_get
    try:
        ctx = context({}, path="/api/x")
        entry = log.entry(ctx, build(ctx), 0)
        for _ in range(10):
            log.submit(entry)
        assert log.dropped >= 7 and len(drops) == log.dropped
    finally:
        gate.set()
        log.close()
