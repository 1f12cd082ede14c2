import textwrap

import pytest

from extproc.policy.loader import PolicyLoadError, load_policy_dir


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(tmp_path):
    with pytest.raises(PolicyLoadError) as info:
        load_policy_dir(tmp_path)
    return [str(e) for e in info.value.errors]


VALID = """\
    version: 1
    routes:
      - name: api
        match: {path_prefix: /api/, methods: [get]}
        capabilities:
          - type: headers
            config: {request: {set: {X-Gateway: gw}}}
          - type: header_match
            mode: monitor
            config: {deny: [{name: x-debug, present: true}]}
"""


def test_valid_policy_compiles_routes_in_priority_order(tmp_path):
    write(tmp_path, "a.yaml", VALID)
    policy = load_policy_dir(tmp_path)
    route = policy.routes["api"]
    assert [c.name for c in route.capabilities] == ["header_match", "headers"]  # priority, not file order
    assert route.capabilities[0].mode.value == "monitor"
    assert route.capabilities[1].config.request.set == {"x-gateway": "gw"}  # header names lower-cased
    assert route.source.endswith("a.yaml:3")
    assert len(policy.revision) == 12


def test_revision_is_a_content_hash(tmp_path):
    write(tmp_path, "a.yaml", VALID)
    first = load_policy_dir(tmp_path).revision
    assert load_policy_dir(tmp_path).revision == first
    write(tmp_path, "a.yaml", VALID.replace("/api/", "/v2/"))
    assert load_policy_dir(tmp_path).revision != first


def test_unknown_field_names_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        routes:
          - name: api
            match: {path_prefix: /api/}
            capabilities:
              - type: header_match
                config:
                  deny:
                    - name: x-debug
                      present: true
                      colour: red
    """,
    )
    assert errors_of(tmp_path) == [f"{path}:10: routes[0].capabilities[0].config.deny[0].colour: unknown field"]


def test_wrong_type_and_bad_values(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        routes:
          - name: api
            match:
              path_prefix: api/
              methods: [GET, FETCH]
            capabilities:
              - type: header_match
                mode: audit
                config: {deny: [{name: x-a, present: "maybe"}]}
    """,
    )
    errors = errors_of(tmp_path)
    assert f"{path}:4: routes[0].match.path_prefix: must start with /" in errors
    assert f"{path}:5: routes[0].match.methods: unknown HTTP method(s): FETCH" in errors
    assert any(e.startswith(f"{path}:8: routes[0].capabilities[0].mode:") for e in errors)


def test_capability_config_errors_are_located(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        routes:
          - name: api
            capabilities:
              - type: header_match
                config:
                  deny:
                    - name: x-a
                      regex: "("
              - type: headers
                config: {request: {set: {host: evil}}}
              - type: teleport
    """,
    )
    errors = errors_of(tmp_path)
    assert errors[0].startswith(f"{path}:8: routes[0].capabilities[0].config.deny[0].regex: invalid regex")
    assert errors[1].startswith(f"{path}:10: routes[0].capabilities[1].config.request.set:")
    assert "cannot be changed" in errors[1]
    assert errors[2].startswith(f"{path}:11: routes[0].capabilities[2].type: unknown capability 'teleport'")


def test_missing_required_field(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        routes:
          - match: {path_prefix: /x/}
    """,
    )
    assert errors_of(tmp_path) == [f"{path}:2: routes[0].name: Field required"]


# Each: the text, where the broken construct starts (line:col), where the
# parser gave up. The error names the start: that is where the fix goes.
YAML_SYNTAX_ERRORS = {
    "unclosed [": (
        "routes:\n  - name: a\n    match:\n      methods: [GET, POST\n    capabilities: []\n",
        "4:16",
        "while parsing a flow sequence",
        "line 5 column 17",
    ),
    "unclosed {": (
        "routes:\n  - name: api\n    match: {path_prefix: /x/\n\n\n",
        "3:12",
        "while parsing a flow mapping",
        "line 6 column 1",
    ),
    "unclosed quote": (
        'routes:\n  - name: "api\n    capabilities: []\n  - name: b\n',
        "2:11",
        "while scanning a quoted scalar",
        "line 5 column 1",
    ),
    "bad indentation": (
        "routes:\n  - name: a\n    capabilities:\n      - type: x\n     mode: y\n",
        "2:5",
        "while parsing a block mapping",
        "line 5 column 6",
    ),
    "tab": (
        "routes:\n  - name: a\n    capabilities:\n\t  - type: x\n",
        "4:1",
        "found character '\\t' that cannot start any token",
        "not tabs",
    ),
}


@pytest.mark.parametrize("case", YAML_SYNTAX_ERRORS)
def test_yaml_syntax_error_names_where_the_construct_starts(tmp_path, case):
    text, start, context, stop = YAML_SYNTAX_ERRORS[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    (error,) = errors_of(tmp_path)
    assert error.startswith(f"{path}:{start}: invalid YAML: ")
    assert context in error and stop in error and "\n" not in error


def test_duplicate_keys_are_errors_not_silently_merged(tmp_path):
    path = write(
        tmp_path,
        "bad.yaml",
        """\
        routes:
          - name: api
            capabilities:
              - type: header_match
                config:
                  deny: [{name: x-a, present: true}]
                  deny: []
    """,
    )
    assert f"{path}:7: deny: duplicate key" in errors_of(tmp_path)


def test_route_names_unique_across_files(tmp_path):
    first = write(tmp_path, "a.yaml", "routes: [{name: api}]\n")
    second = write(tmp_path, "b.yaml", "routes:\n  - name: other\n  - name: api\n")
    assert errors_of(tmp_path) == [f"{second}:3: routes.name: route 'api' is already defined at {first}:1"]


def test_defaults_set_once(tmp_path):
    write(tmp_path, "a.yaml", "defaults: {unmatched: allow}\n")
    second = write(tmp_path, "b.yaml", "defaults: {unmatched: deny}\n")
    (error,) = errors_of(tmp_path)
    assert error.startswith(f"{second}:1: defaults: defaults are already set in")


@pytest.mark.parametrize(
    "files",
    [
        {},
        {"a.yaml": ""},
        {"a.yaml": "defaults: {unmatched: deny}\n", "b.yml": "routes: []\n"},
        {"notes.txt": "routes: [{name: api}]\n"},
    ],
)
def test_a_directory_without_routes_is_refused(tmp_path, files):
    for name, text in files.items():
        write(tmp_path, name, text)
    (error,) = errors_of(tmp_path)
    assert error.startswith(f"{tmp_path}: no routes (") and "allow_empty: true" in error


def test_allow_empty_is_the_explicit_way_to_serve_no_route(tmp_path):
    write(tmp_path, "a.yaml", "allow_empty: true\ndefaults: {unmatched: allow}\n")
    policy = load_policy_dir(tmp_path)
    assert policy.routes == {} and policy.unmatched_allow is True


def test_not_a_mapping(tmp_path):
    path = write(tmp_path, "bad.yaml", "- just\n- a list\n")
    assert errors_of(tmp_path) == [f"{path}:1: a policy file must be a mapping with a 'routes' list"]


def test_non_utf8_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"routes:\n  - name: \xff\n")
    assert errors_of(tmp_path) == [f"{path}:2: file is not valid UTF-8"]


def test_shipped_policies_are_valid():
    from pathlib import Path

    policy = load_policy_dir(Path(__file__).resolve().parents[3] / "policies")
    assert "api" in policy.routes
