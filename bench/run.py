"""Benchmark the gateway: what does governance cost on top of Envoy alone?

One run measures every scenario back to back on this machine and reports each
against `envoy-alone` from the same run: absolute figures from a shared,
noisy 2-core box mean little, ratios do. See bench/README.md.

    python bench/run.py            # full run, ~1.5 min
    python bench/run.py --quick    # smoke run, ~3 s per measurement
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from extproc.local.envoy import EnvoyProcess, envoy_binary, render
from extproc.local.processor import ProcessorProcess, free_port

BENCH = Path(__file__).resolve().parent
BASELINE = "envoy-alone"


@dataclass(frozen=True)
class Scenario:
    """One gateway setup to measure. Adding a scenario is adding an entry to
    SCENARIOS (plus its Envoy config and policy directory)."""

    name: str
    envoy_config: str  # file in bench/envoy/: listener `gateway`, processor cluster `governance`
    policies: str | None = None  # directory in bench/policies/; None runs no processor
    workers: int = 2
    headers: tuple[str, ...] = ()  # "name: value" sent with every request (tokens, API keys)
    token: bool = False  # send a demo reader JWT (RS256) with every request
    redis: bool = False  # count quotas in a Redis started for the scenario


SCENARIOS = [
    Scenario(BASELINE, "alone.yaml"),
    Scenario("ext_authz-allow-all", "ext_authz.yaml", "allow-all"),
    Scenario("ext_proc-headers", "ext_proc.yaml", "allow-all"),
    Scenario("ext_authz-jwt-rbac", "ext_authz.yaml", "jwt-rbac", token=True),
    Scenario("ext_authz-jwt-rbac-redis-quota", "ext_authz.yaml", "jwt-rbac-quota", token=True, redis=True),
]


def demo_token() -> str:
    from extproc.local.demo_keys import load_demo_key, mint

    return mint(load_demo_key(), sub="bench", roles=["reader"], ttl=24 * 3600)


# --- load generators -------------------------------------------------------


def ensure_tools() -> None:
    if shutil.which("wrk") and shutil.which("hey"):
        return
    print("bench: wrk or hey missing, installing with apt-get", file=sys.stderr)
    try:
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk", "hey"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"bench: needs wrk and hey, and `apt-get install -y wrk hey` failed ({exc}); "
            "install them (as root) and run again"
        ) from None
    if not (shutil.which("wrk") and shutil.which("hey")):
        raise SystemExit("bench: apt-get succeeded but wrk or hey is still not on PATH")


def _header_args(headers: tuple[str, ...]) -> list[str]:
    return [arg for h in headers for arg in ("-H", h)]


def _run(cmd: list[str], seconds: float) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr or done.stdout}")
    return done.stdout


def wrk(url: str, headers: tuple[str, ...], threads: int, connections: int, seconds: float) -> dict:
    out = _run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", *_header_args(headers), url], seconds)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
    }


def hey(url: str, headers: tuple[str, ...], rate: int, connections: int, seconds: float) -> dict:
    # hey's -q is per connection; its latency figures have 0.1 ms resolution.
    out = _run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(connections),
            "-q",
            str(rate // connections),
            *_header_args(headers),
            url,
        ],
        seconds,
    )
    out, _, error_section = out.partition("Error distribution:")
    percentiles = dict(re.findall(r"(\d+)% in ([\d.]+) secs", out.split("Latency distribution:", 1)[-1]))
    statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]", error_section, re.M))
    if "50" not in percentiles or "99" not in percentiles:
        raise RuntimeError(f"no latency distribution in hey's output:\n{out}")
    return {
        "p50_ms": round(float(percentiles["50"]) * 1000, 1),
        "p99_ms": round(float(percentiles["99"]) * 1000, 1),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "errors": sum(n for code, n in statuses.items() if code != 200) + errors,
    }


# --- processor introspection (no psutil: read /proc) -----------------------


def _stat_fields(pid: int) -> list[str]:
    # The command name may contain spaces and parentheses; fields start after the last ')'.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def worker_pids(processor: ProcessorProcess, workers: int) -> list[int]:
    parent = processor.proc.pid
    if workers <= 1:
        return [parent]
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(_stat_fields(int(stat.parent.name))[1]) == parent:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass  # exited while we looked
    return sorted(children)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_listening(port: int, sockets: int, timeout: float = 20.0) -> None:
    """Wait until every worker has bound the port: ProcessorProcess.wait_ready
    sees only the first, and Envoy's connections would all land there."""
    hex_port = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # gRPC binds 127.0.0.1 as an IPv4-mapped IPv6 socket, so look in both tables.
        rows = [
            line.split()
            for table in ("tcp", "tcp6")
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        ]
        if sum(1 for row in rows if row[1].endswith(hex_port) and row[3] == "0A") >= sockets:  # 0A: LISTEN
            return
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {sockets} processor workers listening on {port} after {timeout}s")


