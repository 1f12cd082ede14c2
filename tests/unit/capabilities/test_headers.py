import asyncio

import pytest
from pydantic import ValidationError

from extproc.capabilities.headers import Headers, HeadersConfig
from extproc.context import Mode
from tests import builders


def test_plans_request_and_response_edits():
    cap = Headers(
        HeadersConfig.model_validate(
            {
                "request": {"set": {"X-A": "1"}, "remove": ["x-b"]},
                "response": {"set": {"x-c": "2"}, "remove": ["server"]},
            }
        ),
        Mode.ENFORCE,
    )
    ctx = builders.context()
    assert asyncio.run(cap.on_request_headers(ctx)) is None
    assert ctx.request_headers_out.set == {"x-a": "1"} and ctx.request_headers_out.remove == ["x-b"]
    assert ctx.response_headers_out.set == {"x-c": "2"} and ctx.response_headers_out.remove == ["server"]


@pytest.mark.parametrize("name", ["host", ":path", "x-envoy-original-path", "content-length", "a b"])
def test_protected_or_invalid_headers_rejected(name):
    with pytest.raises(ValidationError):
        HeadersConfig.model_validate({"request": {"set": {name: "x"}}})
