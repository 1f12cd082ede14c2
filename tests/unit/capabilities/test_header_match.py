import pytest
from pydantic import ValidationError

from extproc.capabilities.header_match import HeaderMatch, HeaderMatchConfig
from extproc.context import Mode
from tests import builders


def check(config, headers):
    cap = HeaderMatch(HeaderMatchConfig.model_validate(config), Mode.ENFORCE)
    ctx = builders.context(None, "GET", "/", headers)
    import asyncio

    return asyncio.run(cap.on_request_headers(ctx))


@pytest.mark.parametrize(
    "rule, headers, denied",
    [
        ({"name": "X-Debug", "present": True}, {"x-debug": ""}, True),
        ({"name": "x-debug", "present": True}, {}, False),
        ({"name": "x-env", "present": False}, {}, True),
        ({"name": "x-env", "exact": "prod"}, {"x-env": "prod"}, True),
        ({"name": "x-env", "exact": "prod"}, {"x-env": "production"}, False),
        ({"name": "user-agent", "prefix": "curl/"}, {"user-agent": "curl/8"}, True),
        ({"name": "x-id", "regex": r"\d+"}, {"x-id": "123"}, True),
        ({"name": "x-id", "regex": r"\d+"}, {"x-id": "123a"}, False),
    ],
)
def test_deny_rules(rule, headers, denied):
    assert (check({"deny": [rule]}, headers) is not None) is denied


def test_allow_list_requires_a_match_and_deny_wins():
    config = {"allow": [{"name": "x-tenant", "exact": "a"}], "deny": [{"name": "x-debug", "present": True}]}
    assert check(config, {"x-tenant": "a"}) is None
    assert check(config, {"x-tenant": "b"}).reason == "no allow rule matched"
    assert check(config, {"x-tenant": "a", "x-debug": "1"}).reason == "deny rule on header x-debug"


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"deny": [{"name": "x", "present": True, "exact": "y"}]},
        {"deny": [{"name": "bad header", "present": True}]},
        {"deny": [{"name": "x"}]},
        {"deny": [{"name": "x", "present": True}], "status": 200},
    ],
)
def test_invalid_configs(config):
    with pytest.raises(ValidationError):
        HeaderMatchConfig.model_validate(config)
