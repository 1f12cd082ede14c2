"""A JSON Schema for policy FILES, for editors (``yaml-language-server``)
and CI: the file/route structure of ``extproc.policy.schema`` with each
capability's ``config`` schema, as a union discriminated on ``type``.

Generated from the same pydantic models the loader validates with, so it
cannot drift from them. What a schema cannot say (a regex that compiles, a
path that is canonical, a JWKS file that exists) stays the loader's job:
``extproc policy validate`` remains the authority.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from extproc.capabilities import REGISTRY
from extproc.context import Mode
from extproc.policy.schema import ROUTE_NAME, Defaults, RouteMatch

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://extproc.dev/schemas/policy-file.json"
CASES_SCHEMA_ID = "https://extproc.dev/schemas/policy-test.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _capability_models() -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        config_model = cls.Config
        try:
            config_model.model_validate({})
            required = False
        except ValidationError:
            required = True
        config_field: Any = (config_model, ...) if required else (config_model, Field(default_factory=dict))
        models.append(
            create_model(
                f"Capability_{name}",
                __base__=_Strict,
                __doc__=f"The `{name}` capability (priority {cls.priority}).",
                type=(cast(Any, Literal[name]), ...),
                mode=(Mode, Mode.ENFORCE),
                config=config_field,
            )
        )
    return models


def policy_file_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one policy file."""
    union: Any = Union[tuple(_capability_models())]  # noqa: UP007  (built at run time)
    capability: Any = Annotated[union, Field(discriminator="type")]
    route = create_model(
        "Route",
        __base__=_Strict,
        name=(str, Field(pattern=ROUTE_NAME, description="The name Envoy binds its route to.")),
        description=(str, ""),
        match=(RouteMatch | None, None),
        capabilities=(list[capability], Field(default_factory=list)),
    )
    policy_file = create_model(
        "PolicyFile",
        __base__=_Strict,
        version=(Literal[1], 1),
        defaults=(Defaults | None, None),
        routes=(list[route], Field(default_factory=list)),
        allow_empty=(bool, False),
        allow_route_removal=(bool, False),
    )
    schema = policy_file.model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "extproc policy file",
        "description": "A file of an extproc policy directory (see README, Policies).",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def case_file_schema() -> dict[str, Any]:
    """The JSON Schema of a test-case file (``policies/tests/*.yaml``)."""
    from extproc.policytools.cases import CaseFile

    schema = CaseFile.model_json_schema()
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": CASES_SCHEMA_ID,
        "title": "extproc policy test cases",
        "description": "Test cases run by `extproc policy test` (docs/gitops.md).",
        **{k: v for k, v in schema.items() if k != "title"},
    }
