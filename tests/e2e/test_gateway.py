"""The gateway end to end: real Envoy, real processor, real HTTP."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time

import httpx

from extproc.local.demo_keys import load_demo_key, mint

# /api/ and /proc/ require a token from the demo issuer (policies/demo.yaml).
AUTH = {"authorization": f"Bearer {mint(load_demo_key(), sub='alice', roles=['reader'], ttl=6 * 3600)}"}


def upstream_saw(response: httpx.Response) -> dict:
    return response.json()["headers"]


def test_allowed_request_reaches_upstream_with_governance_headers(gateway):
    r = gateway.client.get("/api/hello", headers=AUTH)
    assert r.status_code == 200
    seen = upstream_saw(r)
    assert seen["x-gateway"] == "governance"
    assert seen["x-decision-id"] == r.headers["x-decision-id"]
    assert r.headers["x-governed-by"] == "extproc"


def test_denied_request_never_reaches_upstream(gateway):
    r = gateway.client.get("/api/hello", headers={**AUTH, "x-debug": "1"})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"] == {
        "code": "forbidden",
        "message": "access denied",
        "decision_id": r.headers["x-decision-id"],
    }


def test_unmatched_route_is_denied_by_default(gateway):
    r = gateway.client.get("/admin")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def raw_get(gateway, path: str, headers: dict | None = None) -> tuple[int, dict]:
    # http.client sends the path byte for byte; httpx would normalize it first.
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def test_path_tricks_do_not_escape_the_policy(gateway):
    # /admin is claimed by no policy route: every disguise of it must be denied,
    # not routed through /api/'s allow.
    for path in ("/api/../admin", "/api/%2e%2e/admin", "/api/./../admin", "//admin"):
        status, _ = raw_get(gateway, path)
        assert status == 403, path
    # Escaped slashes are decoded and redirected, so the client retries on the
    # path that policies see.
    status, headers = raw_get(gateway, "/api%2Fhello")
    assert status == 307 and headers["location"].endswith("/api/hello")


def test_ext_proc_route_edits_request_and_response_headers(gateway):
    r = gateway.client.get("/proc/thing", headers=AUTH)
    assert r.status_code == 200
    assert upstream_saw(r)["x-gateway"] == "governance"
    assert r.headers["x-governed-by"] == "extproc"
    assert "x-upstream" not in r.headers  # removed from the upstream's response
    assert r.headers["x-decision-id"] == upstream_saw(r)["x-decision-id"]


def test_spoofed_identity_headers_are_stripped(gateway):
    r = gateway.client.get("/api/hello", headers={**AUTH, "x-auth-subject": "admin", "x-auth-roles": "admin"})
    assert r.status_code == 200
    assert upstream_saw(r)["x-auth-subject"] == "alice" and upstream_saw(r)["x-auth-roles"] == "reader"


def test_processor_down_fails_closed(gateway):
    gateway.processor.stop(signal.SIGKILL)
    for path in ("/api/hello", "/proc/thing"):  # ext_authz, ext_proc (status_on_error)
        r = gateway.client.get(path, headers=AUTH)
        assert (r.status_code, r.headers.get("retry-after")) == (503, "1")  # Envoy's local reply says when to retry
    gateway.restart_processor()
    assert gateway.wait_for(lambda: gateway.client.get("/api/hello", headers=AUTH).status_code == 200)


def test_processor_slow_past_timeout_fails_closed(gateway):
    pid = gateway.processor.proc.pid
    os.kill(pid, signal.SIGSTOP)  # alive, connected, not answering
    try:
        started = time.monotonic()
        r = gateway.client.get("/api/hello", headers=AUTH)
        assert r.status_code == 503
        r = gateway.client.get("/proc/thing", headers=AUTH)
        assert r.status_code == 504 and r.headers.get("retry-after") == "1"
        assert time.monotonic() - started < 5  # Envoy's 250 ms timeouts, not a hang
    finally:
        os.kill(pid, signal.SIGCONT)
    assert gateway.wait_for(lambda: gateway.client.get("/api/hello", headers=AUTH).status_code == 200)


def _load(gateway, paths, stop: threading.Event, results: list, threads: int = 4):
    def worker(i):
        # A subject per thread: the demo policy's 60 requests/minute per
        # subject must not turn this load into 429s.
        auth = {"authorization": f"Bearer {mint(load_demo_key(), sub=f'load-{i}', roles=['reader'])}"}
        with httpx.Client(base_url=gateway.url, timeout=10, headers=auth) as client:
            n = 0
            while not stop.is_set():
                path = paths[n % len(paths)]
                n += 1
                try:
                    r = client.get(path)
                    results.append(
                        (
                            path,
                            r.status_code,
                            r.headers.get("x-governed-by"),
                            r.json()["headers"].get("x-gateway") if r.status_code == 200 else None,
                        )
                    )
                except httpx.HTTPError as exc:
                    results.append((path, type(exc).__name__, None, None))

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    return pool


# Replaces the 6-route demo policy with 2 routes: declared, or the reload
# guard (defaults.max_route_removal) would rightly refuse it.
RELOAD_POLICY = """\
allow_route_removal: true
routes:
  - name: api
    match: {{path_prefix: /api/}}
    capabilities:
      - type: headers
        config:
          request: {{set: {{x-gateway: governance}}}}
          response: {{set: {{x-governed-by: {tag}}}}}
  - name: proc
    match: {{path_prefix: /proc/}}
    capabilities:
      - type: headers
        config:
          request: {{set: {{x-gateway: governance}}}}
          response: {{set: {{x-governed-by: {tag}}}}}
