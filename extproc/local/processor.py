"""Start the processor as its own process and wait until it is serving."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_serving(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"processor exited with {proc.returncode}")
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"processor on port {port} not serving after {timeout}s")


class ProcessorProcess:
    def __init__(
        self,
        policies: str,
        port: int | None = None,
        workers: int = 1,
        reload_interval: float = 1.0,
        extra_args: tuple[str, ...] = (),
        log_path: str | None = None,
        env: dict[str, Any] | None = None,
        drain_delay: float = 0.0,
        log_level: str = "info",
    ):
        self.port = port or free_port()
        self.log_path = log_path
        # None: inherit our stderr. Open while the child runs; stop() closes it.
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "extproc",
                "--log-level",
                log_level,
                "serve",
                "--port",
                str(self.port),
                "--policies",
                policies,
                "--workers",
                str(workers),
                "--reload-interval",
                str(reload_interval),
                # One local processor has no other replica to drain to, so by
                # default it stops at once (tests and `extproc up` stop it often).
                "--drain-delay",
                str(drain_delay),
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout: float = 20.0) -> ProcessorProcess:
        wait_serving(self.port, timeout, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        return self.proc.returncode
