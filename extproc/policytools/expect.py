"""Compare what a request came to with what its case expects.

Only what the case states is compared (a subset match), and a mismatch is
shown as a unified diff of the expected facts against the actual ones,
projected onto the same keys, so a reviewer sees exactly what changed.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from extproc.audit.record import AuditRecord
from extproc.policytools.cases import Expect, MessageExpect
from extproc.policytools.harness import Message, Outcome

_UNKNOWN = AuditRecord("-", "-", "-", None, "allow", None, None, None, None, [], {}, {}, 0)


def _subset(expected: Any, actual: Any) -> Any:
    """``actual`` cut down to the shape of ``expected`` (dict keys it names)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _subset(v, actual[k]) if k in actual else "<absent>" for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [_subset(e, a) for e, a in zip(expected, actual, strict=True)]
    return actual


def _message_actual(spec: MessageExpect, message: Message | None) -> dict[str, Any]:
    if message is None:
        return {"<not reached>": True}
    out: dict[str, Any] = {}
    if spec.headers:
        out["headers"] = {name.lower(): message.headers.get(name.lower(), "<absent>") for name in spec.headers}
    if spec.headers_absent:
        out["headers_absent"] = [n for n in spec.headers_absent if n.lower() not in message.headers] + [
            f"<present: {n}>" for n in spec.headers_absent if n.lower() in message.headers
        ]
    text = message.text()
    if spec.body_contains:
        out["body_contains"] = [s if s in text else f"<missing: {s}>" for s in spec.body_contains]
    if spec.body_excludes:
        out["body_excludes"] = [s if s not in text else f"<present: {s}>" for s in spec.body_excludes]
    if spec.json_body is not None:
        out["json"] = _subset(spec.json_body, message.json())
    if spec.path is not None:
        out["path"] = message.path
    return out


def _message_expected(spec: MessageExpect) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.headers:
        out["headers"] = {name.lower(): value for name, value in spec.headers.items()}
    if spec.headers_absent:
        out["headers_absent"] = list(spec.headers_absent)
    if spec.body_contains:
        out["body_contains"] = list(spec.body_contains)
    if spec.body_excludes:
        out["body_excludes"] = list(spec.body_excludes)
    if spec.json_body is not None:
        out["json"] = spec.json_body
    if spec.path is not None:
        out["path"] = spec.path
    return out


def expected_and_actual(expect: Expect, outcome: Outcome) -> tuple[dict[str, Any], dict[str, Any]]:
    """The facts the case states, and the same facts as they came out."""
    record = outcome.record or _UNKNOWN
    exp: dict[str, Any] = {}
    act: dict[str, Any] = {}
    simple = {
        "status": outcome.status,
        "allowed": outcome.allowed,
        "code": outcome.code,
        "route": record.route,
        "decided_by": outcome.decided_by,
    }
    for key, actual in simple.items():
        wanted = getattr(expect, key)
        if wanted is not None:
            exp[key], act[key] = wanted, actual
    if expect.rule is not None:
        exp["rule"] = expect.rule
        act["rule"] = expect.rule if expect.rule in outcome.rules else (outcome.rule or "<none>")
    if expect.upstream is not None:
        exp["upstream"] = _message_expected(expect.upstream)
        act["upstream"] = _message_actual(expect.upstream, outcome.upstream)
    if expect.response is not None:
        exp["response"] = _message_expected(expect.response)
        act["response"] = _message_actual(expect.response, outcome.response)
    if expect.audit is not None:
        audit_exp: dict[str, Any] = {}
        audit_act: dict[str, Any] = {}
        if expect.audit.capabilities:
            decisions = {c.capability: c.decision for c in record.capabilities}
            audit_exp["capabilities"] = dict(expect.audit.capabilities)
            audit_act["capabilities"] = {name: decisions.get(name, "skipped") for name in expect.audit.capabilities}
        if expect.audit.facts:
            audit_exp["facts"] = dict(expect.audit.facts)
            audit_act["facts"] = {k: record.facts.get(k, "<absent>") for k in expect.audit.facts}
        if expect.audit.identity:
            audit_exp["identity"] = dict(expect.audit.identity)
            audit_act["identity"] = {k: record.identity.get(k, "<absent>") for k in expect.audit.identity}
        exp["audit"], act["audit"] = audit_exp, audit_act
    return exp, act


def _dump(data: dict[str, Any]) -> list[str]:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return str(text).splitlines()


def compare(expect: Expect, outcome: Outcome) -> list[str]:
    """Empty when the outcome meets the expectation; else a unified diff
    (``-`` expected, ``+`` actual)."""
    exp, act = expected_and_actual(expect, outcome)
    if exp == act:
        return []
    return list(difflib.unified_diff(_dump(exp), _dump(act), "expected", "actual", lineterm="", n=2))
