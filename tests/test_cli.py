import subprocess
import sys
from pathlib import Path

import pytest

# Each test runs the CLI in a child process.
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]


def extproc(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "extproc", *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_validate_ok_on_shipped_policies():
    result = extproc("policy", "validate", str(REPO / "policies"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ") and "revision" in result.stdout


def test_validate_points_at_the_broken_line(tmp_path):
    (tmp_path / "good.yaml").write_text("routes: [{name: a}]\n")
    (tmp_path / "broken.yaml").write_text(
        "routes:\n  - name: b\n    capabilities:\n      - type: header_match\n        config:\n"
        "          deny: [{name: x-a, presnt: true}]\n"
    )
    result = extproc("policy", "validate", str(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{tmp_path / 'broken.yaml'}:6: routes[0].capabilities[0].config.deny[0].presnt: unknown field" in lines
    assert lines[-1].endswith("error(s)")


def test_serve_refuses_to_start_on_an_invalid_policy(tmp_path):
    (tmp_path / "broken.yaml").write_text("routes: [{name: UPPER}]\n")
    result = extproc("serve", "--port", "0", "--policies", str(tmp_path))
    assert result.returncode == 2
    assert "broken.yaml:1: routes[0].name" in result.stderr


def test_schema_lists_capabilities():
    result = extproc("policy", "schema")
    assert result.returncode == 0
    assert '"header_match"' in result.stdout and '"headers"' in result.stdout
