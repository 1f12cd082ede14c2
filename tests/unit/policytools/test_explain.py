"""`extproc policy explain` on a directory: the demo requests' verdicts,
the capability that decided, the rule, what each capability changed."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from extproc.policytools.commands import add_commands
from extproc.policytools.explain import main
from tests.unit.policytools.conftest import POLICIES


def explain(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explain", "--policies", str(POLICIES), "--json", *argv])
    out, err = io.StringIO(), io.StringIO()
    assert main(args, out, err) == 0, err.getvalue()
    return json.loads(out.getvalue())


READER = '{"sub": "alice", "roles": ["reader"]}'


def test_no_token_is_a_401_decided_by_jwt():
    facts = explain("--path", "/api/hello")
    assert facts["answer"] == {"status": 401, "allowed": False, "code": "unauthenticated", "decided_by": "jwt"}
    assert [(s["capability"], s["verdict"]) for s in facts["capabilities"]] == [
        ("jwt", "deny"),
        ("rbac", "not run"),
        ("header_match", "not run"),
        ("quota", "not run"),
        ("headers", "not run"),
    ]
    assert facts["route"].startswith("api: the first route whose match claims it")


def test_an_allowed_read_names_the_rule_and_what_each_capability_changed():
    facts = explain("--path", "/api/hello", "--claims", READER)
    assert facts["answer"]["status"] == 200 and facts["answer"]["allowed"]
    assert facts["rule"] == "readers-read"
    steps = {s["capability"]: s for s in facts["capabilities"]}
    assert "sets request header x-auth-subject: alice" in steps["jwt"]["changed"]
    assert "identity: subject=alice roles=reader via jwt" in steps["jwt"]["changed"]
    assert steps["headers"]["changed"] == [
        "sets request header x-gateway: governance",
        "sets response header x-governed-by: extproc",
    ]
    assert "changed" not in steps["rbac"]
    assert facts["facts"]["extproc.rbac.rule"] == "readers-read"
    assert facts["answer"]["upstream_headers_set"]["x-auth-roles"] == "reader"


def test_a_reader_on_the_admin_api_is_refused_by_rbac():
    facts = explain("--path", "/api/admin/users", "--claims", READER)
    assert facts["answer"]["status"] == 403 and facts["answer"]["decided_by"] == "rbac"
    rbac = next(s for s in facts["capabilities"] if s["capability"] == "rbac")
    assert rbac["verdict"] == "deny" and rbac["code"] == "forbidden" and rbac["reason"] == "no allow rule matched"


def test_the_61st_request_is_a_429_from_the_quota():
    facts = explain("--path", "/api/hello", "--claims", READER, "--repeat", "61")
    assert facts["answer"]["status"] == 429 and facts["answer"]["code"] == "rate_limited"
    assert facts["rule"] == "per-subject" and facts["facts"]["extproc.quota.remaining"] == 0


def test_a_redacted_prompt_shows_the_rewritten_body():
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "mail alice@example.com"}]})
    facts = explain(
        "--method", "POST", "--path", "/v1/chat/completions", "--header", "content-type: application/json",
        "--claims", READER, "--body", body,
    )  # fmt: skip
    assert facts["filter"] == "ext_proc" and facts["answer"]["allowed"]
    assert facts["facts"]["extproc.pii.email"] == 1 and facts["facts"]["extproc.guard.action"] == "redact"
    rewritten = facts["request_body_rewritten"]
    assert '+   "content": "mail [EMAIL_1]"' in rewritten
    assert all("alice@example.com" not in line for line in rewritten)  # the explanation never prints the value


def test_a_refused_mcp_tool_from_a_case_file():
    facts = explain("--case", str(POLICIES / "tests" / "mcp.yaml") + ":a reader may not call a dangerous tool")
    assert facts["answer"] == {"status": 200, "allowed": False, "code": "forbidden", "decided_by": "mcp_tools"}
    assert facts["facts"]["gen_ai.tool.name"] == "delete_record"
    assert facts["facts"]["extproc.tool.decision"] == "deny"


def test_text_output_reads_as_an_explanation(capsys):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explain", "--policies", str(POLICIES), "--path", "/nowhere"])
    out = io.StringIO()
    assert main(args, out, io.StringIO()) == 0
    text = out.getvalue()
    assert "route:     none: no route's match claims the request" in text
    assert "answer:    403 refused (forbidden), decided by router" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [(("--header", "nocolon"), "expected NAME:VALUE"), (("--case", "/nonexistent.yaml"), "no such file")],
)
def test_bad_input_is_exit_2(argv, message):
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explain", "--policies", str(POLICIES), *argv])
    err = io.StringIO()
    assert main(args, io.StringIO(), err) == 2
    assert message in err.getvalue()
