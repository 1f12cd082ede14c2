"""``rbac`` → two Envoy RBAC filters per route: one DENY filter holding the
deny rules (any match refuses: deny overrides) and one ALLOW filter holding
the allow rules (no match refuses: default deny). ``monitor`` mode puts the
same policies in ``shadow_rules``: evaluated and recorded, never enforced.

Who-conditions read the identity the gate published: the x-auth-* headers
(stripped from the client's request first, so only the gate can have set
them) and, for ``claims.*`` conditions, the verified JWT payload jwt_authn
stored in dynamic metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from extproc.capabilities.base import Capability
from extproc.capabilities.rbac import RbacConfig, Rule, compile_path_pattern
from extproc.context import Mode
from extproc.identity.publish import encode_single
from extproc.identity.who import Condition
from extproc.xds import jwt
from extproc.xds.patterns import glob_to_re2, re2_literal
from extproc.xds.plan import NotNative

_LIST_ITEM_SAFE = "-._~:/@!$&'*+="
IDENTITY_HEADERS = {
    "subject": "x-auth-subject",
    "issuer": "x-auth-issuer",
    "tenant": "x-auth-tenant",
    "principal": "x-auth-principal",
    "agent_id": "x-auth-agent",
}
ANY: dict[str, Any] = {"any": True}


@dataclass(slots=True)
class RbacNative:
    deny: dict[str, Any] | None  # RBACPerRoute, or None: no deny rule
    allow: dict[str, Any]


def _regex(pattern: str) -> dict[str, Any]:
    return {"safe_regex": {"regex": pattern}}


def _header_regex(name: str, pattern: str) -> dict[str, Any]:
    return {"header": {"name": name, "string_match": _regex(pattern)}}


def _any_of(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return items[0] if len(items) == 1 else {key: {"rules" if key.endswith("rules") else "ids": items}}


def _list_item(name: str, items: list[str]) -> dict[str, Any]:
    """Any of ``items`` in an x-auth-* list header (encoded, comma-joined)."""
    alternatives = "|".join(re2_literal(quote(item, safe=_LIST_ITEM_SAFE)) for item in items)
    return _header_regex(name, f"(?:.*,)?(?:{alternatives})(?:,.*)?")


def _claim_path(field: str) -> list[dict[str, str]]:
    return [{"key": jwt.PAYLOAD_KEY}, *({"key": part} for part in field[len("claims.") :].split("."))]


def _claim(field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"filter": jwt.FILTER, "path": _claim_path(field), "value": value}}


def _scalar_value(expected: str | int | bool) -> dict[str, Any]:
    if isinstance(expected, bool):
        return {"bool_match": expected}
    if isinstance(expected, int):
        return {"double_match": {"exact": float(expected)}}
    return {"string_match": {"exact": expected}}


NEVER: dict[str, Any] = {"not_id": ANY}


def _condition(condition: Condition) -> dict[str, Any]:
    field = condition.field
    if condition.equals_param is not None:
        raise NotNative("conditions on path parameters (equals_param) run in the processor")
    if not field.startswith("claims."):
        if field not in IDENTITY_HEADERS:
            raise NotNative(f"condition on {field} (no native identity header)")
        header = IDENTITY_HEADERS[field]
        if condition.present is not None:
            present = {"header": {"name": header, "present_match": True}}
            return present if condition.present else {"not_id": present}
        if condition.equals is not None:
            if not isinstance(condition.equals, str) or isinstance(condition.equals, bool):
                return NEVER  # identity fields are strings: never equal to a number or bool
            return _header_regex(header, re2_literal(encode_single(condition.equals) or ""))
        if condition.one_of is not None:
            options = [o for o in condition.one_of if isinstance(o, str)]
            if not options:
                return NEVER
            return _header_regex(header, "|".join(re2_literal(encode_single(o) or "") for o in options))
        item = re2_literal(encode_single(condition.contains or "") or "")
        return _header_regex(header, f"(?s)(?:.*\\s)?{item}(?:\\s.*)?")
    if condition.present is not None:
        present = _claim(field, {"present_match": True})
        return present if condition.present else {"not_id": present}
    if condition.equals is not None:
        return _claim(field, _scalar_value(condition.equals))
    if condition.one_of is not None:
        return _any_of([_claim(field, _scalar_value(o)) for o in condition.one_of], "or_ids")
    item = condition.contains or ""
    in_list = _claim(field, {"list_match": {"one_of": {"string_match": {"exact": item}}}})
    in_words = _claim(field, {"string_match": _regex(f"(?s)(?:.*\\s)?{re2_literal(item)}(?:\\s.*)?")})
    return {"or_ids": {"ids": [in_list, in_words]}}


def _principal(rule: Rule) -> dict[str, Any]:
    who = rule.who
    ids: list[dict[str, Any]] = []
    if who.roles:
        ids.append(_list_item("x-auth-roles", who.roles))
    if who.subjects:
        ids.append(_header_regex("x-auth-subject", "|".join(f"(?:{glob_to_re2(s)})" for s in who.subjects)))
    if who.agents:
        ids.append(_header_regex("x-auth-agent", "|".join(f"(?:{glob_to_re2(a)})" for a in who.agents)))
    if who.scopes:
        raise NotNative("scopes are not published to Envoy (no x-auth header carries them)")
    if who.principals:
        ids.append(_header_regex("x-auth-principal", "|".join(f"(?:{glob_to_re2(p)})" for p in who.principals)))
    for method in who.authenticated_by:
        if method == "api_key":
            raise NotNative("authenticated_by api_key: API keys are verified by the processor")
        ids.append(_list_item("x-auth-methods", [method]))
    ids.extend(_condition(c) for c in who.conditions)
    if not ids:
        return ANY
    return ids[0] if len(ids) == 1 else {"and_ids": {"ids": ids}}


def _path_regex(pattern: str) -> str:
    return compile_path_pattern(pattern).pattern


def _url_path(patterns: list[str]) -> dict[str, Any]:
    return {"url_path": {"path": {"safe_regex": {"regex": "|".join(f"(?:{_path_regex(p)})" for p in patterns)}}}}


def _permission(rule: Rule) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    if rule.methods:
        rules.append(_header_regex(":method", "|".join(rule.methods)))
    if rule.hosts:
        hosts = "|".join(f"(?:{glob_to_re2(h.lower())})" for h in rule.hosts)
        rules.append(_header_regex(":authority", f"(?i)(?:{hosts})(?::[0-9]+)?"))
    if rule.paths:
        rules.append(_url_path(rule.paths))
    if rule.except_paths:
        rules.append({"not_rule": _url_path(rule.except_paths)})
    if not rules:
        return ANY
    return rules[0] if len(rules) == 1 else {"and_rules": {"rules": rules}}


def _policies(rules: list[Rule]) -> dict[str, Any]:
    return {r.name: {"permissions": [_permission(r)], "principals": [_principal(r)]} for r in rules}


def _per_route(action: str, rules: list[Rule], mode: Mode) -> dict[str, Any]:
    body = {"action": action, "policies": _policies(rules)}
    key = "shadow_rules" if mode is Mode.MONITOR else "rules"
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
        "rbac": {key: body, f"{key}_stat_prefix" if key == "shadow_rules" else "rules_stat_prefix": "extproc_"},
    }


def compile_rbac(capability: Capability[Any]) -> RbacNative:
    config = capability.config
    assert isinstance(config, RbacConfig)
    deny = [r for r in config.rules if r.effect == "deny"]
    allow = [r for r in config.rules if r.effect == "allow"]
    return RbacNative(
        deny=_per_route("DENY", deny, capability.mode) if deny else None,
        allow=_per_route("ALLOW", allow, capability.mode),
    )