# --- one scenario ----------------------------------------------------------


def check_ok(url: str, headers: tuple[str, ...]) -> None:
    """Refuse to benchmark a route that does not answer 200: fast 403s or 503s
    would look like excellent throughput."""
    request = urllib.request.Request(url, headers=dict(h.split(": ", 1) for h in headers))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status != 200:
        raise RuntimeError(f"{url} answered {status}, expected 200")


def measure(scenario: Scenario, opts: argparse.Namespace, logs: Path) -> dict:
    processor = envoy = redis = None
    workers: list[int] = []
    try:
        ports = {"gateway": free_port()}
        extra_args: tuple[str, ...] = ()
        if scenario.redis:
            sys.path.insert(0, str(BENCH.parent))  # the tests' real-Redis helper
            from tests.redis_server import RedisServer

            redis = RedisServer().start()
            extra_args = ("--quota-backend", redis.url)
        if scenario.policies:
            processor = ProcessorProcess(
                str(BENCH / "policies" / scenario.policies),
                workers=scenario.workers,
                log_path=str(logs / f"{scenario.name}.processor.log"),
                extra_args=extra_args,
            ).wait_ready()
            wait_listening(processor.port, scenario.workers)
            workers = worker_pids(processor, scenario.workers)
            ports["governance"] = processor.port
        admin = free_port()
        envoy = EnvoyProcess(
            render(BENCH / "envoy" / scenario.envoy_config, ports, admin),
            admin,
            concurrency=opts.concurrency,
            log_path=str(logs / f"{scenario.name}.envoy.log"),
        )
        envoy.wait_ready()

        url, headers = f"http://127.0.0.1:{ports['gateway']}/", scenario.headers
        if scenario.token:
            headers = (*headers, f"authorization: Bearer {demo_token()}")
        check_ok(url, headers)
        # Warm up connection pools, the processor's gRPC channels and its lazy imports.
        wrk(url, headers, opts.threads, opts.connections, opts.warmup)
        latency = hey(url, headers, opts.rate, opts.latency_connections, opts.latency_duration)
        pids = [envoy.proc.pid, *workers]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        throughput = wrk(url, headers, opts.threads, opts.connections, opts.duration)
        # CPU spent during the saturation run: per request it says where the
        # time goes, per worker whether the load spread over the workers.
        cpu = [round(cpu_seconds(pid) - before, 2) for pid, before in zip(pids, cpu_before, strict=True)]

        def per_request(seconds: float) -> float:
            return round(seconds * 1000 / max(throughput["requests"], 1), 3)

        result = {
            "name": scenario.name,
            "envoy_config": scenario.envoy_config,
            "policies": scenario.policies,
            "workers": len(workers),
            "throughput": throughput,
            "latency": latency,
            "envoy": {"cpu_s": cpu[0], "cpu_ms_per_request": per_request(cpu[0])},
        }
        if processor:
            if worker_pids(processor, scenario.workers) != workers:
                raise RuntimeError(f"a processor worker restarted during the run; see {processor.log_path}")
            rss = [round(rss_mb(pid), 1) for pid in workers]
            result["processor"] = {
                "pids": workers,
                "rss_mb": rss,
                "rss_sum_mb": round(sum(rss), 1),
                "rss_max_mb": max(rss),
                "cpu_s": cpu[1:],
                "cpu_ms_per_request": per_request(sum(cpu[1:])),
            }
        return result
    finally:
        if redis is not None:
            redis.close()
        if envoy is not None:
            envoy.stop()
        if processor is not None:
            processor.stop()
            # The parent reaps its workers unless it had to be killed; then
            # make sure none outlives the run (checking the PID is still ours).
            for pid in workers:
                try:
                    if f"--port\0{processor.port}\0" in Path(f"/proc/{pid}/cmdline").read_text():
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ProcessLookupError):
                    pass


# --- report ----------------------------------------------------------------


