"""A request whose headers end the stream sends no body message: the body
capabilities must still judge it (an empty body), never be skipped."""

import json

import pytest

from tests.unit.services.conftest import serving
from tests.unit.services.test_ext_proc import exchange, headers_msg

POLICY = """\
    routes:
      - name: llm
        match: {path_prefix: /v1/}
        capabilities:
          - type: prompt_guard
            config: {threshold: 0.5}
"""


@pytest.fixture
async def llm_processor(tmp_path):
    async with serving(tmp_path, POLICY) as channel:
        yield channel


def bodiless(method: str):
    message = headers_msg(
        "request_headers",
        [
            (":method", method),
            (":path", "/v1/chat/completions"),
            (":authority", "gw"),
            (":scheme", "http"),
            ("content-type", "application/json"),
        ],
    )
    message.request_headers.end_of_stream = True
    return message


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_bodiless_post_still_runs_the_body_capabilities(llm_processor, method):
    (response,) = await exchange(llm_processor, [bodiless(method)], route="llm")
    immediate = response.immediate_response
    assert immediate.status.code == 400
    assert json.loads(immediate.body)["error"]["type"] == "invalid_request_error"


async def test_a_bodiless_get_is_not_a_body_to_judge(llm_processor):
    (response,) = await exchange(llm_processor, [bodiless("GET")], route="llm")
    assert response.HasField("request_headers")
