import pytest

from extproc.context import HttpRequest
from extproc.policy.model import compile_match
from extproc.policy.schema import RouteMatch


def req(path="/", method="GET", host="api.example.com"):
    return HttpRequest(method, path, host, {})


@pytest.mark.parametrize(
    "match, request_, expected",
    [
        ({"path_prefix": "/api/"}, req("/api/x"), True),
        ({"path_prefix": "/api/"}, req("/apix"), False),
        ({"path_prefix": "/api/"}, req("/x/../api/y?q=1"), True),  # normalized, query dropped
        ({"path_exact": "/health"}, req("/health?x"), True),
        ({"path_exact": "/health"}, req("/health/"), False),
        ({"path_regex": r"/users/\d+"}, req("/users/42"), True),
        ({"path_regex": r"/users/\d+"}, req("/users/42/x"), False),  # whole-path match
        ({"methods": ["POST"]}, req(method="GET"), False),
        ({"hosts": ["*.example.com"]}, req(host="API.example.com:8443"), True),
        ({"hosts": ["*.example.com"]}, req(host="example.org"), False),
        ({}, req(), True),
    ],
)
def test_route_match(match, request_, expected):
    assert compile_match(RouteMatch(**match))(request_) is expected


def test_at_most_one_path_matcher():
    with pytest.raises(ValueError):
        RouteMatch(path_prefix="/a", path_exact="/a")
