"""The JSON Schema for policy files: every shipped policy file validates,
known-bad files do not, and the committed copies the modelines point at are
the generated ones."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from extproc.policytools.jsonschema import case_file_schema, policy_file_schema
from tests.unit.policytools.conftest import POLICIES, REPO

SCHEMAS = REPO / "docs" / "schemas"
POLICY_FILES = sorted(p for p in POLICIES.iterdir() if p.suffix in (".yaml", ".yml"))
CASE_FILES = sorted((POLICIES / "tests").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = policy_file_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.Draft202012Validator, document: object) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_shipped_policy_file_validates(validator, path: Path):
    assert POLICY_FILES, "no policy file found"
    assert errors(validator, yaml.safe_load(path.read_text())) == []


@pytest.mark.parametrize("path", [*POLICY_FILES, *CASE_FILES], ids=lambda p: p.name)
def test_shipped_files_carry_the_modeline_to_the_committed_schema(path: Path):
    first = path.read_text().splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix)
    target = (path.parent / first[len(prefix) :]).resolve()
    assert target.parent == SCHEMAS.resolve()
    expected = case_file_schema() if path.parent.name == "tests" else policy_file_schema()
    # Structure (fields, types, enums, required, the discriminator) must match;
    # wording and defaults may lag a little, they do not change what validates.
    assert _structure(json.loads(target.read_text())) == _structure(expected), (
        "stale: extproc policy schema --json-schema > docs/schemas/policy-file.json; "
        "extproc policy schema --cases > docs/schemas/policy-test.json"
    )


def _structure(schema: object) -> object:
    if isinstance(schema, dict):
        return {k: _structure(v) for k, v in schema.items() if k not in ("description", "default", "title")}
    if isinstance(schema, list):
        return [_structure(v) for v in schema]
    return schema


def _demo() -> dict:
    return yaml.safe_load((POLICIES / "demo.yaml").read_text())


def test_a_misspelt_field_inside_a_capability_config_fails(validator):
    bad = _demo()
    bad["routes"][0]["capabilities"][1]["config"]["rules"][0]["who"]["rolez"] = ["admin"]
    found = errors(validator, bad)
    assert found and all(e.startswith("['routes', 0, 'capabilities', 1") for e in found)
    best = jsonschema.exceptions.best_match(validator.iter_errors(bad))
    assert "rolez" in best.message


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["routes"][0]["capabilities"].append({"type": "nope"}), "capabilities"),
        (lambda d: d["routes"][0].update(name="Bad Name"), "name"),
        (lambda d: d["routes"][0]["capabilities"][0].update(mode="audit"), "mode"),
        (lambda d: d["routes"][0]["capabilities"][2]["config"]["limits"][0].update(rate="fast"), "rate"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["routes"][0]["capabilities"][0]["config"].pop("issuers"), "issuers"),
    ],
)
def test_known_bad_files_fail(validator, mutate, where):
    bad = _demo()
    mutate(bad)
    assert errors(validator, bad), where


def test_the_discriminator_covers_every_registered_capability():
    from extproc.capabilities import REGISTRY

    schema = policy_file_schema()
    union = next(v for k, v in schema["$defs"].items() if k == "Route")["properties"]["capabilities"]["items"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(union["discriminator"]["mapping"]) == set(REGISTRY)


def test_case_files_validate_against_their_schema():
    validator = jsonschema.Draft202012Validator(case_file_schema())
    for path in CASE_FILES:
        assert errors(validator, yaml.safe_load(path.read_text())) == [], path
    assert errors(validator, {"cases": [{"name": "x", "request": {}, "expect": {"statuz": 1}}]})
