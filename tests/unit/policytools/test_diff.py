"""`extproc policy diff`: what a change does to access."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from extproc.policytools.commands import add_commands
from extproc.policytools.diff import main
from tests.unit.policytools.conftest import POLICIES, edit

# Each diff evaluates the whole access matrix on both revisions: seconds a test.
pytestmark = pytest.mark.slow


def diff(old: Path | str, new: Path | str, *extra: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["diff", str(old), str(new), *extra])
    out, err = io.StringIO(), io.StringIO()
    code = main(args, out, err)
    assert code != 2, err.getvalue()
    return code, out.getvalue()


READERS_READ = """\
            - name: readers-read
              who: { roles: [reader] }
              methods: [GET, HEAD]
              paths: ["/api/**"]
              except_paths: ["/api/admin/**"]
"""


def test_removing_a_roles_access_names_exactly_the_flipped_requests(policy_copy):
    edit(policy_copy / "demo.yaml", READERS_READ, "")
    code, out = diff(POLICIES, policy_copy, "--format", "json", "--exit-code")
    assert code == 1
    report = json.loads(out)
    flips = {(f["request"], f["identity"], f["source"].split(" ")[0]) for f in report["flips"]}

    # Independently: the requests that must flip are exactly the reader's
    # GET/HEAD on a non-admin API path that the old policy allowed.
    def reader_read(row: dict) -> bool:
        method, path = row["request"].split(" ", 1)
        return (
            "reader" in row["identity"].split("roles=")[-1].split(" ")[0].split(",")
            and "admin" not in row["identity"]
            and method in ("GET", "HEAD")
            and path.startswith("/api/")
            and not path.startswith("/api/admin/")
            and row["before"]["allowed"]
        )

    expected = {(r["request"], r["identity"], r["source"].split(" ")[0]) for r in report["evaluated"] if reader_read(r)}
    assert flips == expected
    assert ("GET /api/hello", "sub=alice roles=reader", "case") in flips
    assert ("GET /api/x", "sub=reader-user roles=reader", "matrix") in flips
    assert all(not f["after"]["allowed"] and f["after"]["status"] == 403 for f in report["flips"])
    assert report["routes"]["changed"] == {"api": ["rbac"]}
    assert report["limits"] == []


def test_markdown_names_routes_limits_and_flips(policy_copy):
    edit(policy_copy / "demo.yaml", "rate: { requests: 60, per: 1m }", "rate: { requests: 30, per: 1m }")
    edit(policy_copy / "demo.yaml", 'models: [demo, "demo-*"]', 'models: ["*"]')
    code, out = diff(POLICIES, policy_copy)
    assert code == 0  # without --exit-code
    assert "#### Limits and budgets" in out
    assert '| `api/quota/per-subject` | {"key": ["consumer"], "rate": {"requests": 60, "per": "1m"}} |' in out
    assert "- changed: `api` (quota)" in out and "- changed: `llm` (model_access)" in out
    # Readers gain other models: the suite's case shows it.
    flip = "| refused 403 model_not_allowed, model_access | allowed (200) |"
    assert f"🔓 `POST /v1/chat/completions` | sub=alice roles=reader {flip}" in out
    assert "1 gain access" in out


def test_no_change_is_exit_0_with_exit_code(policy_copy):
    code, out = diff(POLICIES, policy_copy, "--exit-code")
    assert code == 0 and "0 request(s) lose access, 0 gain access" in out


@pytest.mark.integration  # git and the extproc CLI run as processes
def test_git_revisions(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(POLICIES, repo / "policies")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    edit(repo / "policies" / "demo.yaml", READERS_READ, "")
    subprocess.run([*git, "commit", "-qam", "readers lose the API"], check=True)
    result = subprocess.run(
        [str(Path(shutil.which("extproc") or ".venv/bin/extproc").resolve()), "policy", "diff",
         "git:HEAD~1", "git:HEAD:policies", "--format", "json", "--tests", str(POLICIES / "tests" / "api.yaml")],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["old"]["revision"] != report["new"]["revision"]
    case_flips = [f["request"] for f in report["flips"] if f["source"].startswith("case")]
    assert case_flips == ["GET /api/hello"]
