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
    # Validation has no side effects: the demo's prompt_guard model tier
    # starts no model process outside a serving processor.
    assert result.stderr == ""


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


def test_policy_test_runs_the_shipped_suite_and_writes_junit(tmp_path):
    result = extproc("policy", "test", str(REPO / "policies"), "--junit", str(tmp_path / "junit.xml"), "-v")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS " in result.stdout and " 0 failed" in result.stdout
    assert (tmp_path / "junit.xml").read_text().count("<testcase ") >= 30


def test_policy_test_exits_1_on_a_failing_case(tmp_path):
    (tmp_path / "cases.yaml").write_text(
        "cases:\n  - name: anonymous reads\n    request: { path: /api/hello }\n    expect: { status: 200 }\n"
    )
    result = extproc("policy", "test", str(REPO / "policies"), "--tests", str(tmp_path))
    assert result.returncode == 1
    assert f"FAIL {tmp_path / 'cases.yaml'}:2 anonymous reads" in result.stdout
    assert "-status: 200" in result.stdout and "+status: 401" in result.stdout


def test_policy_explain_from_flags():
    result = extproc(
        "policy", "explain", "--policies", str(REPO / "policies"), "--path", "/api/admin/users",
        "--claims", '{"sub": "alice", "roles": ["reader"]}',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "answer:    403 refused (forbidden), decided by rbac" in result.stdout


def test_policy_schema_json_schema_is_a_json_schema():
    import json

    result = extproc("policy", "schema", "--json-schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema") and "routes" in schema["properties"]


def test_xds_render_shows_which_engine_runs_each_route():
    result = extproc("xds", "render", "--policies", str(REPO / "policies"), "--plan-only")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "route api: native" in lines
    # The LLM route needs bodies: the processor keeps it.
    assert any(line.startswith("route llm: ext_proc") for line in lines)


def test_xds_help_is_the_control_planes_own():
    result = extproc("xds", "--help")
    assert result.returncode == 0
    assert "{serve,render}" in result.stdout
