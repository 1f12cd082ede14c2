import json

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc


def headers_msg(field, pairs):
    header_map = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs])
    return pb.ProcessingRequest(**{field: pb.HttpHeaders(headers=header_map)})


def request_headers(path="/api/x", extra=()):
    return headers_msg(
        "request_headers", [(":method", "GET"), (":path", path), (":authority", "gw"), (":scheme", "http"), *extra]
    )


async def exchange(channel, messages, route=None):
    stub = pb_grpc.ExternalProcessorStub(channel)
    metadata = (("x-governance-route", route),) if route else None
    call = stub.Process(iter(messages), metadata=metadata)
    return [r async for r in call]


def mutation(common):
    return (
        {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers},
        list(common.header_mutation.remove_headers),
    )


async def test_request_and_response_headers(processor):
    responses = await exchange(
        processor,
        [
            request_headers(),
            headers_msg("response_headers", [(":status", "200"), ("server", "upstream")]),
        ],
        route="api",
    )
    first, second = responses
    set_headers, removed = mutation(first.request_headers.response)
    assert set_headers["x-gateway"] == "governance" and removed == ["x-internal"]
    assert not first.HasField("mode_override")  # the route has response work to do
    set_headers, removed = mutation(second.response_headers.response)
    assert set_headers["x-governed-by"] == "extproc" and removed == ["server"]
    assert len(set_headers["x-decision-id"]) == 16


async def test_response_phase_skipped_when_route_has_nothing_to_do(processor):
    (response,) = await exchange(processor, [request_headers("/plain/x")])
    assert response.mode_override.response_header_mode == processing_mode_pb2.ProcessingMode.SKIP


async def test_denied_request_is_an_immediate_response(processor):
    (response,) = await exchange(processor, [request_headers(extra=[("x-debug", "1")])], route="api")
    immediate = response.immediate_response
    assert immediate.status.code == 403
    assert json.loads(immediate.body)["error"]["code"] == "forbidden"


async def test_body_before_headers_fails_closed(processor):
    (response,) = await exchange(processor, [pb.ProcessingRequest(request_body=pb.HttpBody(body=b"x"))])
    assert response.immediate_response.status.code == 500


async def test_empty_message_fails_closed(processor):
    responses = await exchange(processor, [request_headers("/plain/x"), pb.ProcessingRequest()])
    assert responses[1].immediate_response.status.code == 500


async def test_second_request_headers_is_a_protocol_error(processor):
    responses = await exchange(processor, [request_headers("/plain/x"), request_headers("/plain/x")])
    assert responses[1].immediate_response.status.code == 500


async def test_bodies_and_trailers_pass_through_on_routes_without_body_work(processor):
    responses = await exchange(
        processor,
        [
            request_headers("/plain/x"),
            pb.ProcessingRequest(request_body=pb.HttpBody(body=b"hello", end_of_stream=True)),
            pb.ProcessingRequest(request_trailers=pb.HttpTrailers()),
        ],
    )
    assert responses[1].HasField("request_body") and not responses[1].request_body.response.HasField("body_mutation")
    assert responses[2].HasField("request_trailers")


async def test_non_utf8_header_bytes_are_handled(processor):
    msg = request_headers("/api/x")
    msg.request_headers.headers.headers.add(key="x-weird", raw_value=b"\xff\xfe")
    (response,) = await exchange(processor, [msg], route="api")
    assert response.HasField("request_headers")
