"""Tool, resource and prompt access rules, and argument constraints.

One function, ``AccessPolicy.decide``, answers "may this caller use this
tool (resource, prompt)?". ``tools/call`` asks it with the call's arguments;
``tools/list`` asks it for every listed tool without arguments and keeps what
it allows — so a caller sees exactly the tools it may call.

Evaluation, for a caller and a target of one kind:

1. any matching ``deny`` rule (its ``who`` matches and a glob of that kind
   matches the name) refuses — deny overrides allow;
2. no matching ``allow`` rule: refused (default deny);
3. without arguments (listing): allowed;
4. with arguments: allowed if for at least one matching allow rule every
   constraint that applies to the target holds; otherwise refused, with the
   first failing rule's reason.

A rule's ``tools`` / ``resources`` / ``prompts`` list is what it grants or
denies; an empty list grants (or denies) nothing of that kind — use ``["*"]``
for everything. Deny rules name targets only: a deny that depended on
arguments could not hide a tool from a list, so it would not be a deny.

Argument constraints (``constraints`` on allow rules), per argument:

* present → its value must pass every test given (``one_of``, ``pattern``,
  ``not_pattern``, ``minimum``/``maximum``, ``max_length``, ``schema``);
  an explicit ``null`` is present, and fails tests it does not satisfy;
* absent and ``required: true`` → refused;
* absent and ``required: false`` → allowed as far as this argument goes (the
  server's default applies: choose this only where that default is safe).

``required`` has no default: every constrained argument says which it is.
A constraint entry may also carry a JSON Schema for the whole arguments
object (``schema``), validated with the ``jsonschema`` package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from extproc.config import CapabilityConfig
from extproc.context import Identity
from extproc.globs import compile_glob, compile_globs, validate_regex
from extproc.identity.who import Who, WhoMatcher
from extproc.jsonrpc.decision import Decision

KINDS = ("tool", "resource", "prompt")
NOT_GIVEN: Any = object()  # "no arguments": the listing question


def _checked_schema(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Pydantic validator: ``value`` is a valid JSON Schema (or None)."""
    if value is not None:
        _schema_validator(value)
    return value


def _schema_validator(schema: dict[str, Any]) -> Any:  # a jsonschema validator (an untyped package)
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - jsonschema comes with mcp
        raise ValueError("a `schema` constraint needs the jsonschema package") from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None
    return cls(schema)


class ArgumentConstraint(CapabilityConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    required: bool = Field(description="Absent argument: true refuses the call, false lets the server's default apply.")
    one_of: list[Any] | None = Field(None, description="The value must equal one of these (1 is not true).")
    pattern: str | None = Field(None, description="Strings only; the whole value must match this regex.")
    not_pattern: str | None = Field(None, description="Strings only; the value must not contain a match.")
    minimum: float | None = Field(None, description="Numbers only (not booleans), inclusive.")
    maximum: float | None = Field(None, description="Numbers only (not booleans), inclusive.")
    max_length: int | None = Field(None, ge=0, description="Characters of a string or items of an array.")
    json_schema: dict[str, Any] | None = Field(None, alias="schema", description="A JSON Schema for the value.")

    _regex = field_validator("pattern", "not_pattern")(validate_regex)

    _schema_ok = field_validator("json_schema")(_checked_schema)

    @model_validator(mode="after")
    def _some_test(self) -> ArgumentConstraint:
        tests = ("one_of", "pattern", "not_pattern", "minimum", "maximum", "max_length", "json_schema")
        if all(getattr(self, t) is None for t in tests) and self.required is False:
            raise ValueError("an optional argument with no test constrains nothing")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        return self


class ArgumentRules(CapabilityConfig):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    tool: str | None = Field(None, description="Tool name glob these constraints apply to.")
    prompt: str | None = Field(None, description="Prompt name glob these constraints apply to.")
    arguments: dict[str, ArgumentConstraint] = Field(default_factory=dict)
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="A JSON Schema for the whole arguments object."
    )

    _schema_ok = field_validator("json_schema")(_checked_schema)

    @model_validator(mode="after")
    def _target(self) -> ArgumentRules:
        if (self.tool is None) == (self.prompt is None):
            raise ValueError("give exactly one of tool, prompt")
        if not self.arguments and self.json_schema is None:
            raise ValueError("give arguments, schema or both")
        return self


class AccessRule(CapabilityConfig):
    name: str
    effect: Literal["allow", "deny"] = "allow"
    who: Who = Field(default_factory=Who)
    tools: list[str] = Field(default_factory=list, description="Tool name globs; [] grants no tool, ['*'] every tool.")
    resources: list[str] = Field(default_factory=list, description="Resource URI globs (templates: their uriTemplate).")
    prompts: list[str] = Field(default_factory=list, description="Prompt name globs.")
    constraints: list[ArgumentRules] = Field(default_factory=list, description="Allow rules only.")

    @model_validator(mode="after")
    def _shape(self) -> AccessRule:
        if not (self.tools or self.resources or self.prompts):
            raise ValueError("a rule must name tools, resources or prompts")
        if self.effect == "deny" and self.constraints:
            raise ValueError("deny rules take no argument constraints: they refuse the target outright")
        return self


def validate_rules(rules: list[AccessRule]) -> list[AccessRule]:
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError("rule names must be unique")
    return rules


