"""The edge through real Envoy (the shipped envoy/gateway.yaml), the real
processor and the echo upstream: path disguises of a denied path never reach
the upstream, Envoy's normalization and the processor's canonical form agree
on every path (a Hypothesis property), and header twins / routing overrides
never reach the upstream, even with Envoy's own protections taken out."""

from __future__ import annotations

import http.client
import json
import re
import socket
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.headers import ROUTING_OVERRIDE_HEADERS
from extproc.local.envoy import ENVOY_DIR
from extproc.paths import AmbiguousPath, canonical_path

# Anonymous callers may use /api/ and /proc/ but never the admin subtree; the
# api route matches case-insensitively (its RBAC then sees the folded path).
POLICY = """\
version: 1
routes:
  - name: api
    match: {path_prefix: /api/, case_insensitive: true}
    capabilities:
      - type: rbac
        config:
          rules:
            - {name: all-but-admin, methods: [GET, HEAD, POST], paths: ["/api/**"], except_paths: ["/api/admin/**"]}
  - name: proc
    match: {path_prefix: /proc/}
    capabilities:
      - type: rbac
        config:
          rules:
            - {name: all-but-admin, methods: [GET, HEAD, POST], paths: ["/proc/**"], except_paths: ["/proc/admin/**"]}
"""

# Every route Envoy may bind, allowing anything: for the property test, where
# a 200 must mean the upstream got exactly the path the processor judged.
OPEN_POLICY = "version: 1\ndefaults: {unmatched: allow}\nroutes:\n" + "".join(
    f"  - name: {name}\n    match: {{path_exact: /never-{name}}}\n" for name in ("api", "proc", "llm", "mcp", "a2a")
)

DENIED = (401, 403)  # RBAC: an anonymous caller no rule allows gets 401
DISGUISES = [
    "/{p}/admin;/users",
    "/{p}/admin;x=1/users",
    "/{p}/..;/{p}/admin/users",
    "/{p}/admin%3B/users",
    "/{p}/admin./users",
    "/{p}/admin%2e/users",
    "/{p}/admin.../users",
    "/{p}/%2561dmin/users",
    "/{p}/%252561dmin/users",
    "/{p}/%61dmin/users",
    "/{p}/adm%69n/users",
    "/{p}/\uff41dmin/users",
    "/{p}/%EF%BD%81dmin/users",
    "/{p}/adm\u0131n/users",
    "/{p}/admin%00/users",
    "/{p}/admin%0d%0a/users",
    "/{p}/admin%09/users",
    "/{p}%2Fadmin/users",
    "/{p}/admin%5cusers",
    "/{p}\\admin\\users",
    "/{p}/x/../admin/users",
    "/{p}/./admin//users",
    "//{p}//admin/users",
]


