"""Real Envoy + the real processor (its own process) + the echo upstream,
all on ephemeral loopback ports; everything stopped by PID afterwards."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from extproc.local.certs import DEMO_CLIENT_ID
from extproc.local.certs import generate as generate_certs
from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render, uses_certs
from extproc.local.processor import ProcessorProcess, free_port
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


class Gateway:
    def __init__(
        self,
        tmp_path: Path,
        policy_dir: Path,
        envoy_config: Path,
        certs: Path,
        workers: int = 1,
        processor_args: tuple[str, ...] = (),
    ):
        self.tmp_path = tmp_path
        self.policies = tmp_path / "policies"
        shutil.copytree(policy_dir, self.policies)
        self.processor_log = tmp_path / "processor.log"
        self.workers = workers
        self.echo = self.processor = self.envoy = self.client = None
        try:
            self.echo = EchoServer().start()
            self.processor_args = processor_args
            self.processor = ProcessorProcess(
                str(self.policies),
                workers=workers,
                reload_interval=0.1,
                log_path=str(self.processor_log),
                extra_args=processor_args,
            )
            self.processor.wait_ready()
            self.port, self.mtls_port, admin = free_port(), free_port(), free_port()
            self.certs = certs
            ports = {"gateway": self.port, "governance": self.processor.port, "upstream": self.echo.port}
            if uses_certs(envoy_config):
                ports["gateway_mtls"] = self.mtls_port
            config = render(envoy_config, ports, admin_port=admin, certs_dir=certs)
            self.envoy = EnvoyProcess(config, admin, log_path=str(tmp_path / "envoy.log"))
            self.envoy.wait_ready()
        except BaseException:
            self.close()
            raise
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def restart_processor(self) -> None:
        self.processor = ProcessorProcess(
            str(self.policies),
            port=self.processor.port,
            workers=self.workers,
            reload_interval=0.1,
            log_path=str(self.processor_log),
            extra_args=self.processor_args,
        ).wait_ready()

    def write_policy(self, name: str, text: str) -> None:
        path = self.policies / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.rename(path)  # atomic, as a git checkout or ConfigMap swap would be

    def processor_log_text(self) -> str:
        return self.processor_log.read_text(errors="replace")

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05):
        return wait_for(predicate, timeout, interval)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        for process in (self.envoy, self.processor, self.echo):
            if process is not None:
                process.stop()


@pytest.fixture(scope="session")
def demo_certs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    generate_certs(out, [DEMO_CLIENT_ID, "spiffe://example.org/ns/other/sa/intruder"])
    return out


@pytest.fixture
def gateway_factory(tmp_path, demo_certs):
    made: list[Gateway] = []

    def make(
        policy_dir: Path = REPO / "policies",
        envoy_config: Path = ENVOY_DIR / "gateway.yaml",
        workers: int = 1,
        processor_args: tuple[str, ...] = (),
    ) -> Gateway:
        directory = tmp_path / f"gw{len(made)}"
        directory.mkdir()
        gw = Gateway(directory, policy_dir, envoy_config, demo_certs, workers, processor_args)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()


@pytest.fixture
def gateway(gateway_factory) -> Gateway:
    return gateway_factory()
