"""Real Envoy + the real processor (its own process) + the echo upstream,
all on ephemeral loopback ports; everything stopped by PID afterwards."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port

REPO = Path(__file__).resolve().parents[2]


class Gateway:
    def __init__(self, tmp_path: Path, policy_dir: Path, envoy_config: Path, workers: int = 1):
        self.tmp_path = tmp_path
        self.policies = tmp_path / "policies"
        shutil.copytree(policy_dir, self.policies)
        self.processor_log = tmp_path / "processor.log"
        self.workers = workers
        self.echo = self.processor = self.envoy = self.client = None
        try:
            self.echo = EchoServer().start()
            self.processor = ProcessorProcess(str(self.policies), workers=workers, reload_interval=0.1,
                                              log_path=str(self.processor_log))
            self.processor.wait_ready()
            self.port = free_port()
            admin = free_port()
            config = render(envoy_config, {"gateway": self.port, "governance": self.processor.port,
                                           "upstream": self.echo.port}, admin_port=admin)
            self.envoy = EnvoyProcess(config, admin, log_path=str(tmp_path / "envoy.log"))
            self.envoy.wait_ready()
        except BaseException:
            self.close()
            raise
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def restart_processor(self) -> None:
        self.processor = ProcessorProcess(str(self.policies), port=self.processor.port, workers=self.workers,
                                          reload_interval=0.1, log_path=str(self.processor_log)).wait_ready()

    def write_policy(self, name: str, text: str) -> None:
        path = self.policies / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(path)  # atomic, as a git checkout or ConfigMap swap would be

    def processor_log_text(self) -> str:
        return self.processor_log.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = predicate()
            if result:
                return result
            time.sleep(interval)
        raise AssertionError("condition not met in time")

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in (self.envoy, self.processor, self.echo):
            if process is not None:
                process.stop()


@pytest.fixture
def gateway_factory(tmp_path):
    made: list[Gateway] = []

    def make(policy_dir: Path = REPO / "policies", envoy_config: Path = ENVOY_DIR / "gateway.yaml",
             workers: int = 1) -> Gateway:
        directory = tmp_path / f"gw{len(made)}"
        directory.mkdir()
        gw = Gateway(directory, policy_dir, envoy_config, workers)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


@pytest.fixture
def gateway(gateway_factory) -> Gateway:
    return gateway_factory()
