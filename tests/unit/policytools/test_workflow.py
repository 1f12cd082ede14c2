"""deploy/github/policy.yml and docs/gitops.md name real commands: every
`extproc ...` they run parses with the CLI's own parser."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from extproc.cli import build_parser
from tests.unit.policytools.conftest import REPO

WORKFLOW = REPO / "deploy" / "github" / "policy.yml"
VARIABLES = {"POLICY_DIR": "policies", "BASE": "0123abc", "RUNNER_TEMP": "/tmp", "EXTPROC_VERSION": "0.1.0"}


def _commands(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        line = raw.strip().split(" > ")[0].split(" && ")[0]
        if line.startswith("extproc "):
            out.append(line)
    return out


def _argv(command: str) -> list[str]:
    expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES.get(m.group(1), m.group(0)), command)
    return shlex.split(expanded)[1:]


def workflow_commands() -> list[str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]
    return [c for run in runs for c in _commands(run)]


def test_the_workflow_runs_the_whole_loop():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow["jobs"]) == {"check", "publish"}
    verbs = {" ".join(_argv(c)[:2]) for c in workflow_commands()}
    assert {"policy validate", "policy test", "policy diff", "policy bundle"} <= verbs
    bundle = [_argv(c)[2] for c in workflow_commands() if _argv(c)[:2] == ["policy", "bundle"]]
    assert bundle == ["build", "sign", "verify"]


@pytest.mark.parametrize("command", workflow_commands())
def test_workflow_commands_parse(command):
    args = build_parser().parse_args(_argv(command))
    assert callable(args.func)


def _doc_commands() -> list[str]:
    text = (REPO / "docs" / "gitops.md").read_text() + (REPO / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split("  #")[0].strip()
            if line.startswith(("extproc policy", "extproc serve --bundle")):
                commands.append(line.split(" > ")[0].split(" && ")[0])
    return commands


@pytest.mark.parametrize("command", _doc_commands())
def test_documented_commands_parse(command):
    args = build_parser().parse_args(_argv(command))
    assert callable(args.func)
