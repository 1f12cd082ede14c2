"""Streaming LLM responses: what does the processor add to time-to-first-token,
and do chunks keep flowing?

Runs the demo mock model behind real Envoy twice in one run: the `/v1/` route
as shipped (ext_proc: JWT, model access, prompt guard, PII on the request and
on the streamed response) and the same route with the ext_proc filter
disabled (Envoy alone). Sequential streaming chat completions; reports median
and p90 time to the first content delta, total time, and how many content
chunks arrived (the same count means nothing was buffered into one blob).

    python bench/stream_ttft.py [--requests 50]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from extproc.local.demo_keys import load_demo_key, mint
from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port

REPO = Path(__file__).resolve().parents[1]
POLICY = """\
routes:
  - name: llm
    capabilities:
      - type: jwt
        config:
          issuers:
            - issuer: https://demo.extproc.local
              jwks: { file: keys/demo-jwks.json }
              audiences: [extproc-demo]
      - type: model_access
        config: { rules: [{ roles: [reader], models: [demo] }] }
      - type: prompt_guard
        config: {}
      - type: pii
        config: {}
"""


def without_ext_proc(config: dict) -> dict:
    config = copy.deepcopy(config)
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for route_config in [f["typed_config"]["route_config"] for f in chain["filters"]]:
                for host in route_config["virtual_hosts"]:
                    for route in host["routes"]:
                        route.get("typed_per_filter_config", {}).pop("envoy.filters.http.ext_proc", None)
    return config


def measure(url: str, token: str, n: int) -> dict:
    body = {
        "model": "demo",
        "stream": True,
        "messages": [{"role": "user", "content": "a reasonably long prompt to stream back " * 8}],
    }
    firsts, totals, chunks, events = [], [], [], []
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {token}"}) as client:
        for i in range(n + 3):
            started = time.perf_counter()
            first, count, seen = None, 0, 0
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    seen += line.startswith("data: ")
                    if (
                        line.startswith("data: {")
                        and '"content":"' in line.replace(" ", "")
                        and '"content":""' not in line.replace(" ", "")
                    ):
                        count += 1
                        if first is None:
                            first = time.perf_counter() - started
            if i >= 3:  # warm-up
                firsts.append(first * 1000)
                totals.append((time.perf_counter() - started) * 1000)
                chunks.append(count)
                events.append(seen)
    firsts.sort()
    return {
        "ttft_p50_ms": round(statistics.median(firsts), 2),
        "ttft_p90_ms": round(firsts[int(len(firsts) * 0.9)], 2),
        "total_p50_ms": round(statistics.median(totals), 2),
        "chunks": statistics.median(chunks),
        "events": statistics.median(events),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="extproc-ttft-"))
    shutil.copytree(REPO / "policies" / "keys", workdir / "keys")
    (workdir / "llm.yaml").write_text(textwrap.dedent(POLICY))
    echo = EchoServer().start()
    processor = ProcessorProcess(str(workdir), log_path=str(workdir / "processor.log")).wait_ready()
    token = mint(load_demo_key(), sub="bench", roles=["reader"])
    results, envoys = {}, []
    try:
        for name, strip in (("envoy-alone", True), ("envoy+processor", False)):
            port, admin, mtls = free_port(), free_port(), free_port()
            config = render(
                ENVOY_DIR / "gateway.yaml",
                {"gateway": port, "gateway_mtls": mtls, "governance": processor.port, "upstream": echo.port},
                admin_port=admin,
            )
            config = without_ext_proc(config) if strip else config
            # The mTLS listener needs certificates this benchmark does not use.
            config["static_resources"]["listeners"] = [
                listener for listener in config["static_resources"]["listeners"] if listener["name"] == "gateway"
            ]
            envoy = EnvoyProcess(config, admin)
            envoys.append(envoy)
            envoy.wait_ready()
            results[name] = measure(f"http://127.0.0.1:{port}", token, args.requests)
    finally:
        for envoy in envoys:
            envoy.stop()
        processor.stop()
        echo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    base, gov = results["envoy-alone"], results["envoy+processor"]
    print(f"{'setup':18} {'TTFT p50':>9} {'TTFT p90':>9} {'total p50':>10} {'SSE events':>10} {'text deltas':>11}")
    for name, r in results.items():
        print(
            f"{name:18} {r['ttft_p50_ms']:>6} ms {r['ttft_p90_ms']:>6} ms {r['total_p50_ms']:>7} ms "
            f"{r['events']:>10} {r['chunks']:>11}"
        )
    # Every event is forwarded as it arrives; the PII hold-back (a value split
    # across deltas must be judged whole) releases text in bursts.
    print(
        f"added TTFT (p50): {gov['ttft_p50_ms'] - base['ttft_p50_ms']:+.2f} ms; events "
        f"{'kept flowing' if gov['events'] >= base['events'] else 'were BUFFERED'} "
        f"({gov['events']} vs {base['events']}); text in {gov['chunks']} bursts vs {base['chunks']} deltas"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
