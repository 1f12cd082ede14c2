"""The ``model_access`` capability through the pipeline, compiled from the
policy a user writes: who may use which model, the first rule matching the
caller decides, refusals in each API's own error shape, monitor mode, the
resolved model budgets key on, and the audit facts it leaves."""

from __future__ import annotations

import pytest

from extproc.audit.record import build
from extproc.capabilities.model_access import ModelAccess
from extproc.context import ANONYMOUS, Identity, Mode
from extproc.policy.loader import PolicyLoadError
from extproc.policy.model import CompiledRoute
from tests.builders import capability, chat, compile_policy, compile_route, context, error_json, identity, send, user

POLICY = """\
    routes:
      - name: llm
        match: {path_prefix: /v1/}
        capabilities:
          - type: model_access
            config:
              rules:
                - {roles: [admin], models: ["*"]}
                - {roles: [analyst], models: ["gpt-4o*", "claude-*-haiku*"]}
                - {subjects: ["svc-*"], models: [embed-small]}
"""

ADMIN = identity("root", roles=["admin"])
ANALYST = identity("ann", roles=["analyst", "reader"])
SERVICE = identity("svc-indexer", methods=["api_key"])
STRANGER = identity("bob", roles=["reader"])


@pytest.fixture(scope="module")
def llm() -> CompiledRoute:
    return compile_route(POLICY)


async def ask(route: CompiledRoute, who: Identity, model: str | None, path: str = "/v1/chat/completions"):
    body = {"messages": [user("hi")]} if model is None else {"model": model, "messages": [user("hi")]}
    ctx = context(route, "POST", path, who=who, body=body)
    return ctx, await send(ctx)


def outcome(ctx) -> list[tuple[str, str, str]]:
    return [(o.capability, o.mode, o.decision) for o in build(ctx).capabilities]


@pytest.mark.parametrize(
    "who, model",
    [
        (ADMIN, "anything-at-all"),
        (ANALYST, "gpt-4o"),
        (ANALYST, "gpt-4o-mini"),
        (ANALYST, "claude-3-5-haiku-latest"),
        (SERVICE, "embed-small"),
    ],
)
async def test_a_caller_uses_the_models_its_rule_names(llm, who, model):
    ctx, deny = await ask(llm, who, model)
    assert deny is None
    assert outcome(ctx) == [("model_access", "enforce", "allow")]
    assert build(ctx).facts["gen_ai.request.model"] == model


@pytest.mark.parametrize(
    "who, model",
    [
        (ANALYST, "gpt-5"),  # not one of the analyst's globs
        (ANALYST, "claude-3-opus"),
        (SERVICE, "embed-large"),  # globs match the whole name
        (SERVICE, "gpt-4o"),
        (STRANGER, "gpt-4o"),  # no rule for this caller: no model at all
        (ANONYMOUS, "gpt-4o"),
    ],
)
async def test_any_other_model_is_refused_in_the_openai_error_shape(llm, who, model):
    ctx, deny = await ask(llm, who, model)
    assert deny is not None and deny.status == 403 and deny.code == "model_not_allowed"
    error = error_json(deny)["error"]
    assert error == {
        "message": "this model is not available to you",
        "type": "permission_denied",
        "param": None,
        "code": "model_not_allowed",
    }
    record = build(ctx)
    assert [(o.capability, o.decision, o.code) for o in record.capabilities] == [
        ("model_access", "deny", "model_not_allowed")
    ]
    assert model in record.capabilities[0].reason  # the audit record says which model, the client is not told
    assert model not in deny.body.decode()


async def test_the_first_rule_matching_the_caller_decides_even_if_a_later_one_would_allow():
    route = compile_route(
        """\
        routes:
          - name: llm
            capabilities:
              - type: model_access
                config:
                  rules:
                    - {roles: [intern], models: [small-*]}
                    - {roles: [staff], models: ["*"]}
        """
    )
    intern_and_staff = identity("ivy", roles=["intern", "staff"])
    assert (await ask(route, intern_and_staff, "small-1"))[1] is None
    _, deny = await ask(route, intern_and_staff, "large-1")
    assert deny is not None and deny.code == "model_not_allowed"
    assert (await ask(route, identity("sam", roles=["staff"]), "large-1"))[1] is None


async def test_a_request_naming_no_model_is_refused(llm):
    # The upstream's default model is still a model.
    ctx, deny = await ask(llm, ADMIN, None)
    assert deny is not None and deny.status == 403 and deny.code == "model_not_allowed"
    assert build(ctx).capabilities[0].reason == "model None not allowed"


async def test_anthropic_requests_are_refused_in_anthropics_error_shape(llm):
    ctx = context(
        llm,
        "POST",
        "/v1/messages",
        who=ANALYST,
        body={"model": "claude-3-opus", "max_tokens": 10, "messages": [user("hi")]},
    )
    deny = await send(ctx)
    assert deny is not None and deny.status == 403
    assert error_json(deny) == {
        "type": "error",
        "error": {"type": "permission_error", "message": "this model is not available to you"},
    }


async def test_a_body_that_is_not_an_llm_request_is_a_400_before_any_model_check(llm):
    ctx = context(
        llm, "POST", "/v1/chat/completions", who=ADMIN, body=b"{not json", headers={"content-type": "application/json"}
    )
    deny = await send(ctx)
    assert deny is not None and deny.status == 400
    assert error_json(deny)["error"]["type"] == "invalid_request_error"


async def test_a_body_over_the_limit_is_refused():
    cap = capability(ModelAccess, {"rules": [{"models": ["*"]}], "max_body_bytes": 1024})
    ctx = chat(cap, [user("x" * 2000)], who=ADMIN, model="m")
    deny = await send(ctx)
    assert deny is not None and deny.status == 413


async def test_monitor_mode_records_the_refusal_and_lets_the_request_through():
    cap = capability(ModelAccess, {"rules": [{"roles": ["analyst"], "models": ["gpt-4o"]}]}, Mode.MONITOR)
    ctx = chat(cap, [user("hi")], who=ANALYST, model="gpt-5")
    assert await send(ctx) is None
    assert outcome(ctx) == [("model_access", "monitor", "deny")]
    assert build(ctx).facts["gen_ai.request.model"] == "gpt-5"


def test_a_rule_without_models_or_without_rules_is_a_policy_error():
    with pytest.raises(PolicyLoadError) as refused:
        compile_policy(
            """\
            routes:
              - name: llm
                capabilities:
                  - type: model_access
                    config: {rules: [{roles: [a], models: []}]}
            """
        )
    assert "routes[0].capabilities[0].config.rules[0].models" in str(refused.value)
    with pytest.raises(PolicyLoadError):
        compile_policy("routes: [{name: llm, capabilities: [{type: model_access, config: {rules: []}}]}]")
