"""The audit trail end to end: real Envoy with its OpenTelemetry tracer, the
real processor exporting its spans, both to an in-process OTLP/gRPC receiver;
the decision log and the Prometheus endpoint of a real `extproc serve`."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from extproc.audit.receiver import OtlpReceiver
from extproc.local.demo_keys import load_demo_key, mint
from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port

REPO = Path(__file__).resolve().parents[2]
EMAIL = "carol.secret-inbox@example.com"
# The tests' own policy (the demo one evolves): Envoy binds routes `api`
# (ext_authz) and `proc` (ext_proc) to these names.
POLICY = """
version: 1
defaults: { unmatched: deny }
routes:
  - name: api
    match: { path_prefix: /api/ }
    capabilities:
      - type: jwt
        config:
          issuers:
            - { issuer: https://demo.extproc.local, jwks: { file: keys/demo-jwks.json }, audiences: [extproc-demo] }
      - type: rbac
        config:
          rules:
            - { name: readers-read, who: { roles: [reader] }, methods: [GET], paths: ["/api/**"],
                except_paths: ["/api/admin/**"] }
      - type: header_match
        config:
          deny: [{ name: x-debug, present: true }]
      - type: headers
        config:
          request: { set: { x-gateway: governance } }
  - name: proc
    match: { path_prefix: /proc/ }
    capabilities:
      - type: jwt
        config:
          issuers:
            - { issuer: https://demo.extproc.local, jwks: { file: keys/demo-jwks.json }, audiences: [extproc-demo] }
      - type: headers
        config:
          response: { set: { x-governed-by: extproc } }
"""
# Envoy's OpenTelemetry tracer flushes every 5 s or every 5 spans by
# default; the tests make it flush at once (runtime keys, not config).
FAST_FLUSH = {"tracing.opentelemetry.flush_interval_ms": 100, "tracing.opentelemetry.min_flush_spans": 1}


class TracedGateway:
    """Envoy (envoy/gateway.yaml, `otel` cluster -> otel_port) + processor +
    echo upstream, on ephemeral loopback ports; stopped by PID."""

    def __init__(
        self,
        tmp_path: Path,
        certs: Path,
        otel_port: int,
        env: dict,
        processor_args=(),
        workers=1,
        processor_port: int | None = None,
    ):
        self.tmp_path = tmp_path
        policies = tmp_path / "policies"
        policies.mkdir()
        shutil.copytree(REPO / "policies" / "keys", policies / "keys")
        (policies / "audit.yaml").write_text(POLICY)
        self.echo = self.processor = self.envoy = None
        self.processor_log = tmp_path / "processor.log"
        try:
            self.echo = EchoServer().start()
            self.processor = ProcessorProcess(
                str(policies),
                port=processor_port,
                workers=workers,
                extra_args=tuple(processor_args),
                env=env,
                log_path=str(self.processor_log),
            ).wait_ready()
            self.port, admin = free_port(), free_port()
            config = render(
                ENVOY_DIR / "gateway.yaml",
                {
                    "gateway": self.port,
                    "gateway_mtls": free_port(),
                    "governance": self.processor.port,
                    "upstream": self.echo.port,
                    "otel": otel_port,
                },
                admin_port=admin,
                certs_dir=certs,
            )
            config["layered_runtime"] = {"layers": [{"name": "test", "static_layer": FAST_FLUSH}]}
            self.envoy = EnvoyProcess(config, admin, log_path=str(tmp_path / "envoy.log"))
            self.envoy.wait_ready()
        except BaseException:
            self.close()
            raise
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        for process in (self.envoy, self.processor, self.echo):
            if process is not None:
                process.stop()


@pytest.fixture
def receiver():
    r = OtlpReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def traced(tmp_path, demo_certs):
    made = []

    def make(otel_port: int, env: dict | None = None, processor_args=(), workers=1, processor_port=None):
        directory = tmp_path / f"gw{len(made)}"
        directory.mkdir()
        gw = TracedGateway(directory, demo_certs, otel_port, env or {}, processor_args, workers, processor_port)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


def otel_env(endpoint: str, **extra) -> dict:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_SERVICE_NAME": "extproc-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SDK_DISABLED": "false",
        **extra,
    }


def token(roles=("reader",), sub="alice") -> str:
    return mint(load_demo_key(), sub=sub, roles=list(roles))


def processor_span(spans, decision_id: str):
    return next(
        (s for s in spans if s.service == "extproc-test" and s.attributes.get("extproc.decision_id") == decision_id),
        None,
    )


def trace_of(receiver: OtlpReceiver, decision_id: str, envoy_spans: int):
    """The processor's span for a decision plus Envoy's spans of the same
    trace, once all have arrived."""

    def ready(spans):
        mine = processor_span(spans, decision_id)
        if mine is None:
            return None
        envoy = [s for s in spans if s.service == "envoy" and s.trace_id == mine.trace_id]
        return (mine, envoy) if len(envoy) >= envoy_spans else None

    found = receiver.wait_for(ready, timeout=30)
    assert found, f"spans never arrived: {[(s.service, s.name) for s in receiver.spans()]}"
    return found


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_ext_authz_request_is_one_trace_with_the_processor_span_under_envoys(traced, receiver):
    gw = traced(receiver.port, otel_env(receiver.endpoint))
    bearer = token()
    r = gw.client.get("/api/hello", headers={"authorization": f"Bearer {bearer}", "x-contact": EMAIL})
    assert r.status_code == 200
    decision_id = r.headers["x-decision-id"]

    # Envoy: the request's ingress span and its ext_authz gRPC call (egress).
    mine, envoy = trace_of(receiver, decision_id, envoy_spans=2)
    parent = next((s for s in envoy if s.span_id == mine.parent_span_id), None)
    assert parent is not None, "the processor span's parent is not an Envoy span"
    assert "Authorization.Check" in parent.name
    assert parent.parent_span_id in {s.span_id for s in envoy}  # under Envoy's request span
    assert mine.name == "ext_authz api"
    assert mine.kind == 2  # SERVER

    a = mine.attributes
    assert a["extproc.decision"] == "allow" and a["extproc.route"] == "api" and a["extproc.filter"] == "ext_authz"
    assert a["extproc.policy.revision"] and a["enduser.id"] == "alice"
    assert a["extproc.identity.roles"] == ["reader"] and a["extproc.identity.methods"] == ["jwt"]
    assert a["http.request.method"] == "GET" and a["url.path"] == "/api/hello"
    events = dict(mine.events)
    assert {"jwt: allow", "rbac: allow", "header_match: allow", "headers: allow"} <= set(events)
    assert events["rbac: allow"] == {
        "extproc.capability": "rbac",
        "extproc.mode": "enforce",
        "extproc.decision": "allow",
        "extproc.policy.revision": a["extproc.policy.revision"],
    }
    assert a["extproc.rbac.rule"] == "readers-read"

    # Nothing secret or personal in anything exported, by either exporter.
    signature = bearer.rsplit(".", 1)[1]
    for raw in receiver.raw:
        assert bearer.encode() not in raw and signature.encode() not in raw
        assert EMAIL.encode() not in raw and b"carol" not in raw


def test_denial_and_ext_proc_spans(traced, receiver):
    gw = traced(receiver.port, otel_env(receiver.endpoint))
    r = gw.client.get("/api/admin/users", headers={"authorization": f"Bearer {token()}"})
    assert r.status_code == 403
    mine, _ = trace_of(receiver, r.headers["x-decision-id"], envoy_spans=2)
    a = mine.attributes
    assert a["extproc.decision"] == "deny" and a["extproc.status_code"] == 403 and a["extproc.code"] == "forbidden"
    events = dict(mine.events)
    assert events["rbac: deny"]["extproc.reason"] == "no allow rule matched"
    assert events["rbac: deny"]["extproc.code"] == "forbidden"
    assert "header_match: allow" not in events  # never ran: the denial stopped the request

    r = gw.client.get("/proc/thing", headers={"authorization": f"Bearer {token()}"})
    assert r.status_code == 200
    mine, envoy = trace_of(receiver, r.headers["x-decision-id"], envoy_spans=2)
    parent = next(s for s in envoy if s.span_id == mine.parent_span_id)
    assert "ExternalProcessor.Process" in parent.name
    assert mine.name == "ext_proc proc" and mine.attributes["http.response.status_code"] == 200


def test_export_endpoint_down_requests_succeed_and_dropped_spans_are_counted(traced):
    dead = free_port()  # nothing listens here
    metrics_port = free_port()
    gw = traced(
        dead,
        otel_env(f"http://127.0.0.1:{dead}", OTEL_EXPORTER_OTLP_TIMEOUT="1"),
        processor_args=("--metrics-port", str(metrics_port)),
    )
    bearer = token()
    for _ in range(5):
        r = gw.client.get("/api/hello", headers={"authorization": f"Bearer {bearer}"})
        assert r.status_code == 200
    deadline = time.monotonic() + 30
    while True:
        text = metrics_text(metrics_port)
        dropped = metric_value(text, "extproc_spans_dropped_total", reason="export_failed")
        if dropped >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert dropped >= 5, text
    assert metric_value(text, "extproc_decisions_total", filter="ext_authz", route="api", decision="allow") == 5
    assert metric_value(text, "extproc_capability_decisions_total", capability="rbac", decision="allow") == 5
    assert metric_value(text, "extproc_decision_duration_seconds_count", filter="ext_authz") == 5
    assert "extproc_policy_reloads_total" in text


def test_decision_log_lines_are_json_and_mask_credentials(traced, receiver, tmp_path):
    log_path = tmp_path / "decisions.jsonl"
    gw = traced(
        receiver.port,
        otel_env(receiver.endpoint),
        processor_args=("--decision-log", str(log_path), "--decision-log-mask", "x-internal-*"),
    )
    bearer = token()
    sent = {
        "authorization": f"Bearer {bearer}",
        "cookie": "session=s3cr3t-cookie-value",
        "x-api-key": "k-123456789-secret",
        "x-contact": EMAIL,
        "x-internal-note": "masked-by-flag",
        "x-visible": "kept",
    }
    allowed = gw.client.get("/api/hello?access_token=q-secret-in-query", headers=sent)
    denied = gw.client.get("/api/admin/users", headers={"authorization": f"Bearer {bearer}"})
    assert allowed.status_code == 200 and denied.status_code == 403

    def entries():
        if not log_path.exists():
            return None
        lines = log_path.read_text().splitlines()
        return [json.loads(line) for line in lines] if len(lines) >= 2 else None

    deadline = time.monotonic() + 20
    while (found := entries()) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found, "no decision log lines"
    by_id = {e["decision_id"]: e for e in found}
    ok = by_id[allowed.headers["x-decision-id"]]
    assert ok["result"]["allowed"] is True and ok["input"]["route"] == "api"
    assert ok["input"]["path"] == "/api/hello" and ok["input"]["method"] == "GET"
    assert ok["input"]["identity"]["subject"] == "alice" and ok["input"]["identity"]["roles"] == ["reader"]
    assert ok["input"]["headers"]["x-visible"] == "kept"
    for name in ("authorization", "cookie", "x-api-key", "x-contact", "x-internal-note"):
        assert name not in ok["input"]["headers"]
        assert f"/input/headers/{name}" in ok["erased"]
    assert "/input/query" in ok["erased"]
    assert ok["labels"]["service"] == "extproc-test" and ok["labels"]["version"]
    assert ok["revision"] and ok["timestamp"].endswith("Z")
    assert [r["capability"] for r in ok["result"]["records"]] == ["jwt", "rbac", "header_match", "headers"]
    # The log line and the trace find each other.
    mine, _ = trace_of(receiver, ok["decision_id"], envoy_spans=1)
    assert ok["trace_id"] == mine.trace_id

    no = by_id[denied.headers["x-decision-id"]]
    assert no["result"]["allowed"] is False and no["result"]["status"] == 403
    assert no["result"]["code"] == "forbidden" and no["result"]["reason"] == "no allow rule matched"

    text = log_path.read_text()
    for secret in (bearer, "s3cr3t-cookie-value", "k-123456789-secret", EMAIL, "masked-by-flag", "q-secret-in-query"):
        assert secret not in text


def test_metrics_of_several_workers_are_served_once_summed(traced, receiver):
    metrics_port = free_port()
    gw = traced(
        receiver.port,
        {"OTEL_SDK_DISABLED": "true"},
        workers=2,
        processor_port=free_port(),
        processor_args=("--metrics-port", str(metrics_port)),
    )
    bearer = token()
    for _ in range(6):
        assert gw.client.get("/api/hello", headers={"authorization": f"Bearer {bearer}"}).status_code == 200
    deadline = time.monotonic() + 20
    while True:
        text = metrics_text(metrics_port)
        total = metric_value(text, "extproc_decisions_total", route="api", decision="allow")
        if total >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert total == 6, text
