"""`extproc policy test`: the shipped suite passes; an altered case or
policy fails precisely, with a readable diff; JUnit; case file errors."""

from __future__ import annotations

import io
from pathlib import Path
from xml.etree import ElementTree as ET

from extproc.policytools.runner import main
from tests.unit.policytools.conftest import POLICIES, edit


def run(directory: Path, *, junit: Path | None = None, tests: Path | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(str(directory), str(tests) if tests else None, str(junit) if junit else None, out, err, verbose=True)
    return code, out.getvalue(), err.getvalue()


def test_the_shipped_suite_passes_and_covers_every_route_capability_and_rule(tmp_path):
    code, out, _ = run(POLICIES, junit=tmp_path / "junit.xml")
    assert code == 0, out
    assert "0 failed" in out and "FAIL" not in out
    summary = next(line for line in out.splitlines() if line.startswith("coverage:"))
    routes, caps, rules = (part.split()[-1] for part in summary.split(", "))
    assert routes == "6/6" and caps.split("/")[0] == caps.split("/")[1] and rules.split("/")[0] == rules.split("/")[1]
    assert "not exercised" not in out
    root = ET.parse(tmp_path / "junit.xml").getroot()
    cases = root.findall("testcase")
    assert root.get("failures") == "0" and len(cases) == int(root.get("tests")) >= 30
    assert {c.get("classname") for c in cases} == {"api", "internal", "proc", "llm", "mcp", "a2a"}


def test_an_altered_expectation_fails_with_a_diff_naming_file_and_line(policy_copy, tmp_path):
    cases = policy_copy / "tests" / "api.yaml"
    edit(cases, "expect: { status: 403, code: forbidden, decided_by: rbac }", "expect: { status: 200, allowed: true }")
    line = next(i for i, text in enumerate(cases.read_text().splitlines(), 1) if "name: readers may not manage" in text)
    code, out, _ = run(policy_copy, junit=tmp_path / "junit.xml")
    assert code == 1
    assert f"FAIL {cases}:{line} readers may not manage" in out
    block = out.split(f"FAIL {cases}:{line}")[1].split("\nFAIL ")[0]
    assert "  -status: 200\n  -allowed: true\n  +status: 403\n  +allowed: false\n" in block
    assert out.count("FAIL ") == 1  # only that case
    failure = ET.parse(tmp_path / "junit.xml").getroot().find("testcase[@name='readers may not manage']/failure")
    assert failure is not None and "+status: 403" in failure.text


def test_an_altered_policy_fails_exactly_the_cases_it_breaks(policy_copy):
    # Readers lose GET on the API: the cases that relied on it fail, others pass.
    edit(policy_copy / "demo.yaml", "methods: [GET, HEAD]", "methods: [HEAD]")
    code, out, _ = run(policy_copy)
    assert code == 1
    failed = sorted(line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("FAIL "))
    assert failed == [
        "debug switches are refused",  # rbac now refuses before header_match would
        "readers read, with trusted identity headers for the upstream",
        "the 61st request in a minute is a 429",
    ]
    assert "  -status: 200\n" in out and "  +status: 403\n" in out
    assert "  -decided_by: header_match\n  +decided_by: rbac\n" in out
    assert "  -    rbac: allow\n" in out and "  +    rbac: deny\n" in out
    assert "not exercised: rule api/rbac/readers-read" in out


def test_coverage_names_what_no_case_exercised(policy_copy):
    for name in ("internal.yaml", "a2a.yaml"):
        (policy_copy / "tests" / name).unlink()
    code, out, _ = run(policy_copy)
    assert code == 0
    assert "not exercised: route internal" in out and "not exercised: route a2a" in out
    assert "not exercised: rule a2a/a2a_access/planners-summarize-and-translate" in out
    assert "not exercised: rule internal/rbac/demo-workloads" in out
    out_buffer, err = io.StringIO(), io.StringIO()
    assert main(str(policy_copy), None, None, out_buffer, err, require_coverage=True) == 1


def test_case_file_errors_name_file_line_and_field(policy_copy):
    bad = policy_copy / "tests" / "zz-bad.yaml"
    bad.write_text(
        "cases:\n"
        "  - name: typo\n"
        "    request: { method: GET, path: /api/x }\n"
        "    expect:\n"
        "      statuz: 200\n"
        "  - name: no request\n"
        "    expect: { status: 200 }\n"
    )
    code, out, err = run(policy_copy)
    assert code == 2 and out == ""
    assert f"{bad}:5: cases[0].expect.statuz: unknown field" in err
    assert f"{bad}:6: cases[1].request: Field required" in err
    assert "2 error(s)" in err


def test_duplicate_case_names_and_bad_yaml_are_errors(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "cases:\n  - name: x\n    request: {}\n    expect: {}\n  - name: x\n    request: {}\n    expect: {}\n"
    )
    (tmp_path / "b.yaml").write_text("cases: [\n")
    code, _, err = run(POLICIES, tests=tmp_path)
    assert code == 2
    assert f"{tmp_path / 'a.yaml'}:5: cases[1].name: duplicate case name (line 2)" in err
    assert f"{tmp_path / 'b.yaml'}:2" in err and "invalid YAML" in err


def test_an_invalid_policy_is_reported_like_validate(policy_copy):
    edit(policy_copy / "demo.yaml", "match: { path_prefix: /api/ }", "match: { path_prefix: api/ }")
    code, _, err = run(policy_copy)
    assert code == 2 and "demo.yaml:" in err and "path_prefix: must start with /" in err


def test_each_case_runs_on_fresh_counters(policy_copy, tmp_path):
    # Two cases of 40 requests each by one subject: 80 > 60/min, but each
    # case starts from an empty in-memory quota backend.
    cases = tmp_path / "quota.yaml"
    case = (
        "  - name: {name}\n    repeat: 40\n    request:\n      path: /api/x\n"
        "      identity: {{ claims: {{ sub: carol, roles: [reader] }} }}\n    expect: {{ status: 200 }}\n"
    )
    cases.write_text("cases:\n" + case.format(name="first") + case.format(name="second"))
    code, out, _ = run(policy_copy, tests=cases)
    assert code == 0, out
    assert "2 passed" in out


def test_api_keys_and_custom_headers(tmp_path):
    from extproc.capabilities.api_key import new_key

    key, digest = new_key()
    policy = tmp_path / "policy"
    (policy / "tests").mkdir(parents=True)
    (policy / "p.yaml").write_text(
        "routes:\n"
        "  - name: billing\n"
        "    match: { path_prefix: /billing/ }\n"
        "    capabilities:\n"
        "      - type: api_key\n"
        "        config:\n"
        "          header: x-billing-key\n"
        f"          keys: [{{ id: ops, hash: '{digest}', subject: ops-bot, roles: [ops] }}]\n"
        "      - type: rbac\n"
        "        config: { rules: [{ name: ops-only, who: { roles: [ops] }, paths: ['/billing/**'] }] }\n"
    )
    (policy / "tests" / "billing.yaml").write_text(
        "cases:\n"
        "  - name: the key authenticates\n"
        f"    request: {{ path: /billing/x, identity: {{ api_key: '{key}' }} }}\n"
        "    expect:\n"
        "      status: 200\n"
        "      rule: ops-only\n"
        "      upstream: { headers: { x-auth-subject: ops-bot }, headers_absent: [x-billing-key] }\n"
        "      audit: { identity: { api_key_id: ops, methods: [api_key] } }\n"
        "  - name: a wrong key is a 401\n"
        "    request: { path: /billing/x, identity: { api_key: not-the-key } }\n"
        "    expect: { status: 401, decided_by: api_key }\n"
    )
    code, out, _ = run(policy)
    assert code == 0, out
    assert "2 passed" in out and "coverage: routes 1/1, capabilities 2/2, rules 1/1" in out
