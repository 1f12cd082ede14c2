import pytest

from extproc.paths import normalize_path


@pytest.mark.parametrize("raw, expected", [
    ("/api/hello", "/api/hello"),
    ("/", "/"),
    ("", "/"),
    ("api", "/api"),
    ("//api///admin", "/api/admin"),
    ("/api/./admin", "/api/admin"),
    ("/api/public/../admin", "/api/admin"),
    ("/../../etc/passwd", "/etc/passwd"),
    ("/api%2Fadmin", "/api/admin"),
    ("/api%2fadmin/", "/api/admin/"),
    ("/api/%2e%2e/admin", "/admin"),
    ("/api\\admin", "/api/admin"),
    ("/api/", "/api/"),
    ("/api/x/..", "/api/"),
])
def test_normalizes_like_the_upstream_will_resolve(raw, expected):
    assert normalize_path(raw) == expected


def test_non_utf8_escapes_survive():
    assert normalize_path("/a%ff%2Fb") == "/a\udcff/b"
