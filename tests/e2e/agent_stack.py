"""The gateway with agent upstreams: real Envoy rendered from
envoy/gateway.yaml (the `mcp` and `a2a` clusters pointed at servers the test
runs), the real processor in its own process, the echo upstream. Used by
test_mcp.py and test_a2a.py; started once per module (each start costs
seconds) and stopped by PID."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import httpx

from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port, wait_serving

REPO = Path(__file__).resolve().parents[2]


class AgentStack:
    def __init__(
        self,
        directory: Path,
        upstreams: dict[str, int],
        certs: Path,
        port: int | None = None,
        policy_dir: Path = REPO / "policies",
    ):
        self.dir = directory
        self.policies = directory / "policies"
        shutil.copytree(policy_dir, self.policies)
        self.processor_log = directory / "processor.log"
        self.echo = self.processor = self.envoy = None
        try:
            self.echo = EchoServer().start()
            self.processor = ProcessorProcess(
                str(self.policies), reload_interval=0.1, log_path=str(self.processor_log)
            ).wait_ready()
            self.port, self.mtls_port = port or free_port(), free_port()
            admin = free_port()
            ports = {
                "gateway": self.port,
                "gateway_mtls": self.mtls_port,
                "governance": self.processor.port,
                "upstream": self.echo.port,
                **upstreams,
            }
            config = render(ENVOY_DIR / "gateway.yaml", ports, admin_port=admin, certs_dir=certs)
            self.envoy = EnvoyProcess(config, admin, log_path=str(directory / "envoy.log"))
            self.envoy.wait_ready()
        except BaseException:
            self.close()
            raise
        self.url = f"http://127.0.0.1:{self.port}"
        self.certs = certs

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def mtls_client(self, cert: str = "client") -> httpx.Client:
        """A client of the mTLS listener presenting ``certs/<cert>.pem``."""
        context = ssl.create_default_context(cafile=str(self.certs / "ca.pem"))
        context.load_cert_chain(str(self.certs / f"{cert}.pem"), str(self.certs / f"{cert}.key"))
        return httpx.Client(base_url=f"https://localhost:{self.mtls_port}", verify=context, timeout=10)

    def processor_log_text(self) -> str:
        return self.processor_log.read_text(errors="replace")

    def assert_healthy(self) -> None:
        wait_serving(self.processor.port, timeout=5)
        assert self.processor.proc.poll() is None
        assert "Traceback" not in self.processor_log_text(), self.processor_log_text()[-3000:]

    def close(self) -> None:
        for process in (self.envoy, self.processor, self.echo):
            if process is not None:
                process.stop()
