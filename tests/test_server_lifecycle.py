"""The processor's process lifecycle, with real processes: who may own a
port, how the supervisor replaces workers (and when it gives up), and that
every start-up failure is one line and exit 2."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from envoy.service.auth.v3 import external_auth_pb2 as authz_pb2
from envoy.service.auth.v3 import external_auth_pb2_grpc as authz_grpc
from google.rpc import code_pb2

from extproc.local.processor import ProcessorProcess, free_port, wait_serving
from tests import waiting

# Real processor processes, supervisors and their sockets.
pytestmark = pytest.mark.integration

ALLOW_A = "routes:\n  - name: a\n    match: {path_prefix: /a/}\n"
ALLOW_A_AND_B = ALLOW_A + "  - name: b\n    match: {path_prefix: /b/}\n"
DENY_A = (
    "routes:\n  - name: a\n    match: {path_prefix: /a/}\n    capabilities:\n"
    "      - type: header_match\n        config: {deny: [{name: x-never-sent, present: false}]}\n"
)


def extproc(*args, timeout=60, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "extproc", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def policy_dir(root: Path, text: str, name: str = "policies") -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "policy.yaml").write_text(text)
    return directory


def check(port: int, path: str) -> int:
    """One ext_authz Check on a fresh connection (so SO_REUSEPORT would
    spread them over every listener on the port); the gRPC status code."""
    request = authz_pb2.CheckRequest()
    request.attributes.request.http.method = "GET"
    request.attributes.request.http.path = path
    request.attributes.request.http.host = "example.com"
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return authz_grpc.AuthorizationStub(channel).Check(request, timeout=5).status.code


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):
    return waiting.wait_for(predicate, timeout, interval)


def assert_one_line_exit_2(result: subprocess.CompletedProcess, *expected: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# --- 10: only a supervisor's own workers share a port -------------------------------------------


@pytest.mark.parametrize("first_workers,second_workers", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_a_second_instance_on_the_same_port_fails_and_the_first_keeps_every_request(
    tmp_path, first_workers, second_workers
):
    first = ProcessorProcess(
        str(policy_dir(tmp_path, ALLOW_A)), workers=first_workers, log_path=str(tmp_path / "first.log")
    ).wait_ready()
    try:
        other_policy = policy_dir(tmp_path, DENY_A, "other")  # would deny /a/ if it took a share
        second = extproc(
            "serve", "--port", str(first.port), "--workers", str(second_workers), "--policies", str(other_policy)
        )
        assert_one_line_exit_2(second, f"port {first.port} is already served by another extproc")
        assert [check(first.port, "/a/x") for _ in range(40)] == [code_pb2.OK] * 40
    finally:
        first.stop()


def test_a_lone_server_does_not_offer_its_port_for_sharing(tmp_path):
    # Whatever holds the lock, a lone server's socket has no SO_REUSEPORT: a
    # foreign process setting that option still cannot bind next to it.
    first = ProcessorProcess(str(policy_dir(tmp_path, ALLOW_A))).wait_ready()
    try:
        with socket.socket() as intruder:
            intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with pytest.raises(OSError):
                intruder.bind(("127.0.0.1", first.port))
    finally:
        first.stop()


# --- 17: every start-up failure is one line and exit 2 --------------------------------------------


@pytest.fixture
def busy_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_grpc_port_is_one_line(tmp_path, busy_port, workers):
    result = extproc(
        "serve", "--port", str(busy_port), "--workers", workers, "--policies", str(policy_dir(tmp_path, ALLOW_A))
    )
    assert_one_line_exit_2(result, f"port {busy_port} is already in use")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_busy_metrics_port_is_one_line(tmp_path, busy_port, workers):
    result = extproc(
        "serve",
        "--port",
        str(free_port()),
        "--workers",
        workers,
        "--metrics-port",
        str(busy_port),
        "--policies",
        str(policy_dir(tmp_path, ALLOW_A)),
    )
    assert_one_line_exit_2(result, f"cannot start the metrics endpoint on port {busy_port}")


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    "files,expected",
    [
        (None, "no such file or directory"),
        ({"policy.yaml": "routes:\n  - name: a\n    match: {path_prefix: /a/\n"}, "policy.yaml:"),
        (
            {"a.yaml": "routes: [{name: UPPER}]\n", "b.yaml": "routes: [{name: Other}]\n"},
            "(and 1 more",
        ),  # the first error, and how to see them all
    ],
)
def test_an_invalid_policy_is_one_line(tmp_path, workers, files, expected):
    directory = tmp_path / "policies"
    if files is not None:
        directory.mkdir()
        for name, text in files.items():
            (directory / name).write_text(text)
    port = str(free_port())
    line = assert_one_line_exit_2(
        extproc("serve", "--port", port, "--workers", workers, "--policies", str(directory)),
        f"the policy in {directory}",
    )
    assert expected in line.lower()


@pytest.mark.parametrize(
    "flag,value,expected",
    [
        ("--port", "70000", "argument --port: 70000 out of range"),
        ("--workers", "0", "argument --workers: 0 out of range"),
        ("--grace", "-1", "argument --grace: -1 out of range"),
        ("--reload-interval", "0", "argument --reload-interval: 0 out of range"),
        ("--drain-delay", "soon", "argument --drain-delay: 'soon' is not a number"),
        ("--max-concurrent", "0", "argument --max-concurrent: 0 out of range"),
        ("--max-failed-starts", "0", "argument --max-failed-starts: 0 out of range"),
        ("--metrics-port", "abc", "argument --metrics-port: 'abc' is not a whole number"),
    ],
)
def test_a_bad_flag_value_is_one_line(flag, value, expected):
    assert_one_line_exit_2(extproc("serve", flag, value), expected)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    "url,expected",
    [
        ("http://user:hunter2@cache:6379", "scheme must be one of"),
        ("redis://:hunter2@", "no host"),
    ],
)
def test_a_bad_quota_backend_url_is_one_line_without_its_password(tmp_path, workers, url, expected):
    result = extproc(
        "serve",
        "--port",
        str(free_port()),
        "--workers",
        workers,
        "--quota-backend",
        url,
        "--policies",
        str(policy_dir(tmp_path, ALLOW_A)),
    )
    assert_one_line_exit_2(result, "--quota-backend", expected)
    assert "hunter2" not in result.stderr


def test_an_unwritable_decision_log_is_one_line(tmp_path):
    result = extproc(
        "serve",
        "--port",
        str(free_port()),
        "--decision-log",
        str(tmp_path / "missing" / "log"),
        "--policies",
        str(policy_dir(tmp_path, ALLOW_A)),
    )
    assert_one_line_exit_2(result, "cannot write the decision log")


def test_workers_need_a_fixed_port(tmp_path):
    result = extproc("serve", "--port", "0", "--workers", "2", "--policies", str(policy_dir(tmp_path, ALLOW_A)))
    assert_one_line_exit_2(result, "--workers needs a fixed --port")


def test_up_with_incomplete_certificates_is_one_line(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.pem").write_text("not the rest\n")
    result = extproc(
        "up",
        "--certs",
        str(certs),
        "--listen-port",
        str(free_port()),
        "--mtls-port",
        str(free_port()),
        "--policies",
        str(policy_dir(tmp_path, ALLOW_A)),
    )
    assert_one_line_exit_2(result, f"{certs} lacks server.key, server.pem")


# --- 13: supervisor backoff, a bounded number of failed starts, the last good policy ------------


def test_the_supervisor_backs_off_and_gives_up_on_workers_that_cannot_start(tmp_path):
    # A real start failure: the decision log's directory disappears after the
    # start, so every replacement worker exits 2 at once.
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    output = tmp_path / "stderr"
    with open(output, "w") as sink:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "extproc",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
                "--max-failed-starts",
                "3",
                "--decision-log",
                str(logs / "decisions.jsonl"),
                "--policies",
                str(policy_dir(tmp_path, ALLOW_A)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        workers = wait_for(lambda: len(children_of(supervisor.pid)) == 2 and children_of(supervisor.pid))
        wait_for(lambda: all(f'"pid": {pid},' in output.read_text() for pid in workers))  # both listening
        shutil.rmtree(logs)
        time.sleep(5.5)  # past the supervisor's MIN_UPTIME_S: their death is a crash, not a failed start
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        supervisor.wait(timeout=60)
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    stderr = output.read_text()
    assert supervisor.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("extproc: workers failed to start 3 times in a row")
    assert "Traceback" not in stderr
    # Replaced at once after a crash, then waited 0.5 s, 1 s... before each retry.
    delays = [line.split("restarting in ")[1].split("s")[0] for line in stderr.splitlines() if "restarting in " in line]
    assert delays == ["0.5", "1.0"], stderr
    assert stderr.count("cannot write the decision log") == 3  # exactly the failed starts, no respawn storm
    assert not any(alive(pid) for pid in workers)


def test_replacement_workers_serve_the_last_good_policy_while_the_live_one_is_broken(tmp_path):
    policies = policy_dir(tmp_path, ALLOW_A)
    processor = ProcessorProcess(
        str(policies), workers=2, reload_interval=0.1, log_path=str(tmp_path / "processor.log")
    ).wait_ready()
    try:
        assert check(processor.port, "/a/x") == code_pb2.OK
        (policies / "policy.yaml").write_text("routes: [{name: a, match: {path_prefix: /a/}\n")  # broken YAML
        log = tmp_path / "processor.log"
        wait_for(lambda: log.read_text().count("policy reload rejected") >= 2)
        time.sleep(0.5)  # the supervisor has looked at the broken directory too
        workers = children_of(processor.proc.pid)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(set(children_of(processor.proc.pid)) - set(workers)) == 2)
        wait_serving(processor.port, proc=processor.proc)
        assert [check(processor.port, "/a/x") for _ in range(20)] == [code_pb2.OK] * 20
        assert processor.proc.poll() is None
        # ...and they still follow the live directory once it is fixed.
        (policies / "policy.yaml").write_text(ALLOW_A_AND_B)
        wait_for(lambda: all(check(processor.port, "/b/x") == code_pb2.OK for _ in range(10)))
    finally:
        processor.stop()


@pytest.mark.e2e  # `extproc up` starts Envoy
def test_up_with_a_busy_envoy_port_is_one_line(tmp_path, busy_port):
    result = extproc(
        "--log-level",
        "warning",
        "up",
        "--certs",
        str(tmp_path / "certs"),
        "--listen-port",
        str(busy_port),
        "--mtls-port",
        str(free_port()),
        "--policies",
        str(policy_dir(tmp_path, ALLOW_A)),
    )
    assert_one_line_exit_2(result, "extproc up: envoy exited with 1: ", "Address already in use")


def test_workers_start_on_a_policy_that_refers_to_files_outside_its_directory(tmp_path):
    # The supervisor starts workers on its own copy of the policy directory:
    # a relative path reaching outside it must still find the file.
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.copy(Path(__file__).parent.parent / "policies" / "keys" / "demo-jwks.json", shared / "jwks.json")
    policies = policy_dir(
        tmp_path,
        "routes:\n  - name: a\n    match: {path_prefix: /a/}\n    capabilities:\n"
        "      - type: jwt\n        config:\n          issuers:\n"
        "            - issuer: https://demo.extproc.local\n"
        "              jwks: {file: ../shared/jwks.json}\n",
    )
    processor = ProcessorProcess(str(policies), workers=2, log_path=str(tmp_path / "processor.log")).wait_ready()
    try:
        assert check(processor.port, "/a/x") == code_pb2.UNAUTHENTICATED  # served, and the token is required
        assert processor.proc.poll() is None
    finally:
        processor.stop()


def spawned_by(pid: int) -> list[int]:
    """Every process whose parent is ``pid``, whichever of its threads
    started it (/proc/PID/task/PID/children lists the main thread's only)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


MODEL_TIER = (
    "routes:\n  - name: llm\n    match: {path_prefix: /v1/}\n    capabilities:\n"
    "      - type: prompt_guard\n        config: {model: {enabled: true}}\n"
)


def test_a_killed_processor_leaves_no_guard_worker_behind(tmp_path):
    # The prompt guard's model tier runs in a process pool the processor
    # starts at policy load; SIGKILL gives the processor no chance to stop it.
    processor = ProcessorProcess(str(policy_dir(tmp_path, MODEL_TIER)), log_path=str(tmp_path / "log"))
    try:
        processor.wait_ready(timeout=60)
        workers = waiting.wait_for(lambda: spawned_by(processor.proc.pid), timeout=30)
        processor.proc.kill()
        processor.proc.wait(timeout=10)
        waiting.wait_for(lambda: not any(alive(pid) for pid in workers), timeout=15)
    finally:
        processor.stop(signal.SIGKILL)
