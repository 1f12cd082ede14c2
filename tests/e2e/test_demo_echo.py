"""The demo echo upstream keeps HTTP/1.1 framing exact on reused connections
(it sits behind Envoy's connection pool and every benchmark): HEAD, 204/304
without a body, chunked request bodies consumed, no Nagle stall."""

from __future__ import annotations

import http.client
import json
import statistics
import time

import pytest

from extproc.local.echo import EchoServer


@pytest.fixture
def echo():
    server = EchoServer().start()
    yield server
    server.stop()


def test_head_answers_get_headers_without_a_body_and_the_connection_stays_in_step(echo):
    conn = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    try:
        conn.request("GET", "/same")
        get = conn.getresponse()
        get_body = get.read()
        conn.request("HEAD", "/same")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        # What a GET would carry, minus the method in the echoed JSON.
        assert int(head.getheader("content-length")) == len(get_body) + len("HEAD") - len("GET")
        conn.request("GET", "/after-head")  # the next request on the same connection
        after = conn.getresponse()
        assert after.status == 200 and json.loads(after.read())["path"] == "/after-head"
    finally:
        conn.close()


def test_chunked_request_body_is_read_to_the_end(echo):
    conn = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    try:
        conn.request(
            "POST",
            "/chunked",
            body=iter([b"hello ", b"world"]),
            encode_chunked=True,
            headers={"transfer-encoding": "chunked"},
        )
        response = conn.getresponse()
        assert json.loads(response.read())["body"] == "hello world"
        conn.request("GET", "/next")
        assert json.loads(conn.getresponse().read())["path"] == "/next"
    finally:
        conn.close()


def test_keep_alive_requests_do_not_stall_on_nagle(echo):
    # Headers and body go out as two writes; without TCP_NODELAY each response
    # waited for the client's delayed ACK (~40 ms on Linux). Generous bound.
    conn = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=5)
    latencies = []
    try:
        for i in range(30):
            started = time.perf_counter()
            conn.request("POST", "/x", body=b"a" * 200) if i % 2 else conn.request("GET", "/x")
            conn.getresponse().read()
            latencies.append(time.perf_counter() - started)
    finally:
        conn.close()
    assert statistics.median(latencies) < 0.02, latencies


OPEN_API = """\
version: 1
routes:
  - name: api
    match: {path_prefix: /api/}
    capabilities:
      - type: rbac
        config: {rules: [{name: anyone, methods: [GET, HEAD], paths: ["/api/**"]}]}
"""


def test_head_through_envoy_leaves_the_pooled_connection_usable(gateway_factory, tmp_path):
    # Envoy reuses its upstream connection: a HEAD answered with a body would
    # be read as the next response and that request would get a 502.
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "api.yaml").write_text(OPEN_API)
    gateway = gateway_factory(policy_dir=tmp_path / "policy")
    for _ in range(3):
        head = gateway.client.head("/api/hello")
        assert head.status_code == 200 and head.content == b""
        get = gateway.client.get("/api/hello")
        assert get.status_code == 200 and get.json()["method"] == "GET"
