"""Signed policy bundles for a fleet, end to end.

Two real processors follow one bundle URL served by a real HTTP server
(ETags, 304s): one behind a real Envoy (checked with HTTP requests through
the gateway), one with two workers under the supervisor (checked with a real
gRPC ext_authz client). Both switch to a newly signed revision within the
poll interval (plus the store's reload settle), both refuse a tampered one
and keep serving, and a restart with the bundle server down serves the last
good bundle from disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from extproc.bundle.build import build
from extproc.bundle.signing import load_private_key, sign
from extproc.local.processor import ProcessorProcess, free_port
from extproc.policy.loader import validate_policy_dir
from tests.unit.bundle.bundle_server import BundleServer
from tests.unit.bundle.conftest import make_keys
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
POLL = 2.0
RELOAD = 0.2
# Self-contained (it refers to no other file), so its revision is the same
# wherever it is unpacked: see docs/bundles.md on referenced files.
BASE = (
    "version: 1\nroutes:\n  - name: api\n    match: { path_prefix: /api/ }\n    capabilities:\n"
    "      - type: header_match\n        config: { deny: [{ name: x-debug, present: true }] }\n"
)
# Appended to the routes: a route no earlier revision has.
STATUS_ROUTE = "  - name: status\n    match: { path_prefix: /status/ }\n"
EXTRA_ROUTE = "  - name: extra\n    match: { path_prefix: /extra/ }\n"
OK, DENIED = grpc.StatusCode.OK.value[0], grpc.StatusCode.PERMISSION_DENIED.value[0]


class Publisher:
    def __init__(self, root: Path, server: BundleServer):
        self.root, self.server = root, server
        self.keys = make_keys(root / "keys", "ci")
        self.count = 0
        self.signed_at = int(time.time())

    def bundle(self, text: str) -> tuple[bytes, bytes, str]:
        self.count += 1
        self.signed_at += 1
        source = self.root / f"rev{self.count}"
        source.mkdir()
        (source / "policy.yaml").write_text(text)
        built = build(source)
        key = load_private_key(self.keys.private)
        return built.archive, sign(built.archive, built.revision, key, signed_at=self.signed_at), built.revision

    def publish(self, text: str) -> str:
        archive, signature, revision = self.bundle(text)
        self.server.publish("policy.tgz", archive, signature)
        return revision


def bundle_args(url: str, public_key: Path, directory: Path) -> tuple[str, ...]:
    return (
        "--bundle",
        url,
        "--bundle-key",
        str(public_key),
        "--bundle-dir",
        str(directory),
        "--bundle-poll",
        str(POLL),
    )


def health_revision(port: int) -> str:
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        _, call = health_pb2_grpc.HealthStub(channel).Check.with_call(health_pb2.HealthCheckRequest(), timeout=5)
        return str(dict(call.initial_metadata())["x-extproc-policy-revision"])


def check(port: int, path: str) -> int:
    """One ext_authz Check on a fresh connection (so SO_REUSEPORT spreads
    them over both workers); the gRPC status code."""
    request = authz_pb2.CheckRequest()
    request.attributes.request.http.method = "GET"
    request.attributes.request.http.path = path
    request.attributes.request.http.host = "example.com"
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return int(authz_grpc.AuthorizationStub(channel).Check(request, timeout=5).status.code)


def all_workers(port: int, path: str, code: int, tries: int = 8) -> bool:
    return all(check(port, path) == code for _ in range(tries))


def serving(directory: Path) -> str:
    """The revision the processor computes for the bundle it serves."""
    return validate_policy_dir(directory / "current").revision


@pytest.fixture
def bundle_server() -> Iterator[BundleServer]:
    server = BundleServer().start()
    yield server
    server.stop()


def test_two_processors_follow_one_signed_bundle(gateway_factory, tmp_path: Path, bundle_server) -> None:
    publisher = Publisher(tmp_path / "ci", bundle_server)
    published = publisher.publish(BASE)
    url = bundle_server.url("policy.tgz")
    dir_a, dir_b = tmp_path / "bundle-a", tmp_path / "bundle-b"
    decisions = tmp_path / "decisions.jsonl"

    # A: one process behind a real Envoy. B: two workers under the supervisor.
    gateway = gateway_factory(
        processor_args=(*bundle_args(url, publisher.keys.public, dir_a), "--decision-log", str(decisions))
    )
    metrics_port = free_port()
    log_b = tmp_path / "b.log"
    b = ProcessorProcess(
        "ignored-with-bundle",
        workers=2,
        reload_interval=RELOAD,
        extra_args=(*bundle_args(url, publisher.keys.public, dir_b), "--metrics-port", str(metrics_port)),
        log_path=str(log_b),
    )
    try:
        b.wait_ready(60)
        first = serving(dir_a)
        assert serving(dir_b) == first == published
        assert health_revision(gateway.processor.port) == health_revision(b.port) == first
        assert gateway.client.get("/status/x").status_code == 403
        assert check(b.port, "/status/x") == DENIED

        # A new signed revision: both switch within the poll interval (+ the
        # store's two-scan settle and validation).
        published = publisher.publish(BASE + STATUS_ROUTE)
        started = time.monotonic()
        wait_for(lambda: gateway.client.get("/status/x").status_code == 200, timeout=POLL + 8)
        wait_for(lambda: all_workers(b.port, "/status/x", OK), timeout=POLL + 8)
        elapsed = time.monotonic() - started
        second = serving(dir_a)
        assert second != first and serving(dir_b) == second == published
        assert health_revision(gateway.processor.port) == second
        assert {health_revision(b.port) for _ in range(8)} == {second}
        health = subprocess.run(
            [sys.executable, "-m", "extproc", "health", "--port", str(gateway.processor.port), "--revision"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (health.returncode, health.stdout.strip()) == (0, f"serving revision {second}"), health.stderr
        assert elapsed < POLL + 4 * RELOAD + 3.0, elapsed  # generous for a loaded 2-core host
        print(f"fleet switched in {elapsed:.2f}s (poll {POLL}s)")

        # The decision log names the revision of each decision.
        logged = [json.loads(line) for line in decisions.read_text().splitlines()]
        status_decisions = [d for d in logged if d["input"]["route"] == "status"]
        assert status_decisions and {d["revision"] for d in status_decisions} == {second}

        # The metric names the serving revision (B's one endpoint sums its workers).
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert f'extproc_policy_revision_info{{revision="{second}"}} 1.0' in metrics
        assert f'extproc_policy_revision_info{{revision="{first}"}} 0.0' in metrics

        # One follower per serve: B's supervisor activated each bundle once.
        assert log_b.read_text().count("policy bundle activated") == 2

        # A tampered archive (its signature kept) is refused with one log line;
        # both keep serving the last good revision.
        archive, signature, _ = publisher.bundle(BASE + STATUS_ROUTE + EXTRA_ROUTE)
        tampered = bytearray(archive)
        tampered[len(tampered) // 2] ^= 0xFF
        bundle_server.publish("policy.tgz", bytes(tampered), signature)
        for log in (gateway.processor_log, log_b):
            wait_for(lambda log=log: "policy bundle refused" in log.read_text(), timeout=POLL + 8)
        for log in (gateway.processor_log, log_b):
            [line] = [x for x in log.read_text().splitlines() if "policy bundle refused" in x]
            assert "not the one signed" in line and "PRIVATE KEY" not in line
        time.sleep(4 * RELOAD)
        assert gateway.client.get("/extra/x").status_code == 403
        assert gateway.client.get("/status/x").status_code == 200
        assert check(b.port, "/extra/x") == DENIED
        assert health_revision(gateway.processor.port) == health_revision(b.port) == second

        # A restart while the bundle server is down serves the last good bundle.
        gateway.processor.stop()
        bundle_server.stop()
        gateway.restart_processor()
        assert health_revision(gateway.processor.port) == second
        wait_for(lambda: gateway.client.get("/status/x").status_code == 200, timeout=10)
        assert "serving the last good bundle from disk" in gateway.processor_log_text()
    finally:
        b.stop()


def test_serve_refuses_to_start_without_a_valid_bundle(tmp_path: Path, bundle_server) -> None:
    publisher = Publisher(tmp_path / "ci", bundle_server)
    archive, _, _ = publisher.bundle(BASE)
    bundle_server.publish("policy.tgz", archive, None)  # unsigned
    log = tmp_path / "p.log"
    processor = ProcessorProcess(
        "ignored-with-bundle",
        extra_args=bundle_args(bundle_server.url("policy.tgz"), publisher.keys.public, tmp_path / "d"),
        log_path=str(log),
    )
    try:
        assert processor.proc.wait(60) == 2
    finally:
        processor.stop()
    lines = [x for x in log.read_text().splitlines() if x.startswith("extproc:")]
    assert lines == ["extproc: no valid policy bundle to serve: unsigned: the signature is empty"]
