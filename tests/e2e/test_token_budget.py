"""LLM token budgets through real Envoy, with the real openai client and a
real Redis: reservations before the model, reconciliation after it."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import openai

from extproc.local.demo_keys import load_demo_key, mint
from tests.e2e.llm_policies import llm_route_policy
from tests.redis_server import patient


def budget_policy(tmp_path: Path, tokens: int) -> Path:
    return llm_route_policy(
        tmp_path / "budget-policies",
        f"""\
        - type: token_budget
          config:
            budgets:
              - {{ name: daily, key: [consumer, model], tokens: {tokens}, per: 1d }}
        """,
    )


def client(gateway, sub="alice") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1",
        api_key=mint(load_demo_key(), sub=sub, roles=["reader"]),
        max_retries=0,
        timeout=20,
    )


def ask(c: openai.OpenAI, max_tokens: int, stream: bool = False) -> str:
    if stream:
        chunks = c.chat.completions.create(
            model="demo",
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hello there"}],
        )
        return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    raw = c.chat.completions.with_raw_response.create(
        model="demo", max_tokens=max_tokens, messages=[{"role": "user", "content": "hello there"}]
    )
    return raw.headers["x-token-budget-remaining-daily"]


def test_reconciliation_returns_the_unused_reservation(gateway_factory, tmp_path):
    gateway = gateway_factory(policy_dir=budget_policy(tmp_path, 1000))
    c = client(gateway)
    first = int(ask(c, max_tokens=400))  # reserved ~400 + prompt, used ~10
    second = int(ask(c, max_tokens=400))
    # Had the first reservation not been settled, the second would see ~200 left.
    assert 1000 - 430 < first < 1000 - 400
    assert second > first - 50


def test_request_that_does_not_fit_is_refused_before_the_model(gateway_factory, tmp_path):
    gateway = gateway_factory(policy_dir=budget_policy(tmp_path, 300))
    c = client(gateway)
    before = len(gateway.echo.httpd.model_requests)
    try:
        ask(c, max_tokens=500)
        raise AssertionError("expected a 429")
    except openai.RateLimitError as exc:
        assert exc.body["code"] == "token_budget_exceeded"
        assert int(exc.response.headers["retry-after"]) >= 1
    assert len(gateway.echo.httpd.model_requests) == before  # the model never ran
    assert ask(c, max_tokens=100)  # a smaller request still fits
    assert ask(client(gateway, sub="bob"), max_tokens=250)  # budgets are per consumer


def test_concurrent_streams_never_overspend(gateway_factory, tmp_path, redis_server):
    budget, per_request = 500, 60
    gateway = gateway_factory(
        policy_dir=budget_policy(tmp_path, budget), processor_args=("--quota-backend", patient(redis_server.url))
    )
    c = client(gateway)

    def one(_):
        try:
            return ask(c, max_tokens=per_request, stream=True)
        except openai.RateLimitError:
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(40)))
    admitted = [r for r in results if r is not None]
    refused = len(results) - len(admitted)
    assert admitted and refused, (len(admitted), refused)
    assert all(r == "You said: hello there" for r in admitted)
    # Refusals came from reservations in flight (each >= per_request tokens,
    # never together over the budget), not from spending: once all settled,
    # the budget has been charged exactly what the model reported per request
    # (mock usage: 2 prompt + 5 completion tokens), nothing more, nothing lost.
    # SDKs hang up right after [DONE]; those requests settle a moment later.
    with redis_server.client() as r:
        (key,) = r.keys("quota:*:t:daily:*")
        used = lambda: float(r.hget(key, "used"))  # noqa: E731
        try:
            gateway.wait_for(lambda: abs(used() - 7 * len(admitted)) < 1.0, timeout=5)
        except AssertionError:
            raise AssertionError(f"budget charged {used()} for {len(admitted)} requests of 7 tokens") from None


def test_a_negative_or_fractional_max_tokens_is_refused_not_credited(gateway):
    # The demo policy: 100k tokens a day per consumer and model. A ~110k-token
    # prompt is refused; a negative max_tokens used to make its reservation
    # negative, admit it, and report 1e30 tokens left.
    c = client(gateway)
    huge = "word " * 90_000  # ~112k tokens by the gateway's estimate
    try:
        c.chat.completions.create(model="demo", messages=[{"role": "user", "content": huge}])
        raise AssertionError("expected a 429")
    except openai.RateLimitError as exc:
        assert exc.body["code"] == "token_budget_exceeded"
    before = len(gateway.echo.httpd.model_requests)
    for max_tokens in (-(10**30), -1, 100.5, 64.0):
        try:
            c.chat.completions.create(model="demo", max_tokens=max_tokens, messages=[{"role": "user", "content": huge}])
            raise AssertionError(f"max_tokens={max_tokens} was admitted")
        except openai.BadRequestError as exc:
            assert "max_tokens" in exc.body["message"]
    try:
        c.chat.completions.create(model="demo", n=-5, messages=[{"role": "user", "content": "hi"}])
        raise AssertionError("n=-5 was admitted")
    except openai.BadRequestError:
        pass
    assert len(gateway.echo.httpd.model_requests) == before
    assert 0 <= int(ask(c, max_tokens=10)) <= 100_000


def test_models_matched_by_one_glob_share_one_budget(gateway_factory, tmp_path):
    gateway = gateway_factory(
        policy_dir=llm_route_policy(
            tmp_path / "glob-budget",
            """\
        - type: model_access
          config: { rules: [{ roles: [reader], models: ["demo-*"] }] }
        - type: token_budget
          config:
            budgets:
              - { name: daily, key: [consumer, model], tokens: 600, per: 1d }
        """,
        )
    )
    c = client(gateway)
    prompt = "lorem ipsum " * 70  # ~210 tokens in, the mock echoes ~210 back
    first = c.chat.completions.with_raw_response.create(
        model="demo-a", max_tokens=250, messages=[{"role": "user", "content": prompt}]
    )
    assert int(first.headers["x-token-budget-remaining-daily"]) < 600 - 400
    try:
        c.chat.completions.create(model="demo-b", max_tokens=250, messages=[{"role": "user", "content": prompt}])
        raise AssertionError("demo-b got a fresh budget")
    except openai.RateLimitError as exc:
        assert exc.body["code"] == "token_budget_exceeded"
