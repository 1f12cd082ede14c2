"""Policy reloads that would silently change every decision are refused,
end to end: real Envoy, the real processor watching a real directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

API = """\
routes:
  - name: api
    capabilities:
      - type: header_match
        config: {deny: [{name: x-debug, present: true}]}
"""
# Four more routes in a second file: losing it mid-sync removes 4 of 5.
OTHERS = "routes: [{name: proc}, {name: llm}, {name: spare-a}, {name: spare-b}]\n"


@pytest.fixture
def guarded(gateway_factory, tmp_path):
    policies = tmp_path / "src"
    policies.mkdir()
    (policies / "a.yaml").write_text(API)
    (policies / "b.yaml").write_text(OTHERS)
    return gateway_factory(policy_dir=policies)


def decisions(gateway) -> tuple[int, int, int]:
    return (
        gateway.client.get("/api/x").status_code,
        gateway.client.get("/api/x", headers={"x-debug": "1"}).status_code,
        gateway.client.get("/proc/x").status_code,
    )


def test_a_directory_emptied_or_half_synced_keeps_the_last_good_policy(guarded):
    assert decisions(guarded) == (200, 403, 200)
    (guarded.policies / "b.yaml").unlink()  # a sync that has not written it back yet
    guarded.wait_for(lambda: "removes 4 of 5 routes" in guarded.processor_log_text())
    assert decisions(guarded) == (200, 403, 200)
    (guarded.policies / "a.yaml").unlink()  # nothing left at all
    guarded.wait_for(lambda: "no routes" in guarded.processor_log_text())
    assert decisions(guarded) == (200, 403, 200)
    assert guarded.processor.proc.poll() is None


def test_the_explicit_marker_applies_the_removal(guarded):
    assert decisions(guarded) == (200, 403, 200)
    (guarded.policies / "b.yaml").unlink()
    guarded.write_policy("a.yaml", "allow_route_removal: true\n" + API)
    guarded.wait_for(lambda: decisions(guarded)[2] == 403)  # /proc/ is no route any more: denied
    assert decisions(guarded)[:2] == (200, 403)


def test_serve_refuses_to_start_on_a_directory_without_routes(tmp_path):
    (tmp_path / "only-defaults.yaml").write_text("defaults: {unmatched: deny}\n")
    result = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--port", "0", "--policies", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert str(tmp_path) in line and "no routes" in line and "allow_empty: true" in line
