"""The test-case file format (``policies/tests/*.yaml``), validated with
pydantic; errors name ``file:line: field`` like policy errors do.

A case is one request and what the gateway must answer::

    cases:
      - name: readers read
        request:
          method: GET
          path: /api/hello
          identity: { claims: { sub: alice, roles: [reader] } }
        expect:
          status: 200
          upstream: { headers: { x-auth-subject: alice } }
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from extproc.policy.loader import (  # the loader's file:line:field mapping
    PolicyError,
    PolicyLoadError,
    parse_yaml,
    validation_errors,
)

Filter = Literal["auto", "ext_authz", "ext_proc"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentitySpec(_Strict):
    """Who calls. ``claims`` are minted into a JWT signed with the runner's
    test key (which the runner adds to every ``jwt`` issuer); ``iss`` and
    ``aud`` default to the route's first issuer and audience."""

    claims: dict[str, Any] | None = None
    token: str | None = Field(None, description="A literal bearer token (must verify against the policy's keys).")
    api_key: str | None = Field(None, description="Sent in the header the route's api_key capability reads.")
    principal: str | None = Field(None, description="mTLS peer identity (SPIFFE ID) Envoy verified.")
    ttl: int = Field(3600, description="Seconds until the minted token expires (negative: already expired).")

    @model_validator(mode="after")
    def _one_token(self) -> IdentitySpec:
        if self.claims is not None and self.token is not None:
            raise ValueError("give claims or token, not both")
        return self


class ResponseSpec(_Strict):
    """The upstream's answer, for capabilities that work on responses."""

    status: int = Field(200, ge=100, le=599)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    json_body: Any = Field(None, alias="json")
    chunks: list[str] | None = Field(None, description="The body as streamed chunks (SSE...).")

    def body_chunks(self) -> list[bytes]:
        if self.chunks is not None:
            return [c.encode() for c in self.chunks]
        if self.json_body is not None:
            import json

            return [json.dumps(self.json_body).encode()]
        return [self.body.encode()] if self.body is not None else []


class RequestSpec(_Strict):
    method: str = "GET"
    path: str = "/"
    host: str = "gateway.test"
    headers: dict[str, str] = Field(default_factory=dict)
    identity: IdentitySpec | None = None
    body: str | None = None
    json_body: Any = Field(None, alias="json")
    route: str | None = Field(None, description="The route Envoy binds (default: the policy's own match decides).")
    filter: Filter = Field("auto", description="auto: ext_proc when the route needs bodies or responses.")
    response: ResponseSpec | None = None

    @model_validator(mode="after")
    def _one_body(self) -> RequestSpec:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give body or json, not both")
        return self

    def body_bytes(self) -> bytes | None:
        if self.json_body is not None:
            import json

            return json.dumps(self.json_body).encode()
        return self.body.encode() if self.body is not None else None


class MessageExpect(_Strict):
    """What the upstream receives (``upstream``) or the client gets back (``response``)."""

    headers: dict[str, str] = Field(default_factory=dict, description="Headers present with exactly these values.")
    headers_absent: list[str] = Field(default_factory=list)
    body_contains: list[str] = Field(default_factory=list)
    body_excludes: list[str] = Field(default_factory=list)
    json_body: Any = Field(None, alias="json", description="A subset of the JSON body.")
    path: str | None = Field(None, description="upstream only: the :path forwarded (query included).")


class AuditExpect(_Strict):
    capabilities: dict[str, Literal["allow", "deny", "error", "skipped"]] = Field(default_factory=dict)
    facts: dict[str, Any] = Field(default_factory=dict)
    identity: dict[str, Any] = Field(default_factory=dict)


class Expect(_Strict):
    status: int | None = Field(None, description="What the client gets: the refusal's status or the upstream's.")
    allowed: bool | None = None
    code: str | None = Field(None, description="The refusal's stable code (the audit record's).")
    route: str | None = None
    decided_by: str | None = Field(None, description="The capability (or router) that refused.")
    rule: str | None = Field(None, description="The named rule that decided (RBAC, MCP, A2A, quota limit...).")
    upstream: MessageExpect | None = None
    response: MessageExpect | None = None
    audit: AuditExpect | None = None


class Case(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    request: RequestSpec
    repeat: int = Field(1, ge=1, le=10_000, description="Send the request this many times; expect judges the last.")
    expect: Expect


class CaseFile(_Strict):
    cases: list[Case] = Field(min_length=1)


class LocatedCase:
    """A case and where it is written (``file:line``)."""

    __slots__ = ("case", "file", "line")

    def __init__(self, case: Case, file: str, line: int):
        self.case, self.file, self.line = case, file, line

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def load_case_file(path: Path) -> list[LocatedCase]:
    """Raises ``PolicyLoadError`` with file:line: field errors."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyLoadError([PolicyError(name, 0, "", f"cannot read: {exc}")]) from None
    data, locator, errors = parse_yaml(text, name)
    if errors:
        raise PolicyLoadError(errors)
    if not isinstance(data, dict):
        raise PolicyLoadError([PolicyError(name, 1, "", "a case file must be a mapping with a 'cases' list")])
    try:
        spec = CaseFile.model_validate(data)
    except ValidationError as exc:
        raise PolicyLoadError(validation_errors(exc, name, locator)) from None
    names: dict[str, int] = {}
    out = []
    for index, case in enumerate(spec.cases):
        line = locator.line(("cases", index))
        if case.name in names:
            raise PolicyLoadError(
                [PolicyError(name, line, f"cases[{index}].name", f"duplicate case name (line {names[case.name]})")]
            )
        names[case.name] = line
        out.append(LocatedCase(case, name, line))
    return out


def case_files(location: Path) -> list[Path]:
    if location.is_file():
        return [location]
    return sorted(p for p in location.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_cases(location: Path) -> list[LocatedCase]:
    """Every case under ``location`` (a file or a directory); all errors at once."""
    errors: list[PolicyError] = []
    cases: list[LocatedCase] = []
    if not location.exists():
        raise PolicyLoadError([PolicyError(str(location), 0, "", "no such file or directory")])
    for path in case_files(location):
        try:
            cases.extend(load_case_file(path))
        except PolicyLoadError as exc:
            errors.extend(exc.errors)
    if errors:
        raise PolicyLoadError(errors)
    return cases
