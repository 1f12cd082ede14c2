"""Switching the audit trail on and off; the metrics it serves."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from extproc import audit
from extproc.audit.telemetry import Telemetry, TelemetryOptions
from extproc.context import RequestContext
from extproc.pipeline import finish, start
from tests import builders


def clean_env() -> dict:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OTEL_") and not k.startswith("EXTPROC_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }


@pytest.mark.integration  # a fresh interpreter
def test_nothing_configured_installs_nothing_and_loads_nothing():
    code = """
import sys
from extproc import audit
from extproc.audit.telemetry import Telemetry, TelemetryOptions
t = Telemetry.start(TelemetryOptions())
print(audit.SINK is None, audit.TRACING, t.enabled,
      any(m.startswith(("opentelemetry.sdk.trace", "prometheus_client")) for m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False", "False", "False"], out.stderr


def context() -> RequestContext:
    return builders.context(builders.route(name="api"), "GET", "/api/x", via="ext_authz", resolve=False)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def value(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def telemetry(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    t = Telemetry.start(TelemetryOptions(metrics_port=0, decision_log=str(tmp_path / "d.jsonl")))
    yield t
    t.close()
    assert audit.SINK is None and audit.TRACING is False


async def test_metrics_and_decision_log_from_finished_requests(telemetry, tmp_path):
    assert audit.SINK is telemetry and audit.TRACING is False
    key = 'extproc_decisions_total{decision="allow",filter="ext_authz",route="api"}'
    before = value(scrape(telemetry.metrics_port), key)
    ctx = context()
    await start(ctx, "api")
    finish(ctx)  # inside a running loop: emitted on the next iteration
    ctx2 = context()
    await start(ctx2, "api")
    finish(ctx2)
    await asyncio.sleep(0)
    text = scrape(telemetry.metrics_port)
    assert value(text, key) == before + 2
    assert 'extproc_decision_duration_seconds_count{filter="ext_authz"}' in text
    telemetry.decision_log.close()
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [line["decision_id"] for line in lines] == [ctx.decision_id, ctx2.decision_id]


def test_policy_reload_counters_are_carried_into_metrics(telemetry):
    class Store:
        reloads_ok = 0
        reloads_failed = 0

    store = Store()
    ok = 'extproc_policy_reloads_total{result="ok"}'
    failed = 'extproc_policy_reloads_total{result="failed"}'
    text = scrape(telemetry.metrics_port)
    base_ok, base_failed = value(text, ok), value(text, failed)
    store.reloads_ok, store.reloads_failed = 2, 1
    telemetry.sync_policy_reloads(store)
    store.reloads_ok = 3
    telemetry.sync_policy_reloads(store)
    text = scrape(telemetry.metrics_port)
    assert value(text, ok) == base_ok + 3 and value(text, failed) == base_failed + 1


def test_the_audit_step_never_raises_into_a_request(telemetry, caplog):
    broken = context()
    broken.request = None  # anything the record builder cannot read
    finish(broken)  # no running loop: emitted inline, and swallowed
    assert telemetry._errors == 1
    assert "audit step failed" in caplog.text


def test_quota_and_redis_hooks_are_importable_counters():
    from extproc.audit.metrics import QUOTA_DECISIONS, REDIS_ERRORS

    QUOTA_DECISIONS.labels(limit="per-user", result="deny").inc()
    REDIS_ERRORS.labels(operation="acquire").inc()
    assert QUOTA_DECISIONS.labels(limit="per-user", result="deny")._value.get() >= 1


def test_an_unwritable_decision_log_fails_start_up_once(tmp_path, capsys):
    from extproc.cli import main

    assert (
        main(["serve", "--policies", str(tmp_path), "--decision-log", str(tmp_path / "no" / "such" / "d.jsonl")]) == 2
    )
    assert "cannot write the decision log" in capsys.readouterr().err


def test_a_failed_start_leaves_nothing_running(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    with pytest.raises(OSError):
        Telemetry.start(TelemetryOptions(metrics_port=0, decision_log=str(tmp_path / "missing" / "d.jsonl")))
    assert audit.SINK is None
