"""Tool / resource / prompt rules and argument constraints: the one decision
function behind both tools/call and tools/list filtering."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from extproc.mcp.policy import NOT_GIVEN, AccessPolicy, AccessRule
from tests.unit.mcp.harness import user


def policy(*rules: dict) -> AccessPolicy:
    return AccessPolicy([AccessRule.model_validate(r) for r in rules])


READER = user("alice", roles=["reader"])
ADMIN = user("root", roles=["admin"])
AGENT = user(
    "svc",
    agent_id="planner-7",
    principal="spiffe://example.org/ns/agents/sa/planner",
    scopes=["docs:read"],
    methods=("jwt", "mtls"),
    claims={"tenant": "acme"},
)


# -- rules --------------------------------------------------------------------------


def test_default_deny_and_name_globs():
    p = policy({"name": "r", "who": {"roles": ["reader"]}, "tools": ["search_*", "read_file"]})
    assert p.decide(READER, "tool", "search_docs")
    assert p.decide(READER, "tool", "read_file")
    refused = p.decide(READER, "tool", "delete_record")
    assert not refused and refused.reason == "no allow rule for tool delete_record"
    assert not p.decide(ADMIN, "tool", "search_docs")  # the rule is about readers
    assert not p.decide(READER, "resource", "search_docs")  # kinds are separate


def test_deny_overrides_allow():
    p = policy(
        {"name": "all", "tools": ["*"]},
        {"name": "no-deletes", "effect": "deny", "who": {"roles": ["reader"]}, "tools": ["delete_*"]},
    )
    assert p.decide(ADMIN, "tool", "delete_record")
    decision = p.decide(READER, "tool", "delete_record")
    assert not decision and decision.rule == "no-deletes"
    assert not p.decide(READER, "tool", "delete_record", {"table": "t"})


def test_an_empty_target_list_grants_nothing():
    p = policy({"name": "resources-only", "resources": ["docs://*"]})
    assert p.decide(READER, "resource", "docs://intro")
    assert not p.decide(READER, "tool", "anything")
    assert not p.decide(READER, "prompt", "anything")
    with pytest.raises(ValidationError, match="must name tools, resources or prompts"):
        AccessRule.model_validate({"name": "nothing"})


@pytest.mark.parametrize(
    "who, expected",
    [
        ({"agents": ["planner-*"]}, True),
        ({"agents": ["executor-*"]}, False),
        ({"principals": ["spiffe://example.org/ns/agents/*"]}, True),
        ({"subjects": ["svc"]}, True),
        ({"subjects": ["alice"]}, False),
        ({"scopes": ["docs:read"]}, True),
        ({"scopes": ["docs:read", "docs:write"]}, False),  # all of them
        ({"authenticated_by": ["mtls", "jwt"]}, True),
        ({"authenticated_by": ["api_key"]}, False),
        ({"roles": ["admin"]}, False),
        ({"conditions": [{"field": "claims.tenant", "equals": "acme"}]}, True),
        ({"conditions": [{"field": "claims.tenant", "equals": "other"}]}, False),
        ({"agents": ["planner-*"], "roles": ["admin"]}, False),  # across fields: all
    ],
)
def test_who_fields(who, expected):
    assert bool(policy({"name": "r", "who": who, "tools": ["t"]}).decide(AGENT, "tool", "t")) is expected


def test_an_agent_field_never_matches_a_caller_without_that_identity():
    p = policy({"name": "r", "who": {"agents": ["*"]}, "tools": ["t"]})
    assert not p.decide(READER, "tool", "t")  # alice has no agent_id


# -- argument constraints ---------------------------------------------------------

READ_RULE = {
    "name": "readers",
    "who": {"roles": ["reader"]},
    "tools": ["read_file", "search_docs"],
    "constraints": [
        {
            "tool": "read_file",
            "arguments": {"path": {"required": True, "pattern": "docs/[a-z0-9_./-]+", "not_pattern": r"\.\."}},
        },
        {"tool": "search_docs", "arguments": {"limit": {"required": False, "minimum": 1, "maximum": 20}}},
    ],
}


@pytest.mark.parametrize(
    "tool, arguments, allowed, argument",
    [
        ("read_file", {"path": "docs/intro.md"}, True, None),
        ("read_file", {"path": "secrets/keys.txt"}, False, "path"),
        ("read_file", {"path": "docs/../secrets/keys.txt"}, False, "path"),  # not_pattern
        ("read_file", {"path": "xdocs/intro.md"}, False, "path"),  # pattern is a full match
        ("read_file", {"path": 7}, False, "path"),  # not a string
        ("read_file", {"path": None}, False, "path"),  # null is present, and fails
        ("read_file", {}, False, "path"),  # required and missing
        ("read_file", {"path": "docs/a.md", "extra": 1}, True, None),  # unconstrained arguments pass
        ("search_docs", {"query": "x"}, True, None),  # optional and missing
        ("search_docs", {"query": "x", "limit": 5}, True, None),
        ("search_docs", {"query": "x", "limit": 50}, False, "limit"),
        ("search_docs", {"query": "x", "limit": 0}, False, "limit"),
        ("search_docs", {"query": "x", "limit": True}, False, "limit"),  # a bool is not a number
        ("search_docs", {"query": "x", "limit": "5"}, False, "limit"),
    ],
)
def test_argument_constraints(tool, arguments, allowed, argument):
    decision = policy(READ_RULE).decide(READER, "tool", tool, arguments)
    assert bool(decision) is allowed
    assert decision.argument == argument
    if not allowed:
        assert "docs/" not in decision.reason and "secrets" not in decision.reason  # reasons never echo values


def test_listing_asks_without_arguments_so_a_constrained_tool_is_visible():
    assert policy(READ_RULE).decide(READER, "tool", "read_file", NOT_GIVEN)


def test_missing_argument_reason_names_it():
    decision = policy(READ_RULE).decide(READER, "tool", "read_file", {})
    assert decision.reason == "rule readers: required argument path missing"


def test_one_of_is_type_strict():
    p = policy(
        {
            "name": "r",
            "tools": ["t"],
            "constraints": [{"tool": "t", "arguments": {"mode": {"required": True, "one_of": ["fast", 1, False]}}}],
        }
    )
    assert p.decide(READER, "tool", "t", {"mode": "fast"})
    assert p.decide(READER, "tool", "t", {"mode": 1})
    assert p.decide(READER, "tool", "t", {"mode": False})
    assert not p.decide(READER, "tool", "t", {"mode": True})  # True == 1 in Python, not here
    assert not p.decide(READER, "tool", "t", {"mode": 0})  # 0 == False in Python, not here
    assert not p.decide(READER, "tool", "t", {"mode": "slow"})


def test_max_length_and_per_argument_schema():
    p = policy(
        {
            "name": "r",
            "tools": ["t"],
            "constraints": [
                {
                    "tool": "t",
                    "arguments": {
                        "tags": {
                            "required": True,
                            "max_length": 2,
                            "schema": {"type": "array", "items": {"type": "string"}},
                        },
                        "name": {"required": False, "max_length": 5},
                    },
                }
            ],
        }
    )
    assert p.decide(READER, "tool", "t", {"tags": ["a", "b"], "name": "abc"})
    assert not p.decide(READER, "tool", "t", {"tags": ["a", "b", "c"]})
    assert not p.decide(READER, "tool", "t", {"tags": [1]})
    assert not p.decide(READER, "tool", "t", {"tags": [], "name": "abcdef"})


def test_whole_arguments_json_schema():
    schema = {
        "type": "object",
        "properties": {"table": {"enum": ["orders"]}, "record_id": {"type": "integer"}},
        "required": ["table", "record_id"],
        "additionalProperties": False,
    }
    p = policy({"name": "r", "tools": ["delete_record"], "constraints": [{"tool": "delete_record", "schema": schema}]})
    assert p.decide(ADMIN, "tool", "delete_record", {"table": "orders", "record_id": 3})
    refused = p.decide(ADMIN, "tool", "delete_record", {"table": "customers", "record_id": 3})
    assert not refused and "schema at table" in refused.reason
    assert not p.decide(ADMIN, "tool", "delete_record", {"table": "orders", "record_id": 3, "cascade": True})
    assert not p.decide(ADMIN, "tool", "delete_record", {"table": "orders"})


def test_any_matching_allow_rule_whose_constraints_hold_allows():
    p = policy(
        READ_RULE,
        {
            "name": "auditors",
            "who": {"roles": ["reader"]},
            "tools": ["read_file"],
            "constraints": [
                {"tool": "read_file", "arguments": {"path": {"required": True, "pattern": "secrets/audit-.*"}}}
            ],
        },
    )
    assert p.decide(READER, "tool", "read_file", {"path": "docs/a.md"}).rule == "readers"
    assert p.decide(READER, "tool", "read_file", {"path": "secrets/audit-1"}).rule == "auditors"
    refused = p.decide(READER, "tool", "read_file", {"path": "secrets/keys"})
    assert not refused and refused.rule == "readers"  # the first failing rule explains


def test_prompt_arguments_are_constrained_too():
    p = policy(
        {
            "name": "r",
            "prompts": ["summarize_doc"],
            "constraints": [
                {"prompt": "summarize_doc", "arguments": {"path": {"required": True, "pattern": "docs/.*"}}}
            ],
        }
    )
    assert p.decide(READER, "prompt", "summarize_doc", {"path": "docs/a"})
    assert not p.decide(READER, "prompt", "summarize_doc", {"path": "etc/passwd"})
    # a tool of the same name is another target, with no rule
    assert not p.decide(READER, "tool", "summarize_doc", {"path": "docs/a"})


# -- load-time validation -------------------------------------------------------------


@pytest.mark.parametrize(
    "rule, message",
    [
        (
            {"name": "r", "tools": ["t"], "constraints": [{"tool": "t", "arguments": {"a": {"pattern": "x"}}}]},
            "required",
        ),  # `required` has no default: every constrained argument says
        (
            {
                "name": "r",
                "tools": ["t"],
                "constraints": [{"tool": "t", "arguments": {"a": {"required": True, "pattern": "("}}}],
            },
            "invalid regex",
        ),
        (
            {"name": "r", "tools": ["t"], "constraints": [{"tool": "t", "schema": {"type": "nonsense"}}]},
            "invalid JSON Schema",
        ),
        (
            {"name": "r", "tools": ["t"], "constraints": [{"tool": "t", "arguments": {"a": {"required": False}}}]},
            "constrains nothing",
        ),
        (
            {
                "name": "r",
                "tools": ["t"],
                "constraints": [{"tool": "t", "arguments": {"a": {"required": True, "minimum": 5, "maximum": 1}}}],
            },
            "minimum is greater",
        ),
        (
            {
                "name": "r",
                "tools": ["t"],
                "constraints": [{"tool": "t", "prompt": "p", "arguments": {"a": {"required": True}}}],
            },
            "exactly one of tool, prompt",
        ),
        (
            {
                "name": "r",
                "effect": "deny",
                "tools": ["t"],
                "constraints": [{"tool": "t", "arguments": {"a": {"required": True}}}],
            },
            "deny rules take no argument constraints",
        ),
        ({"name": "r", "tools": ["t"], "surprise": 1}, "Extra inputs"),
    ],
)
def test_invalid_rules_fail_at_load(rule, message):
    with pytest.raises(ValidationError, match=message):
        AccessRule.model_validate(rule)
