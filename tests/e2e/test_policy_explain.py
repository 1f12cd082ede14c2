"""`extproc policy explain` says what the gateway does: the demo requests
(401, 200, 403, 429, a redacted LLM prompt, a refused MCP tool) sent through
real Envoy to the real processor, whose decision log records each decision,
and the same requests explained twice: in process against the policy
directory, and through the running processor's own gRPC API (its current
revision, its live counters), read back from its decision log."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from extproc.local.demo_keys import load_demo_key, mint
from extproc.local.echo import EchoServer
from extproc.local.envoy import ENVOY_DIR, EnvoyProcess, render
from extproc.local.processor import ProcessorProcess, free_port
from extproc.policytools.cases import RequestSpec
from extproc.policytools.explain import (
    explain_directory,
    explain_processor,
    find_decision,
    record_from_log,
    remote_token,
)
from extproc.policytools.harness import Outcome
from tests.e2e.conftest import REPO


@dataclass(frozen=True)
class Demo:
    name: str
    request: dict[str, Any]  # a case's request (the explain input)
    status: int
    decided_by: str | None
    repeat: int = 1


def chat(text: str) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": text}]}


READER = {"sub": "alice", "roles": ["reader"]}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
DEMOS = [
    Demo("401 no token", {"method": "GET", "path": "/api/hello"}, 401, "jwt"),
    Demo("200 reader reads", {"method": "GET", "path": "/api/hello", "identity": {"claims": READER}}, 200, None),
    Demo("403 reader manages", {"method": "GET", "path": "/api/admin/x", "identity": {"claims": READER}}, 403, "rbac"),
    Demo(
        "429 over the quota",
        {"method": "GET", "path": "/api/hello", "identity": {"claims": {"sub": "busy", "roles": ["reader"]}}},
        429,
        "quota",
        repeat=61,
    ),
    Demo(
        "200 redacted prompt",
        {
            "method": "POST",
            "path": "/v1/chat/completions",
            "headers": {"content-type": "application/json"},
            "identity": {"claims": READER},
            "json": chat("mail alice@example.com"),
        },
        200,
        None,
    ),
    Demo(
        "refused MCP tool",
        {
            "method": "POST",
            "path": "/mcp",
            "headers": MCP_HEADERS,
            "identity": {"claims": READER},
            "json": {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "delete_record"}},
        },
        200,
        "mcp_tools",
    ),
]


class Stack:
    """Envoy (envoy/gateway.yaml as shipped) → the processor (its own
    process, writing its decision log) → the echo upstream and mock model.
    Started once for the module; a loaded 2-core host can take longer than
    the shared fixture's 20 s to start a processor, hence this one's 90 s."""

    def __init__(self, directory: Path, certs: Path):
        self.policies = directory / "policies"
        shutil.copytree(REPO / "policies", self.policies)
        self.log = directory / "decisions.jsonl"
        self.echo = EchoServer().start()
        self.processor: ProcessorProcess | None = None
        self.envoy: EnvoyProcess | None = None
        try:
            self.processor = ProcessorProcess(
                str(self.policies),
                log_path=str(directory / "processor.log"),
                extra_args=("--decision-log", str(self.log)),
            ).wait_ready(timeout=90)
            port, admin = free_port(), free_port()
            ports = {"gateway": port, "gateway_mtls": free_port(), "governance": self.processor.port}
            ports["upstream"] = self.echo.port
            config = render(ENVOY_DIR / "gateway.yaml", ports, admin_port=admin, certs_dir=certs)
            self.envoy = EnvoyProcess(config, admin, log_path=str(directory / "envoy.log"))
            self.envoy.wait_ready(timeout=60)
        except BaseException:
            self.close()
            raise
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def close(self) -> None:
        for process in (self.envoy, self.processor, self.echo):
            if process is not None:
                process.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, demo_certs):
    stack = Stack(tmp_path_factory.mktemp("explain"), demo_certs)
    yield stack
    stack.client.close()
    stack.close()


def through_envoy(gateway: Stack, demo: Demo) -> httpx.Response:
    spec = demo.request
    headers = dict(spec.get("headers", {}))
    claims = spec.get("identity", {}).get("claims")
    if claims:
        claims = dict(claims)
        headers["authorization"] = "Bearer " + mint(
            load_demo_key(), sub=claims.pop("sub"), roles=claims.pop("roles", []), extra=claims
        )
    response: httpx.Response | None = None
    for _ in range(demo.repeat):
        response = gateway.client.request(
            spec["method"], spec["path"], headers=headers, content=json.dumps(spec["json"]) if "json" in spec else None
        )
    assert response is not None
    return response


def verdicts(record) -> list[tuple[str, str]]:
    return [(c.capability, c.decision) for c in record.capabilities]


@pytest.mark.parametrize("demo", DEMOS, ids=lambda d: d.name)
def test_explain_matches_what_the_gateway_does(stack, demo: Demo):
    gateway, log = stack, stack.log
    response = through_envoy(gateway, demo)
    assert response.status_code == demo.status, response.text
    line = find_decision(log, response.headers["x-decision-id"], timeout=10)
    assert line is not None, "the gateway's decision is not in the decision log"
    actual = record_from_log(line)

    spec = RequestSpec.model_validate(demo.request)
    local, policy = asyncio.run(explain_directory(str(gateway.policies), spec, demo.repeat))
    assert local.record is not None
    assert local.status == demo.status
    assert local.decided_by == demo.decided_by
    record = local.record
    assert (record.route, record.code, record.decision) == (actual.route, actual.code, actual.decision)
    assert verdicts(local.record) == verdicts(actual)
    assert local.record.revision == actual.revision == policy.revision  # the same policy, byte for byte

    # The running processor, asked through its own gRPC API, as Envoy asks
    # it (its counters are live: the quota case is refused by the end again).
    address = f"127.0.0.1:{gateway.processor.port}"
    remote = asyncio.run(explain_processor(address, spec, demo.repeat, remote_token(spec, None, None)))
    remote_line = find_decision(log, remote.decision_id, timeout=10)
    assert remote_line is not None
    remote.record = record_from_log(remote_line)
    assert remote.status == demo.status
    assert remote.decided_by == demo.decided_by
    assert verdicts(remote.record) == verdicts(actual)


def test_explain_shows_the_redaction_the_model_saw(stack):
    gateway = stack
    demo = next(d for d in DEMOS if d.name == "200 redacted prompt")
    response = through_envoy(gateway, demo)
    seen_by_model = response.json()["choices"][0]["message"]["content"]
    local: Outcome
    local, _ = asyncio.run(explain_directory(str(gateway.policies), RequestSpec.model_validate(demo.request)))
    assert local.upstream is not None, local.record
    sent = local.upstream.json()["messages"][0]["content"]
    assert sent == "mail [EMAIL_1]" and sent in seen_by_model and "alice@example.com" not in seen_by_model


def test_the_cli_explains_against_the_running_processor(stack):
    import argparse
    import io

    from extproc.policytools.commands import add_commands
    from extproc.policytools.explain import main

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["explain", "--processor", f"127.0.0.1:{stack.processor.port}", "--decision-log", str(stack.log),
         "--path", "/api/admin/users", "--claims", json.dumps(READER)]
    )  # fmt: skip
    out, err = io.StringIO(), io.StringIO()
    assert main(args, out, err) == 0, err.getvalue()
    text = out.getvalue()
    assert f"policy:    processor 127.0.0.1:{stack.processor.port} (revision " in text
    assert "  2. rbac" in text and "deny forbidden" in text  # from the processor's own decision log
    assert "answer:    403 refused (forbidden), decided by rbac" in text
