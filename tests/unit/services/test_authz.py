import json

from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc as pb_grpc
from google.rpc import code_pb2


def check_request(path, headers=None, route=None, method="GET"):
    attrs = ac.AttributeContext(
        request=ac.AttributeContext.Request(
            http=ac.AttributeContext.HttpRequest(method=method, path=path, host="gw.local", headers=headers or {})
        )
    )
    if route:
        attrs.context_extensions["route"] = route
    return pb.CheckRequest(attributes=attrs)


async def test_allowed_request_gets_header_mutations(processor):
    response = await pb_grpc.AuthorizationStub(processor).Check(check_request("/api/x", route="api"))
    assert response.status.code == code_pb2.OK
    ok = response.ok_response
    set_headers = {h.header.key: h.header.value for h in ok.headers}
    assert set_headers["x-gateway"] == "governance"
    assert len(set_headers["x-decision-id"]) == 16
    assert list(ok.headers_to_remove) == ["x-internal"]
    assert {h.header.key: h.header.value for h in ok.response_headers_to_add}["x-governed-by"] == "extproc"


async def test_denied_request_gets_json_403_with_decision_id(processor):
    response = await pb_grpc.AuthorizationStub(processor).Check(check_request("/api/x", {"x-debug": "1"}, route="api"))
    assert response.status.code == code_pb2.PERMISSION_DENIED
    denied = response.denied_response
    assert denied.status.code == 403
    body = json.loads(denied.body)
    headers = {h.header.key: h.header.value for h in denied.headers}
    assert body["error"]["code"] == "forbidden"
    assert body["error"]["decision_id"] == headers["x-decision-id"]
    assert headers["content-type"] == "application/json"


async def test_fallback_match_and_default_deny(processor):
    stub = pb_grpc.AuthorizationStub(processor)
    assert (await stub.Check(check_request("/plain/y"))).status.code == code_pb2.OK
    assert (await stub.Check(check_request("/nowhere"))).denied_response.status.code == 403
    # A path that normalizes into the route is governed by it...
    assert (await stub.Check(check_request("/x/../api/y", {"x-debug": "1"}))).denied_response.status.code == 403
    # ...and a route name Envoy sends that the policy lacks is denied.
    assert (await stub.Check(check_request("/api/x", route="ghost"))).denied_response.status.code == 403


async def test_empty_check_request_is_denied_not_crashed(processor):
    response = await pb_grpc.AuthorizationStub(processor).Check(pb.CheckRequest())
    # No path at all is not a path policies can judge: refused as malformed.
    assert response.denied_response.status.code == 400