# -- compiled -------------------------------------------------------------------


class _Argument:
    __slots__ = ("max_length", "maximum", "minimum", "name", "not_pattern", "one_of", "pattern", "required", "schema")

    def __init__(self, name: str, c: ArgumentConstraint):
        self.name, self.required = name, c.required
        self.one_of = c.one_of
        self.pattern = re.compile(c.pattern) if c.pattern is not None else None
        self.not_pattern = re.compile(c.not_pattern) if c.not_pattern is not None else None
        self.minimum, self.maximum, self.max_length = c.minimum, c.maximum, c.max_length
        self.schema = _schema_validator(c.json_schema) if c.json_schema is not None else None

    def failure(self, value: Any) -> str | None:
        """Why ``value`` fails (names the test, never the value), or None."""
        if self.one_of is not None and not any(_same(value, option) for option in self.one_of):
            return "not one of the allowed values"
        if self.pattern is not None or self.not_pattern is not None:
            if not isinstance(value, str):
                return "not a string"
            if self.pattern is not None and not self.pattern.fullmatch(value):
                return "does not match the allowed pattern"
            if self.not_pattern is not None and self.not_pattern.search(value):
                return "matches a forbidden pattern"
        if self.minimum is not None or self.maximum is not None:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return "not a number"
            if self.minimum is not None and value < self.minimum:
                return "below the minimum"
            if self.maximum is not None and value > self.maximum:
                return "above the maximum"
        if self.max_length is not None:
            if not isinstance(value, (str, list)):
                return "has no length"
            if len(value) > self.max_length:
                return "too long"
        if self.schema is not None:
            error = next(iter(self.schema.iter_errors(value)), None)
            if error is not None:
                return f"violates its schema ({error.validator})"
        return None


def _same(value: Any, expected: Any) -> bool:
    # True == 1 in Python; not here.
    if isinstance(value, bool) or isinstance(expected, bool):
        return isinstance(value, bool) and isinstance(expected, bool) and value is expected
    return bool(value == expected)


class _Constraints:
    __slots__ = ("arguments", "kind", "schema", "target")

    def __init__(self, c: ArgumentRules):
        self.kind = "tool" if c.tool is not None else "prompt"
        self.target = compile_glob(c.tool if c.tool is not None else c.prompt or "")  # the model requires one
        self.arguments = [_Argument(name, a) for name, a in c.arguments.items()]
        self.schema = _schema_validator(c.json_schema) if c.json_schema is not None else None

    def applies(self, kind: str, name: str) -> bool:
        return kind == self.kind and self.target.fullmatch(name) is not None

    def failure(self, arguments: Mapping[str, Any]) -> tuple[str, str | None] | None:
        if self.schema is not None:
            error = next(iter(self.schema.iter_errors(dict(arguments))), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(arguments)"
                return f"arguments violate the schema at {where} ({error.validator})", None
        for arg in self.arguments:
            if arg.name not in arguments:
                if arg.required:
                    return f"required argument {arg.name} missing", arg.name
                continue
            why = arg.failure(arguments[arg.name])
            if why is not None:
                return f"argument {arg.name} {why}", arg.name
        return None


class _Rule:
    __slots__ = ("allow", "constraints", "name", "targets", "who")

    def __init__(self, rule: AccessRule):
        self.name, self.allow = rule.name, rule.effect == "allow"
        self.who = WhoMatcher(rule.who)
        self.targets = {
            "tool": compile_globs(rule.tools),
            "resource": compile_globs(rule.resources),
            "prompt": compile_globs(rule.prompts),
        }
        self.constraints = [_Constraints(c) for c in rule.constraints]

    def covers(self, kind: str, name: str) -> bool:
        globs = self.targets[kind]
        return globs is not None and globs.fullmatch(name) is not None


class AccessPolicy:
    def __init__(self, rules: list[AccessRule]):
        compiled = [_Rule(r) for r in rules]
        self._deny = [r for r in compiled if not r.allow]
        self._allow = [r for r in compiled if r.allow]

    def decide(self, identity: Identity, kind: str, name: str, arguments: Any = NOT_GIVEN) -> Decision:
        """May ``identity`` use ``kind`` ``name`` (with ``arguments``, a dict,
        or NOT_GIVEN to ask whether it may use it at all)?"""
        for rule in self._deny:
            if rule.covers(kind, name) and rule.who.matches(identity):
                return Decision(False, f"deny rule {rule.name}", rule.name)
        matching = [r for r in self._allow if r.covers(kind, name) and r.who.matches(identity)]
        if not matching:
            return Decision(False, f"no allow rule for {kind} {name}")
        if arguments is NOT_GIVEN:
            return Decision(True, f"allow rule {matching[0].name}", matching[0].name)
        first_failure: Decision | None = None
        for rule in matching:
            failure = None
            for constraints in rule.constraints:
                if constraints.applies(kind, name):
                    failure = constraints.failure(arguments)
                    if failure is not None:
                        break
            if failure is None:
                return Decision(True, f"allow rule {rule.name}", rule.name)
            if first_failure is None:
                first_failure = Decision(False, f"rule {rule.name}: {failure[0]}", rule.name, failure[1])
        # Every matching rule failed a constraint: the first one says why.
        return first_failure if first_failure is not None else Decision(False, f"no allow rule for {kind} {name}")