"""


def test_policy_reload_during_traffic_drops_nothing(gateway):
    stop, results = threading.Event(), []
    pool = _load(gateway, ["/api/a", "/proc/b"], stop, results)
    try:
        for i in range(8):
            gateway.write_policy("demo.yaml", RELOAD_POLICY.format(tag=f"rev{i}"))
            time.sleep(0.25)
        gateway.wait_for(lambda: results and results[-1][2] == "rev7")
    finally:
        stop.set()
        for t in pool:
            t.join()
    assert len(results) > 50
    failures = [r for r in results if r[1] != 200]
    assert failures == []
    tags = {r[2] for r in results}
    assert {"rev0", "rev7"} <= tags  # the revisions really changed under load


def test_invalid_reload_keeps_last_good_policy(gateway):
    assert gateway.client.get("/api/x", headers={**AUTH, "x-debug": "1"}).status_code == 403
    gateway.write_policy("demo.yaml", "routes:\n  - name: api\n    match: {path_prefix: api}\n")
    gateway.wait_for(lambda: "policy reload rejected" in gateway.processor_log_text())
    assert "demo.yaml:3: routes[0].match.path_prefix: must start with /" in gateway.processor_log_text()
    # The old policy still governs: allowed stays allowed, denied stays denied.
    assert gateway.client.get("/api/x", headers=AUTH).status_code == 200
    assert gateway.client.get("/api/x", headers={**AUTH, "x-debug": "1"}).status_code == 403


def test_killing_the_processor_under_load_never_lets_a_request_through_ungoverned(gateway_factory):
    gateway = gateway_factory(workers=2)
    stop, results = threading.Event(), []
    pool = _load(gateway, ["/api/a", "/proc/b"], stop, results, threads=6)
    try:
        gateway.wait_for(lambda: len(results) > 100)
        workers = _children_of(gateway.processor.proc.pid)
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        gateway.processor.stop(signal.SIGKILL)  # the supervisor too, or it would restart them
        count = len(results)
        gateway.wait_for(lambda: len(results) > count + 100)
    finally:
        stop.set()
        for t in pool:
            t.join()
    statuses = {r[1] for r in results}
    assert 200 in statuses and statuses - {200} and all(s == 200 or s >= 500 for s in statuses if isinstance(s, int))
    ungoverned = [r for r in results if r[1] == 200 and r[3] != "governance"]
    assert ungoverned == []


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        children.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return children


def test_two_workers_share_the_port_and_both_serve(gateway_factory):
    gateway = gateway_factory(workers=2)
    for _ in range(50):
        assert gateway.client.get("/api/x", headers=AUTH).status_code == 200
    assert len(_children_of(gateway.processor.proc.pid)) == 2


def test_workers_die_with_their_supervisor(gateway_factory):
    gateway = gateway_factory(workers=2)
    workers = _children_of(gateway.processor.proc.pid)
    gateway.processor.stop(signal.SIGKILL)
    gateway.wait_for(lambda: not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in workers))


def test_a_crashed_worker_is_replaced(gateway_factory):
    gateway = gateway_factory(workers=2)
    first, second = _children_of(gateway.processor.proc.pid)
    os.kill(first, signal.SIGKILL)
    gateway.wait_for(lambda: len(set(_children_of(gateway.processor.proc.pid)) - {first, second}) == 1)
    gateway.wait_for(lambda: all(gateway.client.get("/api/x", headers=AUTH).status_code == 200 for _ in range(20)))


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_sigterm_drains_and_exits_cleanly(gateway):
    assert gateway.client.get("/api/x", headers=AUTH).status_code == 200
    assert gateway.processor.stop(signal.SIGTERM) == 0
    assert "draining" in gateway.processor_log_text() and '"stopped"' in gateway.processor_log_text()


def test_demo_policy_limits_each_subject_to_60_requests_a_minute(gateway):
    started = time.monotonic()
    statuses = [gateway.client.get("/api/hello", headers=AUTH).status_code for _ in range(70)]
    elapsed = time.monotonic() - started
    assert statuses[:60] == [200] * 60
    # GCRA: a burst of 60, then one more each second.
    assert 429 in statuses
    assert statuses.count(200) <= 60 + int(elapsed) + 1
    limited = gateway.client.get("/api/hello", headers=AUTH)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert '"per-subject"' in limited.headers["ratelimit-policy"]
    other = {"authorization": f"Bearer {mint(load_demo_key(), sub='bob', roles=['reader'])}"}
    assert gateway.client.get("/api/hello", headers=other).status_code == 200  # per subject
