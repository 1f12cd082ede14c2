"""The processor's lifecycle as Envoy sees it: admission control past its
limit, draining a worker without failing requests, and a route bound to the
wrong filter refused rather than half-governed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port

# Headers-only capabilities on both filters (no identity, no quotas): every
# refusal in these tests is the processor's own lifecycle at work.
POLICY = """\
routes:
  - name: api
    capabilities:
      - type: headers
        config: {request: {set: {x-gateway: governance}}}
  - name: proc
    capabilities:
      - type: headers
        config: {request: {set: {x-gateway: governance}}}
"""


@pytest.fixture
def policy_dir(tmp_path) -> Path:
    directory = tmp_path / "policy-src"
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY)
    return directory


def _children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(p) for p in fh.read().split()]


class SlowUpstream:
    """An upstream that answers after ``delay`` seconds: ext_proc streams of
    requests to it stay open that long (the proc route watches the response)."""

    def __init__(self, delay: float):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(delay)
                body = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _timed_burst(url: str, paths: list[str]) -> list[tuple[httpx.Response, float]]:
    limits = httpx.Limits(max_connections=len(paths), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:

        async def one(path):
            started = time.monotonic()
            response = await client.get(path)
            return response, time.monotonic() - started

        return await asyncio.gather(*(one(path) for path in paths))


# --- 14: past the admission limit, new requests get a quick 503 with Retry-After -----------------


def test_requests_beyond_the_admission_limit_get_a_quick_503_retry_after(tmp_path, demo_certs):
    policy = tmp_path / "policy"
    policy.mkdir()
    # A response header to set keeps each proc stream open until the upstream answers.
    (policy / "policy.yaml").write_text(
        "routes:\n  - name: proc\n    capabilities:\n      - type: headers\n"
        "        config: {request: {set: {x-gateway: governance}}, response: {set: {x-governed-by: extproc}}}\n"
    )
    upstream = SlowUpstream(delay=2.0)
    processor = ProcessorProcess(
        str(policy), extra_args=("--max-concurrent", "3"), log_path=str(tmp_path / "processor.log")
    )
    envoy = None
    try:
        processor.wait_ready()
        port, admin = free_port(), free_port()
        config = render(
            ENVOY_DIR / "gateway.yaml",
            {"gateway": port, "gateway_mtls": free_port(), "governance": processor.port, "upstream": upstream.port},
            admin_port=admin,
            certs_dir=demo_certs,
        )
        envoy = EnvoyProcess(config, admin, log_path=str(tmp_path / "envoy.log"))
        envoy.wait_ready()
        results = asyncio.run(_timed_burst(f"http://127.0.0.1:{port}", [f"/proc/{i}" for i in range(8)]))
    finally:
        if envoy is not None:
            envoy.stop()
        processor.stop()
        upstream.stop()
    admitted = [(r, t) for r, t in results if r.status_code == 200]
    refused = [(r, t) for r, t in results if r.status_code != 200]
    assert len(admitted) == 3, [r.status_code for r, _ in results]
    assert all(r.json()["headers"]["x-gateway"] == "governance" and t >= 2.0 for r, t in admitted)
    assert len(refused) == 5
    for r, elapsed in refused:
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "overloaded"
        assert elapsed < 1.5  # refused at once, not after the upstream or a timeout
    assert '"overloaded: shedding new requests with 503"' in (tmp_path / "processor.log").read_text()


# --- 15: draining one worker costs no request ---------------------------------------------------


def _steady_load(url: str, stop: threading.Event, statuses: list[int], rate_per_thread: float, threads: int):
    def worker(i: int):
        with httpx.Client(base_url=url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                path = f"/api/{i}-{n}" if n % 2 else f"/proc/{i}-{n}"
                try:
                    statuses.append(client.get(path).status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                n += 1
                time.sleep(1 / rate_per_thread)

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    return pool


def test_sigterm_to_one_of_two_workers_under_load_fails_no_request(gateway_factory, policy_dir):
    gateway = gateway_factory(policy_dir=policy_dir, workers=2, processor_args=("--drain-delay", "2"))
    stop, statuses = threading.Event(), []
    pool = _steady_load(gateway.url, stop, statuses, rate_per_thread=40, threads=4)
    try:
        gateway.wait_for(lambda: len(statuses) > 100)
        first, second = _children_of(gateway.processor.proc.pid)
        os.kill(first, signal.SIGTERM)
        # The supervisor replaces it; keep the load on through drain, exit and replacement.
        gateway.wait_for(lambda: len(set(_children_of(gateway.processor.proc.pid)) - {first, second}) == 1, timeout=30)
        count = len(statuses)
        gateway.wait_for(lambda: len(statuses) > count + 200, timeout=30)
    finally:
        stop.set()
        for t in pool:
            t.join()
    failed = [s for s in statuses if s != 200]
    assert failed == [], f"{len(failed)} of {len(statuses)} failed: {sorted(set(failed))}"


# --- 18: a body/response capability on a route Envoy sends through ext_authz --------------------


def test_a_body_capability_on_an_ext_authz_route_is_refused_and_logged_once(gateway_factory, tmp_path):
    policy = tmp_path / "mismatch"
    policy.mkdir()
    (policy / "policy.yaml").write_text(
        POLICY.replace("  - name: proc\n", "      - type: pii\n        config: {}\n  - name: proc\n", 1)
    )
    gateway = gateway_factory(policy_dir=policy)
    for _ in range(3):
        r = gateway.client.post("/api/x", json={"email": "alice@example.com"})
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "filter_mismatch"
    assert gateway.client.get("/proc/x").status_code == 200  # the ext_proc route is unaffected
    # An ambiguous path is refused as such (400) before any route is chosen.
    r = gateway.client.post("/api/x;.json", json={})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "path_parameter")
    errors = [
        json.loads(line)
        for line in gateway.processor_log_text().splitlines()
        if line.startswith("{") and "needs the ext_proc filter" in line
    ]
    assert len(errors) == 1 and errors[0]["route"] == "api" and errors[0]["level"] == "error"