def add_ratios(results: list[dict]) -> None:
    base = next(r for r in results if r["name"] == BASELINE)
    for r in results:
        r["rps_ratio"] = round(r["throughput"]["rps"] / base["throughput"]["rps"], 3)
        r["added_p99_ms"] = round(r["latency"]["p99_ms"] - base["latency"]["p99_ms"], 1)


def table(results: list[dict], opts: argparse.Namespace) -> str:
    header = (
        "scenario",
        "rps",
        "rps/alone",
        "p50 ms",
        "p99 ms",
        "+p99 ms",
        "RSS MB/worker",
        "proc CPU ms/req",
        "errors",
    )
    rows = []
    for r in results:
        proc = r.get("processor")
        rows.append(
            (
                r["name"],
                f"{r['throughput']['rps']:.0f}",
                f"{r['rps_ratio']:.2f}",
                f"{r['latency']['p50_ms']:.1f}",
                f"{r['latency']['p99_ms']:.1f}",
                f"{r['added_p99_ms']:+.1f}",
                f"{proc['rss_max_mb']:.0f} (sum {proc['rss_sum_mb']:.0f})" if proc else "-",
                f"{proc['cpu_ms_per_request']:.2f}" if proc else "-",
                str(r["throughput"]["errors"] + r["latency"]["errors"]),
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(row) -> str:
        return "  ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    notes = [
        f"rps: wrk -t{opts.threads} -c{opts.connections} -d{opts.duration}s;  "
        f"latency: hey at {opts.rate} req/s, -c{opts.latency_connections}, {opts.latency_duration}s;  "
        f"envoy --concurrency {opts.concurrency}"
    ]
    for r in results:
        if r["latency"]["rps"] < 0.95 * opts.rate:
            notes.append(f"! {r['name']}: latency run reached only {r['latency']['rps']:.0f} req/s of {opts.rate}")
        cpu = r.get("processor", {}).get("cpu_s", [])
        if len(cpu) > 1 and max(cpu) > 0.9 * sum(cpu):
            notes.append(
                f"! {r['name']}: one processor worker did >90% of the work "
                f"(CPU s per worker: {', '.join(map(str, cpu))})"
            )
        if r["throughput"]["errors"] or r["latency"]["errors"]:
            notes.append(f"! {r['name']}: non-200 responses or socket errors; its figures are not comparable")
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows), "", *notes])


def environment() -> dict:
    def output(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=BENCH).stdout.strip()
        except OSError:
            return ""

    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "envoy": output([envoy_binary(), "--version"]).split("version: ")[-1],
        "commit": output(["git", "rev-parse", "HEAD"]),
        "dirty": bool(output(["git", "status", "--porcelain"])),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark governance overhead against Envoy alone.")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per measurement, 1 s warm-up")
    parser.add_argument("--duration", type=float, default=10, help="seconds of wrk saturation per scenario")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--rate", type=int, default=1000, help="req/s for the latency run (hey)")
    parser.add_argument("--latency-connections", type=int, default=10, help="hey connections; must divide --rate")
    parser.add_argument("--latency-duration", type=float, default=None, help="seconds of hey (default: --duration)")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of wrk before measuring")
    parser.add_argument("--concurrency", type=int, default=1, help="Envoy worker threads")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="run only these (repeatable); envoy-alone always runs",
    )
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="where the JSON goes")
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.duration, opts.warmup = 3, 1
    opts.latency_duration = opts.latency_duration or opts.duration
    if opts.rate % opts.latency_connections:
        parser.error("--rate must be a multiple of --latency-connections (hey rate-limits per connection)")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    ensure_tools()
    chosen = [s for s in SCENARIOS if s.name == BASELINE or not opts.scenario or s.name in opts.scenario]
    logs = Path(tempfile.mkdtemp(prefix="extproc-bench-"))
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = []
    try:
        for scenario in chosen:
            print(f"bench: {scenario.name} ...", file=sys.stderr, flush=True)
            results.append(measure(scenario, opts, logs))
    except Exception as exc:
        raise SystemExit(f"bench: {exc}\n(logs kept in {logs})") from exc
    shutil.rmtree(logs, ignore_errors=True)

    add_ratios(results)
    print(table(results, opts))
    opts.results.mkdir(parents=True, exist_ok=True)
    path = opts.results / f"{started}.json"
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}
    path.write_text(
        json.dumps(
            {"started": started, "environment": environment(), "settings": settings, "scenarios": results}, indent=2
        )
        + "\n"
    )
    print(f"\nwrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
