"""A hostile prompt must not stall the gateway for everyone else.

The finding: ~900 KB of repeated ``-----BEGIN PRIVATE KEY-----AAAA`` on the
LLM route held the processor's event loop for seconds; bystander ``/api``
requests (ext_authz, 250 ms budget) got 503. Now every detector is linear
with a small constant and large scans run off the event loop. Through real
Envoy and the real processor: hostile bodies on ``/v1/`` while a bystander
loop hits ``/api/``; no bystander may fail and their p99 must stay low.
"""

from __future__ import annotations

import json
import shutil
import statistics
import threading
import time

import httpx

from extproc.local.demo_keys import load_demo_key, mint
from tests.e2e.conftest import REPO

HOSTILE_BODIES = {
    "pem headers": "-----BEGIN PRIVATE KEY-----AAAA",
    "keyed secrets": "token=ab1",
    "digit groups": "4111 ",
    "zero-width digits": "4\u200b",
}
SIZE = 900_000


def demo_policies(tmp_path):
    # The demo policy, with the /api quota and the LLM token budget out of the
    # way: the scans must run (a 900 KB prompt is over the demo budget).
    directory = tmp_path / "policies"
    shutil.copytree(REPO / "policies", directory)
    demo = directory / "demo.yaml"
    text = demo.read_text()
    for limit, unlimited in (
        ("rate: { requests: 60, per: 1m }", "rate: { requests: 1000000, per: 1m }"),
        ("tokens: 100000, per: 1d", "tokens: 1000000000, per: 1d"),
    ):
        assert limit in text
        text = text.replace(limit, unlimited)
    demo.write_text(text)
    return directory


def hostile_body(unit: str) -> bytes:
    # SIZE bytes of UTF-8 (Envoy buffers at most 1 MiB).
    content = unit * (SIZE // len(unit.encode()))
    return json.dumps(
        {"model": "demo", "messages": [{"role": "user", "content": content}]}, ensure_ascii=False
    ).encode()


def bystander_latencies(url: str, token: str, stop: threading.Event) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    with httpx.Client(base_url=url, timeout=10, headers={"authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            started = time.perf_counter()
            statuses.append(client.get("/api/items").status_code)
            latencies.append(time.perf_counter() - started)
    return latencies, statuses


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def test_hostile_bodies_do_not_starve_bystanders(gateway_factory, tmp_path):
    gateway = gateway_factory(policy_dir=demo_policies(tmp_path))
    reader = mint(load_demo_key(), sub="bystander", roles=["reader"])
    attacker = mint(load_demo_key(), sub="mallory", roles=["reader"])

    # Large scans run in a worker process started on the first one (until
    # it is up they run in threads): start it with a large benign prompt,
    # wait for it, then measure the steady state.
    warm = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        timeout=60,
        headers={"authorization": f"Bearer {attacker}"},
        json={"model": "demo", "messages": [{"role": "user", "content": "hello there " * 5000}]},
    )
    assert warm.status_code == 200, warm.text
    gateway.wait_for(lambda: "guard scan workers ready" in gateway.processor_log_text(), timeout=30)

    # Baseline: bystanders alone.
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    timer.start()
    base_latencies, base_statuses = bystander_latencies(gateway.url, reader, stop)

    hostile_statuses: dict[str, int] = {}
    hostile_seconds: dict[str, float] = {}

    def attack():
        with httpx.Client(
            base_url=gateway.url,
            timeout=60,
            headers={"authorization": f"Bearer {attacker}", "content-type": "application/json"},
        ) as client:
            for name, unit in HOSTILE_BODIES.items():
                started = time.perf_counter()
                hostile_statuses[name] = client.post("/v1/chat/completions", content=hostile_body(unit)).status_code
                hostile_seconds[name] = time.perf_counter() - started
        stop.set()

    stop = threading.Event()
    attacker_thread = threading.Thread(target=attack)
    attacker_thread.start()
    latencies, statuses = bystander_latencies(gateway.url, reader, stop)
    attacker_thread.join()

    print(
        f"\nbaseline: {len(base_latencies)} bystander requests {sorted(set(base_statuses))}, median "
        f"{statistics.median(base_latencies) * 1000:.1f} ms, p99 {p99(base_latencies) * 1000:.1f} ms"
    )
    print(
        f"under attack: {len(latencies)} bystander requests {sorted(set(statuses))}, "
        f"median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    for name in HOSTILE_BODIES:
        print(
            f"hostile {name!r} ({SIZE // 1000} KB): HTTP {hostile_statuses.get(name)} "
            f"in {hostile_seconds.get(name, 0) * 1000:.0f} ms"
        )
    assert len(latencies) >= 10, "the attack ended before bystanders were measured"
    assert not [s for s in statuses if s >= 500], f"bystanders failed: {sorted(set(statuses))}"
    assert set(statuses) == {200}
    assert p99(latencies) < 1.0
    # The hostile requests themselves are refused or answered, never a crash.
    assert all(status < 500 or status == 504 for status in hostile_statuses.values()), hostile_statuses
