"""Every extproc module imports alone, without a cycle, and within its layer.

One child interpreter discovers the modules (``pkgutil``, without importing
them) and forks once per module from a state where no ``extproc`` module and
none of the heavy packages is loaded, so each import starts clean, exactly as
``python -c "import extproc.x"`` would, but without paying for the
interpreter and pydantic a hundred times. The child reports what each import
loaded; the layer table (``extproc.layers``) says what it must not have.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from extproc.layers import LAYERS, layer_of, violations

pytestmark = pytest.mark.integration  # one child interpreter

ROOT = Path(__file__).resolve().parents[1]

# Heavy or stateful third-party packages: never loaded before the fork, so
# each module's own import of them is seen.
HEAVY = ("jwt", "grpc", "redis", "opentelemetry", "prometheus_client")

PROBE = r"""
import json, os, pkgutil, sys, traceback
import pydantic  # every layer may use it; loading it once keeps the forks cheap

root = sys.argv[1]
heavy = tuple(sys.argv[2].split(","))

def modules(path, prefix):
    for info in pkgutil.iter_modules([path]):
        name = prefix + info.name
        if info.name == "__main__":
            continue  # runs the CLI
        yield name
        if info.ispkg:
            yield from modules(os.path.join(path, info.name), name + ".")

assert not [m for m in sys.modules if m == "extproc" or m.startswith("extproc.") or m.split(".")[0] in heavy]
names = ["extproc", *modules(os.path.join(root, "extproc"), "extproc.")]
def start(name):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(name)
            ours = [m for m in sys.modules if m == "extproc" or m.startswith("extproc.")]
            out = {"ok": True, "loaded": sorted(ours + [m for m in sys.modules if m.split(".")[0] in heavy])}
        except BaseException as exc:
            out = {"ok": False, "error": "".join(traceback.format_exception_only(type(exc), exc)).strip()}
        with os.fdopen(write, "w") as pipe:
            json.dump(out, pipe)  # a few kB: fits the pipe buffer, no reader needed yet
        os._exit(0)
    os.close(write)
    return pid, read

results, running, pending = {}, {}, list(names)
while pending or running:
    while pending and len(running) < max(2, os.cpu_count() or 2):
        name = pending.pop()
        pid, read = start(name)
        running[pid] = (name, read)
    pid, _ = os.wait()
    name, read = running.pop(pid)
    with os.fdopen(read) as pipe:
        data = pipe.read()
    results[name] = json.loads(data) if data else {"ok": False, "error": "the import killed the interpreter"}
json.dump(results, sys.stdout)
"""


@pytest.fixture(scope="module")
def imports() -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=True,
    )
    results: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return results


def test_every_module_is_found(imports: dict[str, dict[str, Any]]) -> None:
    for expected in ("extproc.identity.who", "extproc.guard.injection", "extproc.capabilities.rbac", "extproc.server"):
        assert expected in imports


def test_every_module_imports_alone(imports: dict[str, dict[str, Any]]) -> None:
    failed = {name: result["error"] for name, result in imports.items() if not result["ok"]}
    assert not failed, failed


def test_every_module_has_a_layer(imports: dict[str, dict[str, Any]]) -> None:
    assert not [name for name in imports if layer_of(name) is None]


def test_no_module_reaches_above_its_layer(imports: dict[str, dict[str, Any]]) -> None:
    broken = {
        name: found
        for name, result in imports.items()
        if result["ok"] and (found := violations(name, result["loaded"]))
    }
    assert not broken, broken


def test_the_text_guard_loads_no_network_or_telemetry_stack(imports: dict[str, dict[str, Any]]) -> None:
    guard = [name for name in imports if name == "extproc.guard" or name.startswith("extproc.guard.")]
    assert guard
    for name in guard:
        assert not [m for m in imports[name]["loaded"] if m.split(".")[0] in HEAVY], name


def test_agent_protocols_stay_apart(imports: dict[str, dict[str, Any]]) -> None:
    # A2A shares JSON-RPC and identity matching with MCP through the bottom
    # layer, never through the MCP package.
    for name in (n for n in imports if n == "extproc.a2a" or n.startswith("extproc.a2a.")):
        assert not [m for m in imports[name]["loaded"] if m == "extproc.mcp" or m.startswith("extproc.mcp.")], name


def test_the_layer_table_names_real_modules(imports: dict[str, dict[str, Any]]) -> None:
    for layer in LAYERS:
        for member in layer.members:
            if member not in ("extproc.bundle",):  # planned, may not exist yet
                assert any(n == member or n.startswith(member + ".") for n in imports), member


def test_the_probe_sees_a_violation() -> None:
    # The check itself: a capability module pulled into the bottom layer is caught.
    assert violations("extproc.mcp.policy", ["extproc.config", "extproc.capabilities.rbac"]) == [
        "extproc.capabilities.rbac"
    ]
    assert violations("extproc.guard.pii", ["extproc.guard", "jwt.api_jwt"]) == ["jwt.api_jwt"]
