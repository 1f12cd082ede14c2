"""The canonical path: one documented form, every ambiguity refused with its
own code (extproc.paths). The Envoy side of the contract, that Envoy's own
normalization yields the same path, is tests/e2e/test_path_canonical.py."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.paths import MAX_PATH_LENGTH, AmbiguousPath, canonical_path, drop_query_params, require_canonical_path
from extproc.pipeline import start
from extproc.policy.model import compile_match
from extproc.policy.schema import RouteMatch
from tests import builders
from tests.profiles import examples


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("/api/hello", "/api/hello"),
        ("/", "/"),
        ("//api///admin", "/api/admin"),
        ("/api/./admin", "/api/admin"),
        ("/api/public/../admin", "/api/admin"),
        ("/../../etc/passwd", "/etc/passwd"),
        ("/api/%2e%2e/admin", "/admin"),
        ("/api/.%2E/x", "/x"),
        ("/api/%61dmin", "/api/admin"),  # escaped unreserved: decoded, as Envoy does
        ("/api/%41%7e%2D%5f", "/api/A~-_"),
        ("/api/a%3fb", "/api/a%3Fb"),  # other escapes kept, one spelling of the hex
        ("/api/a%20b", "/api/a%20b"),
        ('/api/a"b{c}', "/api/a%22b%7Bc%7D"),  # what Envoy escapes, escaped
        ("/api/", "/api/"),
        ("/api/x/..", "/api/"),
        ("/api/x/.", "/api/x/"),
        ("/.well-known/agent.json", "/.well-known/agent.json"),
        ("/api/a.b/c", "/api/a.b/c"),
        ("/a//b/../c", "/a/c"),
        ("/a/b/../../..", "/"),
        ("/a/..", "/"),
    ],
)
def test_canonical_form(raw, expected):
    assert canonical_path(raw) == expected


@pytest.mark.parametrize(
    "raw, code",
    [
        ("/api/admin;/users", "path_parameter"),
        ("/api/admin%3b/users", "path_parameter"),
        ("/api/..;/admin", "path_parameter"),
        ("/api/admin./users", "path_trailing_dot"),
        ("/api/admin%2E/users", "path_trailing_dot"),
        ("/api/admin.../users", "path_trailing_dot"),
        ("/api/%2561dmin/users", "path_double_encoding"),
        ("/api/%25", "path_double_encoding"),
        ("/api/\uff41dmin/users", "path_non_ascii"),  # fullwidth a
        ("/api/%EF%BD%81dmin", "path_non_ascii"),  # the same, escaped
        ("/api/caf\u00e9", "path_non_ascii"),
        ("/api/a\udcffb", "path_non_ascii"),  # a raw non-UTF-8 byte
        ("/api/a%00b", "path_control_char"),
        ("/api/a\x00b", "path_control_char"),
        ("/api/a%0d%0aset-cookie", "path_control_char"),
        ("/api/a%7Fb", "path_control_char"),
        ("/api/a\tb", "path_control_char"),
        ("/api/a b", "path_invalid_char"),
        ("/api/a#b", "path_invalid_char"),
        ("/api%2Fadmin", "path_encoded_separator"),
        ("/api%5cadmin", "path_encoded_separator"),
        ("/api\\admin", "path_backslash"),
        ("/api/a%zz", "path_malformed_escape"),
        ("/api/a%4", "path_malformed_escape"),
        ("/api/a%", "path_malformed_escape"),
        ("/t//../", "path_ambiguous_dot_segment"),
        ("/a//../b", "path_ambiguous_dot_segment"),
        ("api/x", "path_not_absolute"),
        ("", "path_not_absolute"),
        ("*", "path_not_absolute"),
    ],
)
def test_ambiguous_paths_are_refused_with_a_precise_code(raw, code):
    with pytest.raises(AmbiguousPath) as refused:
        canonical_path(raw)
    assert refused.value.code == code


_ASCII = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_PIECES = st.sampled_from(
    [
        "/",
        "//",
        ".",
        "..",
        "/./",
        "/../",
        "%2e",
        "%2E",
        "%41",
        "%7e",
        "%3f",
        "%25",
        "%2f",
        ";",
        "\\",
        "%",
        "admin",
        "Admin",
        "\uff41",
        "%00",
        "#",
        " ",
    ]
)
paths = st.lists(st.one_of(_PIECES, st.text(_ASCII, max_size=3)), max_size=12).map(lambda xs: "/" + "".join(xs))


@settings(max_examples=examples(600), deadline=None)
@given(paths)
def test_canonical_is_a_fixed_point_and_never_ambiguous(raw):
    try:
        canonical = canonical_path(raw)
    except AmbiguousPath:
        return
    assert canonical_path(canonical) == canonical
    segments = canonical.split("/")
    assert canonical.startswith("/") and "//" not in canonical
    assert not any(s in (".", "..") or s.endswith(".") for s in segments)
    assert not any(c in canonical for c in ";\\# ") and canonical.isascii() and canonical.isprintable()
    assert "%25" not in canonical and "%2F" not in canonical.upper()


def test_an_overlong_path_is_a_414():
    with pytest.raises(AmbiguousPath) as refused:
        canonical_path("/" + "a" * MAX_PATH_LENGTH)
    assert (refused.value.code, refused.value.status) == ("path_too_long", 414)
    assert canonical_path("/" + "a" * (MAX_PATH_LENGTH - 1)) == "/" + "a" * (MAX_PATH_LENGTH - 1)


def test_a_refused_path_is_a_400_before_any_route_or_capability():
    matched = []
    policy = builders.compile_policy(
        """\
        defaults: {unmatched: allow}
        routes: [{name: all, match: {path_prefix: /}}]
        """
    )
    for raw in ("/api/admin;/users", "/api/%2561dmin/users", "/api/\uff41dmin", "/api/admin./users"):
        ctx = builders.context(policy, "GET", raw, resolve=False)
        deny = asyncio.run(start(ctx, None))
        assert deny is not None and deny.status == 400 and deny.code.startswith("path_"), raw
        assert ctx.route is None and not matched
        assert ctx.request.path.isascii() and ctx.request.path.isprintable()  # safe to audit


def test_policy_paths_must_be_canonical_or_the_rule_could_never_apply():
    assert require_canonical_path("/api/") == "/api/"
    assert require_canonical_path("/api/v1.") == "/api/v1."  # a prefix may stop mid-segment
    for bad in ("/api/%61dmin", "/api//x", "/api/a;b", "/api/./x"):
        with pytest.raises(ValueError):
            RouteMatch(path_prefix=bad)
        with pytest.raises(ValueError):
            RouteMatch(path_exact=bad)


def test_case_insensitive_route_matches_and_folds_what_capabilities_see():
    policy = builders.compile_policy("routes: [{name: api, match: {path_prefix: /api/admin/, case_insensitive: true}}]")
    ctx = builders.context(policy, "GET", "/API/Admin/users", resolve=False)
    assert asyncio.run(start(ctx, None)) is None
    assert ctx.route is policy.route_named("api") and ctx.request.path == "/api/admin/users"
    sensitive = compile_match(RouteMatch(path_prefix="/api/admin/"))
    assert not sensitive(builders.request("GET", "/api/Admin/users"))
    regex = compile_match(RouteMatch(path_regex=r"/api/admin/\w+", case_insensitive=True))
    assert regex(builders.request("GET", "/Api/ADMIN/x"))


@pytest.mark.parametrize(
    "query, expected",
    [
        ("access_token=abc&x=1", "x=1"),
        ("x=1&access_token=abc&y=a%20b", "x=1&y=a%20b"),  # others kept byte for byte
        ("access%5Ftoken=abc&x=1", "x=1"),  # an encoded name is the same name
        ("access_token=a&access_token=b", ""),
        ("x=1", "x=1"),
        ("", ""),
    ],
)
def test_drop_query_params(query, expected):
    assert drop_query_params(query, {"access_token"}) == expected
