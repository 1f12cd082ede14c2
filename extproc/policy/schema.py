"""The policy file schema: what a file in ``policies/`` may contain.

A policy file is YAML::

    version: 1
    defaults:                 # at most one file in a directory sets these
      unmatched: deny         # deny (default) | allow
      max_route_removal: 0.5  # a reload removing more of the routes is refused
    routes:
      - name: api             # the name Envoy binds a route to
        match:                # optional fallback when Envoy names no route
          path_prefix: /api/
          methods: [GET, POST]
        capabilities:         # run by capability priority, not list order
          - type: header_match
            mode: enforce     # enforce (default) | monitor
            config: {deny: [{name: x-debug, present: true}]}

Each capability's ``config`` is validated by that capability's own schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extproc.context import Mode
from extproc.globs import validate_regex
from extproc.headers import validate_methods
from extproc.paths import require_canonical_path

ROUTE_NAME = r"^[a-z0-9][a-z0-9_.\-]{0,62}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteMatch(Strict):
    path_prefix: str | None = None
    path_exact: str | None = None
    path_regex: str | None = Field(None, description="Python regex matched against the whole normalized path.")
    methods: list[str] = Field(default_factory=list, description="Empty means any method.")
    hosts: list[str] = Field(default_factory=list, description="Host globs such as *.example.com; empty means any.")
    case_insensitive: bool = Field(
        False,
        description="Match the case-folded path; the route's capabilities (RBAC paths…) then see the folded path too.",
    )

    @field_validator("path_prefix", "path_exact")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must start with /")
        return require_canonical_path(value) if value is not None else value

    _regex_ok = field_validator("path_regex")(validate_regex)

    _methods = field_validator("methods")(validate_methods)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [h.lower() for h in value]

    @model_validator(mode="after")
    def _one_path(self) -> RouteMatch:
        given = [k for k in ("path_prefix", "path_exact", "path_regex") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of path_prefix, path_exact, path_regex (got {', '.join(given)})")
        return self


class CapabilitySpec(Strict):
    type: str
    mode: Mode = Mode.ENFORCE
    config: dict[str, Any] = Field(default_factory=dict)


class RouteSpec(Strict):
    name: str = Field(pattern=ROUTE_NAME)
    description: str = ""
    match: RouteMatch | None = None
    capabilities: list[CapabilitySpec] = Field(default_factory=list)


class Defaults(Strict):
    unmatched: Literal["deny", "allow"] = "deny"
    max_route_removal: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A reload may remove at most this fraction of the live routes at once; a larger drop "
        "(a file missing mid-sync) is refused unless the new policy sets allow_route_removal.",
    )


class PolicyFile(Strict):
    version: Literal[1] = 1
    defaults: Defaults | None = None
    routes: list[RouteSpec] = Field(default_factory=list)
    # Explicit markers, each for the whole directory when any file sets it:
    # the unusual change must be declared, never inferred from a missing file.
    allow_empty: bool = Field(False, description="The directory may declare no route at all.")
    allow_route_removal: bool = Field(False, description="This revision may remove any number of the live routes.")