def _policy_dir(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "policy"
    directory.mkdir(exist_ok=True)
    (directory / "edge.yaml").write_text(text)
    return directory


def send(port: int, raw_path: str, headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, dict, bytes]:
    """The request line byte for byte (UTF-8 for non-ASCII): no client-side
    normalization or validation."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = [f"GET {raw_path} HTTP/1.1", "host: gw.test", "connection: close", *(f"{k}: {v}" for k, v in headers)]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape"))
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def upstream_path(status: int, headers: dict, body: bytes) -> str | None:
    return json.loads(body)["path"] if status == 200 and headers.get("x-upstream") == "echo" else None


def _unprotected_config(tmp_path: Path) -> Path:
    """The shipped gateway with Envoy's own header protections taken out, to
    show the processor holds the line by itself."""
    config = yaml.safe_load((ENVOY_DIR / "gateway.yaml").read_text())
    for listener in config["static_resources"]["listeners"]:
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        manager["common_http_protocol_options"]["headers_with_underscores_action"] = "ALLOW"
        manager["route_config"].pop("request_headers_to_remove", None)  # the listeners share one manager
    path = tmp_path / "gateway-unprotected.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def edge(gateway_factory, tmp_path):
    return gateway_factory(policy_dir=_policy_dir(tmp_path, POLICY))


@pytest.mark.parametrize("prefix", ["api", "proc"], ids=["ext_authz", "ext_proc"])
def test_disguised_admin_paths_never_reach_the_upstream(edge, prefix):
    assert send(edge.port, f"/{prefix}/hello")[0] == 200
    assert send(edge.port, f"/{prefix}/admin/users")[0] in DENIED
    for template in DISGUISES:
        raw = template.format(p=prefix)
        status, headers, body = send(edge.port, raw)
        assert upstream_path(status, headers, body) is None, (raw, status, body)
        assert status in (400, 307, *DENIED), (raw, status)
        if status == 400 and body.startswith(b"{"):  # the processor's refusal, in its error shape
            assert re.fullmatch(r"path_[a-z_]+", json.loads(body)["error"]["code"]), (raw, body)


def test_case_folded_path_is_denied_when_the_route_is_case_insensitive(edge):
    for raw in ("/api/Admin/users", "/API/ADMIN/users", "/Api/aDmIn/users"):
        status, headers, body = send(edge.port, raw)
        assert status in DENIED and upstream_path(status, headers, body) is None, raw
    # ext_proc's route is case-sensitive: /proc/Admin is another path there.
    assert send(edge.port, "/proc/Admin/users")[0] == 200


def test_the_processor_refuses_what_envoy_forwards_when_envoy_is_configured_otherwise(gateway_factory, tmp_path):
    gw = gateway_factory(policy_dir=_policy_dir(tmp_path, POLICY), envoy_config=_unprotected_config(tmp_path))
    for prefix in ("api", "proc"):
        for raw in (
            f"/{prefix}/admin;/users",
            f"/{prefix}/admin./users",
            f"/{prefix}/%2561dmin/users",
            f"/{prefix}/%EF%BD%81dmin/users",
            f"/{prefix}/a%0d%0ab",
        ):
            status, _, body = send(gw.port, raw)
            assert status == 400 and json.loads(body)["error"]["code"].startswith("path_"), (raw, body)


@pytest.mark.parametrize("prefix", ["api", "proc"], ids=["ext_authz", "ext_proc"])
def test_header_twins_and_routing_overrides_never_reach_the_upstream(edge, gateway_factory, tmp_path, prefix):
    twins = (("x_auth_tenant", "evil"), ("X_Auth_Roles", "admin"), ("x_debug", "1"))
    overrides = tuple(
        (name, "/api/admin/users" if "url" in name or "uri" in name or "path" in name or "prefix" in name else "DELETE")
        for name in sorted(ROUTING_OVERRIDE_HEADERS)
    )
    # The shipped edge refuses underscore names outright.
    assert send(edge.port, f"/{prefix}/hello", twins)[0] == 400
    # ...and with the edge configured otherwise, the processor strips them and
    # every routing override, whichever filter governs the route.
    gw = gateway_factory(policy_dir=_policy_dir(tmp_path, POLICY), envoy_config=_unprotected_config(tmp_path))
    for g in (edge, gw):
        status, _, body = send(g.port, f"/{prefix}/hello", overrides + (twins if g is gw else ()))
        assert status == 200, body
        seen = json.loads(body)["headers"]
        folded = {name.replace("_", "-") for name in seen}
        leaked = folded & ({"x-auth-tenant", "x-auth-roles", "x-debug"} | ROUTING_OVERRIDE_HEADERS)
        assert not leaked and not any("_" in name for name in seen), seen


# -- the property: Envoy's normalization and the canonical form agree ---------

_PIECES = st.sampled_from(
    [
        "/",
        "//",
        ".",
        "..",
        "/./",
        "/../",
        "%2e",
        "%2E",
        "%2e%2e",
        "%41",
        "%61",
        "%7e",
        "%7E",
        "%5f",
        "%2d",
        "%3f",
        "%3F",
        "%20",
        "%22",
        "%7b",
        "%40",
        "%25",
        "%2f",
        "%5c",
        ";",
        "\\",
        "%",
        "%zz",
        "a",
        "Z",
        "admin",
        "a.",
        "~",
        "'",
        "(",
        "@",
        ":",
        "=",
        "+",
        ",",
        "!",
        "$",
        "&",
        "*",
        "[",
        "]",
        '"',
        "<",
        ">",
        "`",
        "{",
        "}",
        "|",
        "^",
        "\uff41",
        "\u00e9",
        "%c3%a9",
        "%00",
        "%0a",
        "%7f",
    ]
)
PATHS = st.lists(_PIECES, max_size=10).map(lambda pieces: "/t/" + "".join(pieces))


def _upper_hex(path: str) -> str:
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), path)


@pytest.fixture
def open_gateway(gateway_factory, tmp_path):
    return gateway_factory(policy_dir=_policy_dir(tmp_path, OPEN_POLICY))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=PATHS)
def test_envoy_normalization_yields_the_path_the_processor_authorized(open_gateway, raw):
    status, headers, body = send(open_gateway.port, raw)
    seen = upstream_path(status, headers, body)
    try:
        expected = canonical_path(raw)
    except AmbiguousPath:
        expected = None
    if seen is not None:
        # Whatever reached the upstream is canonical: the processor judged
        # exactly that path (the hex case of kept escapes aside).
        assert canonical_path(seen) == _upper_hex(seen), (raw, seen)
    if expected is not None:
        # An accepted path is forwarded, as exactly its canonical form.
        assert seen is not None, (raw, status, body)
        assert _upper_hex(seen) == expected, (raw, seen, expected)


# -- processor outages: 503 from both filters, health-checked cluster ---------


def _governance_health(gateway) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.envoy.admin_port}/clusters", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return next(line for line in lines if line.startswith("governance::") and "::health_flags::" in line)


def test_processor_outage_is_a_503_from_both_filters_and_leaves_the_health_checked_rotation(edge):
    import signal

    assert send(edge.port, "/api/hello")[0] == 200 and send(edge.port, "/proc/hello")[0] == 200
    assert edge.wait_for(lambda: _governance_health(edge).endswith("::healthy"))
    edge.processor.stop(signal.SIGKILL)
    # ext_authz and ext_proc alike: an outage is a 503, not a 403 or a 500.
    assert send(edge.port, "/api/hello")[0] == 503
    assert send(edge.port, "/proc/hello")[0] == 503
    # The 1 s gRPC health check notices on its own, without waiting for traffic.
    assert edge.wait_for(lambda: "failed_active_hc" in _governance_health(edge), timeout=10)
    edge.restart_processor()
    assert edge.wait_for(lambda: _governance_health(edge).endswith("::healthy"), timeout=10)
    assert send(edge.port, "/api/hello")[0] == 200 and send(edge.port, "/proc/hello")[0] == 200


def test_a_stalled_processor_is_503_from_ext_authz_and_504_from_ext_proc(edge):
    import os
    import signal

    pid = edge.processor.proc.pid
    os.kill(pid, signal.SIGSTOP)  # alive and connected, answering nothing
    try:
        assert send(edge.port, "/api/hello")[0] == 503  # ext_authz: status_on_error
        assert send(edge.port, "/proc/hello")[0] == 504  # ext_proc: message_timeout keeps its 504
    finally:
        os.kill(pid, signal.SIGCONT)


class _Replicas:
    """The shipped gateway (plain listener) in front of a governance cluster of
    several processor replicas, given by port; started and stopped by PID."""

    def __init__(self, tmp_path: Path, replica_ports: list[int], health_checks: bool = True):
        from extproc.local.echo import EchoServer
        from extproc.local.envoy import EnvoyProcess, render
        from extproc.local.processor import free_port

        self.echo, self.envoy = EchoServer().start(), None
        try:
            self.port, admin = free_port(), free_port()
            config = render(
                ENVOY_DIR / "gateway.yaml",
                {"gateway": self.port, "governance": replica_ports[0], "upstream": self.echo.port},
                admin_port=admin,
            )
            config["static_resources"]["listeners"] = config["static_resources"]["listeners"][:1]  # no TLS files
            governance = next(c for c in config["static_resources"]["clusters"] if c["name"] == "governance")
            if not health_checks:
                governance.pop("health_checks")
            endpoints = governance["load_assignment"]["endpoints"][0]["lb_endpoints"]
            template = json.dumps(endpoints[0])
            endpoints[:] = []
            for port in replica_ports:
                endpoint = json.loads(template)
                endpoint["endpoint"]["address"]["socket_address"]["port_value"] = port
                endpoints.append(endpoint)
            self.envoy = EnvoyProcess(config, admin, log_path=str(tmp_path / "envoy.log"))
            self.envoy.wait_ready()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for process in (self.envoy, self.echo):
            if process is not None:
                process.stop()


def test_a_request_to_a_gone_replica_is_retried_on_another(tmp_path):
    """The shipped retry policy of both filters' gRPC service: a replica that
    refuses the connection (gone, or closed after draining) costs a retry on
    another replica, not a 503. Health checks are taken out to show the retry
    alone does it (they would also eject the replica within a second)."""
    from extproc.local.processor import ProcessorProcess, free_port

    processor = ProcessorProcess(str(_policy_dir(tmp_path, POLICY)), log_path=str(tmp_path / "p.log")).wait_ready()
    gateway = None
    try:
        gateway = _Replicas(tmp_path, [free_port(), processor.port], health_checks=False)  # nothing on the first
        for path in ("/api/hello", "/proc/hello"):  # round robin: every other call picks the gone replica
            assert [send(gateway.port, path)[0] for _ in range(10)] == [200] * 10, path
    finally:
        if gateway is not None:
            gateway.close()
        processor.stop()


def test_a_draining_replica_leaves_the_rotation_before_it_stops(tmp_path):
    """A rolling restart loses nothing: the replica told to stop answers
    NOT_SERVING for its drain delay while still serving, the 1 s health check
    takes it out of the rotation, and only then does it close."""
    import threading

    from extproc.local.processor import ProcessorProcess

    policies = str(_policy_dir(tmp_path, POLICY))
    replicas = [
        ProcessorProcess(policies, log_path=str(tmp_path / f"p{i}.log"), drain_delay=2.0).wait_ready() for i in range(2)
    ]
    gateway, stop, results = None, threading.Event(), []
    try:
        gateway = _Replicas(tmp_path, [r.port for r in replicas])

        def load():
            n = 0
            while not stop.is_set():
                path = ("/api/hello", "/proc/hello")[n % 2]
                n += 1
                try:
                    results.append((path, send(gateway.port, path)[0]))
                except OSError as exc:
                    results.append((path, type(exc).__name__))

        worker = threading.Thread(target=load)
        worker.start()
        try:
            while len(results) < 50:
                stop.wait(0.05)
            replicas[0].stop()  # SIGTERM: drain, then exit
            count = len(results)
            while len(results) < count + 100:
                stop.wait(0.05)
        finally:
            stop.set()
            worker.join()
    finally:
        if gateway is not None:
            gateway.close()
        for replica in replicas:
            replica.stop()
    assert replicas[0].proc.returncode == 0
    failures = [r for r in results if r[1] != 200]
    assert failures == [] and len(results) >= 150
