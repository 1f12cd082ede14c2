"""``extproc policy diff OLD NEW``: what a policy change does to access.

Both revisions are loaded (directories, or ``git:REV[:PATH]`` taken out of
the repository with ``git archive``) and the same requests are sent through
each, in process, on the real services (``harness``): every request of the
test suite, and a generated matrix: each identity that appears in the
suite or in the policies' rules (roles, SPIFFE principals, anonymous) ×
each route's paths (its match, the path patterns of its rules) × methods.
A request that is allowed on one side and refused on the other is a flip.
Routes added, removed or changed and every limit and budget that changed
are listed too. Markdown for a pull-request comment, or JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from extproc.policy.loader import PolicyLoadError, validate_policy_dir
from extproc.policy.model import PolicySet
from extproc.policytools.cases import IdentitySpec, LocatedCase, RequestSpec, load_cases
from extproc.policytools.harness import Outcome, Session
from extproc.policytools.keys import TestKeys

DEFAULT_GIT_PATH = "policies"
_MATRIX_METHODS = ("GET", "POST", "DELETE")


# -- the two sides -----------------------------------------------------------


def materialize(spec: str, workdir: Path) -> Path:
    """A directory holding the policy ``spec`` names: itself, or the
    ``git:REV[:PATH]`` tree extracted under ``workdir``."""
    if not spec.startswith("git:"):
        return Path(spec)
    rev, _, path = spec[4:].partition(":")
    path = path or DEFAULT_GIT_PATH
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if not top:
        raise ValueError(f"{spec}: not inside a git repository")
    prefix = subprocess.run(
        ["git", "rev-parse", "--show-prefix"], capture_output=True, text=True, check=False
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", top, "archive", "--format=tar", rev, "--", prefix + path], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise ValueError(f"{spec}: {archive.stderr.decode(errors='replace').strip()}")
    target = workdir / re.sub(r"[^A-Za-z0-9_.-]", "_", spec)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / prefix / path


# -- the requests ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """One request sent to both sides: a test case, or a matrix cell."""

    label: str  # "GET /api/x"
    who: str  # "roles=reader", "anonymous", ...
    source: str  # "case api.yaml:12 'readers read'" or "matrix"
    request: RequestSpec
    repeat: int = 1


def _example_path(pattern: str) -> str | None:
    """A concrete path a glob or prefix stands for: /api/** -> /api/x."""
    if not pattern.startswith("/"):
        return None
    path = re.sub(r"\{[^}]*\}", "x", pattern).replace("**", "x").replace("*", "x")
    return path + "x" if path.endswith("/") else path


def _walk(value: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a config dump."""
    found: list[Any] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                found.append(v)
            found.extend(_walk(v, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(_walk(item, key))
    return found


def _strings(values: list[Any]) -> set[str]:
    out: set[str] = set()
    for value in values:
        if isinstance(value, str):
            out.add(value)
        elif isinstance(value, list):
            out.update(v for v in value if isinstance(v, str))
    return out


def _policy_vocabulary(policy: PolicySet) -> tuple[set[str], set[str], dict[str, set[str]], dict[str, set[str]]]:
    """Roles and principals the rules name; per route, paths and methods."""
    roles: set[str] = set()
    principals: set[str] = set()
    paths: dict[str, set[str]] = {}
    methods: dict[str, set[str]] = {}
    for name, route in policy.routes.items():
        route_paths, route_methods = paths.setdefault(name, set()), methods.setdefault(name, set())
        for cap in route.capabilities:
            dump = cap.config.model_dump() if cap.config is not None else {}
            roles |= _strings(_walk(dump, "roles"))
            principals |= _strings(_walk(dump, "principals"))
            if cap.name == "rbac":
                for key in ("paths", "except_paths"):
                    route_paths |= {p for p in map(_example_path, _strings(_walk(dump, key))) if p}
                route_methods |= {m for m in _strings(_walk(dump, "methods")) if m.isupper()}
    return roles, principals, paths, methods


def _route_paths(directory: Path, policy: PolicySet) -> dict[str, tuple[set[str], set[str]]]:
    """Per route: example paths and methods of its match (read from the files)."""
    import yaml

    out: dict[str, tuple[set[str], set[str]]] = {}
    for file in policy.files:
        try:
            data = yaml.safe_load(Path(file).read_text())
        except (OSError, yaml.YAMLError):
            continue
        for route in data.get("routes", []) if isinstance(data, dict) else []:
            if not isinstance(route, dict) or not isinstance(route.get("match"), dict):
                continue
            match = route["match"]
            paths = {p for p in (_example_path(str(match.get("path_prefix", ""))), match.get("path_exact")) if p}
            out[str(route.get("name"))] = ({str(p) for p in paths}, {str(m) for m in match.get("methods", [])})
    return out


def _identity_label(identity: IdentitySpec | None) -> str:
    if identity is None:
        return "anonymous"
    if identity.claims is not None:
        parts = []
        for key in ("sub", "roles", "agent_id"):
            value = identity.claims.get(key)
            if value:
                parts.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
        return " ".join(parts) or "token"
    if identity.principal:
        return f"principal={identity.principal}"
    if identity.api_key:
        return "api key"
    return "token"


def probes(
    old: tuple[Path, PolicySet], new: tuple[Path, PolicySet], cases: list[LocatedCase]
) -> tuple[list[Probe], list[Probe]]:
    """The test-suite probes and the generated matrix."""
    suite = [
        Probe(
            f"{c.case.request.method} {c.case.request.path}",
            _identity_label(c.case.request.identity),
            f"case {Path(c.file).name}:{c.line} {c.case.name!r}",
            c.case.request,
            c.case.repeat,
        )
        for c in cases
    ]
    roles: set[str] = set()
    principals: set[str] = set()
    route_paths: dict[str, set[str]] = {}
    route_methods: dict[str, set[str]] = {}
    for directory, policy in (old, new):
        r, p, paths, methods = _policy_vocabulary(policy)
        roles |= r
        principals |= p
        for name, (match_paths, match_methods) in _route_paths(directory, policy).items():
            route_paths.setdefault(name, set()).update(match_paths)
            route_methods.setdefault(name, set()).update(match_methods)
        for name in paths:
            route_paths.setdefault(name, set()).update(paths[name])
            route_methods.setdefault(name, set()).update(methods[name])
    for c in cases:
        identity = c.case.request.identity
        if identity is not None and identity.claims is not None:
            roles |= _strings([identity.claims.get("roles")])
        if identity is not None and identity.principal:
            principals.add(identity.principal)
    identities: list[IdentitySpec | None] = [None]
    identities += [IdentitySpec(claims={"sub": f"{role}-user", "roles": [role]}) for role in sorted(roles)]
    identities += [
        IdentitySpec(principal=p.replace("**", "x").replace("*", "x"))
        for p in sorted(principals)
        if p.startswith("spiffe://")
    ]
    matrix: list[Probe] = []
    for name in sorted(route_paths):
        tried = sorted(set(_MATRIX_METHODS) | route_methods.get(name, set()))
        for path in sorted(route_paths[name]):
            for method in tried:
                for identity in identities:
                    request = RequestSpec(method=method, path=path, identity=identity)
                    matrix.append(Probe(f"{method} {path}", _identity_label(identity), "matrix", request))
    return suite, matrix


# -- evaluating --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    status: int
    code: str | None
    decided_by: str | None

    @classmethod
    def of(cls, outcome: Outcome) -> Verdict:
        allowed = outcome.record.decision == "allow" if outcome.record is not None else outcome.allowed
        return cls(allowed, outcome.status, outcome.code, outcome.decided_by)

    def __str__(self) -> str:
        if self.allowed:
            return f"allowed ({self.status})"
        by = f", {self.decided_by}" if self.decided_by else ""
        return f"refused {self.status} {self.code or ''}{by}".rstrip()


async def _evaluate(directory: Path, keys: TestKeys, suite: list[Probe], matrix: list[Probe]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for probe in suite:  # each case on fresh counters, as `policy test` runs it
        session = Session(directory, keys)
        try:
            outcome: Outcome | None = None
            for _ in range(probe.repeat):
                outcome = await session.send(probe.request)
            assert outcome is not None
            verdicts.append(Verdict.of(outcome))
        finally:
            await session.aclose()
    # The matrix: one session per identity (its own quota counters).
    by_identity: dict[str, list[int]] = {}
    for index, probe in enumerate(matrix):
        by_identity.setdefault(probe.who, []).append(index)
    matrix_verdicts: dict[int, Verdict] = {}
    for indexes in by_identity.values():
        session = Session(directory, keys)
        try:
            for index in indexes:
                matrix_verdicts[index] = Verdict.of(await session.send(matrix[index].request))
        finally:
            await session.aclose()
    verdicts.extend(matrix_verdicts[i] for i in range(len(matrix)))
    return verdicts


# -- comparing ---------------------------------------------------------------


def _route_specs(policy: PolicySet) -> dict[str, dict[str, Any]]:
    out = {}
    for name, route in policy.routes.items():
        out[name] = {
            f"{cap.name}#{index}": {
                "mode": cap.mode.value,
                "config": cap.config.model_dump(mode="json") if cap.config is not None else {},
            }
            for index, cap in enumerate(route.capabilities)
        }
    return out


def _limits(policy: PolicySet) -> dict[str, str]:
    """ "route/capability/name" -> the limit or budget, as compact JSON."""
    out: dict[str, str] = {}
    for name, route in policy.routes.items():
        for cap in route.capabilities:
            dump = cap.config.model_dump(mode="json", exclude_defaults=True) if cap.config is not None else {}
            for key in ("limits", "budgets"):
                for entry in dump.get(key, []) if isinstance(dump.get(key), list) else []:
                    if isinstance(entry, dict) and "name" in entry:
                        shown = {k: v for k, v in entry.items() if k != "name"}
                        out[f"{name}/{cap.name}/{entry['name']}"] = json.dumps(shown, separators=(", ", ": "))
    return out


@dataclass(slots=True)
class PolicyDiff:
    old: str
    new: str
    old_revision: str
    new_revision: str
    routes_added: list[str] = field(default_factory=list)
    routes_removed: list[str] = field(default_factory=list)
    routes_changed: dict[str, list[str]] = field(default_factory=dict)  # route -> capabilities changed
    limits: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    flips: list[tuple[Probe, Verdict, Verdict]] = field(default_factory=list)
    changed: list[tuple[Probe, Verdict, Verdict]] = field(default_factory=list)  # refused both ways, differently
    evaluated: list[tuple[Probe, Verdict, Verdict]] = field(default_factory=list)
    suite_size: int = 0

    @property
    def any_change(self) -> bool:
        return bool(self.routes_added or self.routes_removed or self.routes_changed or self.limits or self.flips)

    def as_dict(self) -> dict[str, Any]:
        def row(item: tuple[Probe, Verdict, Verdict]) -> dict[str, Any]:
            probe, before, after = item
            return {
                "request": probe.label,
                "identity": probe.who,
                "source": probe.source,
                "before": {"allowed": before.allowed, "status": before.status, "code": before.code},
                "after": {"allowed": after.allowed, "status": after.status, "code": after.code},
            }

        return {
            "old": {"source": self.old, "revision": self.old_revision},
            "new": {"source": self.new, "revision": self.new_revision},
            "routes": {"added": self.routes_added, "removed": self.routes_removed, "changed": self.routes_changed},
            "limits": [{"limit": k, "before": b, "after": a} for k, b, a in self.limits],
            "flips": [row(f) for f in self.flips],
            "status_changes": [row(c) for c in self.changed],
            "evaluated": [row(e) for e in self.evaluated],
        }


async def compute(old_spec: str, new_spec: str, tests: str | None, workdir: Path) -> PolicyDiff:
    old_dir, new_dir = materialize(old_spec, workdir), materialize(new_spec, workdir)
    old_policy, new_policy = validate_policy_dir(old_dir), validate_policy_dir(new_dir)
    result = PolicyDiff(old_spec, new_spec, old_policy.revision, new_policy.revision)
    result.routes_added = sorted(set(new_policy.routes) - set(old_policy.routes))
    result.routes_removed = sorted(set(old_policy.routes) - set(new_policy.routes))
    old_specs, new_specs = _route_specs(old_policy), _route_specs(new_policy)
    for name in sorted(set(old_specs) & set(new_specs)):
        before, after = old_specs[name], new_specs[name]
        changed = sorted({k.split("#")[0] for k in set(before) | set(after) if before.get(k) != after.get(k)})
        if changed:
            result.routes_changed[name] = changed
    old_limits, new_limits = _limits(old_policy), _limits(new_policy)
    for key in sorted(set(old_limits) | set(new_limits)):
        if old_limits.get(key) != new_limits.get(key):
            result.limits.append((key, old_limits.get(key), new_limits.get(key)))

    cases: list[LocatedCase] = []
    location = Path(tests) if tests else new_dir / "tests"
    if location.exists():
        cases = load_cases(location)
    suite, matrix = probes((old_dir, old_policy), (new_dir, new_policy), cases)
    result.suite_size = len(suite)
    with TestKeys() as keys:
        old_verdicts = await _evaluate(old_dir, keys, suite, matrix)
        new_verdicts = await _evaluate(new_dir, keys, suite, matrix)
    for probe, b, a in zip([*suite, *matrix], old_verdicts, new_verdicts, strict=True):
        result.evaluated.append((probe, b, a))
        if b.allowed != a.allowed:
            result.flips.append((probe, b, a))
        elif (b.status, b.code) != (a.status, a.code):
            result.changed.append((probe, b, a))
    return result


# -- reporting ---------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(diff: PolicyDiff) -> str:
    lines = [
        f"### Policy change: `{diff.old}` ({diff.old_revision}) → `{diff.new}` ({diff.new_revision})",
        "",
    ]
    granted = [f for f in diff.flips if f[2].allowed]
    revoked = [f for f in diff.flips if not f[2].allowed]
    lines.append(
        f"**{len(revoked)} request(s) lose access, {len(granted)} gain access** "
        f"({len(diff.evaluated)} evaluated on both revisions: {diff.suite_size} from the test suite, "
        f"{len(diff.evaluated) - diff.suite_size} generated)."
    )
    lines.append("")
    if diff.routes_added or diff.routes_removed or diff.routes_changed:
        lines.append("#### Routes")
        lines += [f"- added: `{r}`" for r in diff.routes_added]
        lines += [f"- removed: `{r}`" for r in diff.routes_removed]
        lines += [f"- changed: `{r}` ({', '.join(c)})" for r, c in diff.routes_changed.items()]
        lines.append("")
    if diff.flips:
        lines += ["#### Access flips", "", "| request | identity | before | after | from |", "|---|---|---|---|---|"]
        for probe, before, after in diff.flips:
            mark = "🔓" if after.allowed else "🔒"
            lines.append(
                f"| {mark} `{_cell(probe.label)}` | {_cell(probe.who)} | {before} | {after} | {_cell(probe.source)} |"
            )
        lines.append("")
    if diff.changed:
        lines += ["<details><summary>Refusals that changed status or code</summary>", ""]
        lines += ["| request | identity | before | after |", "|---|---|---|---|"]
        for probe, before, after in diff.changed:
            lines.append(f"| `{_cell(probe.label)}` | {_cell(probe.who)} | {before} | {after} |")
        lines += ["", "</details>", ""]
    if diff.limits:
        lines += ["#### Limits and budgets", "", "| limit | before | after |", "|---|---|---|"]
        for key, before_limit, after_limit in diff.limits:
            lines.append(f"| `{key}` | {_cell(before_limit or '—')} | {_cell(after_limit or '—')} |")
        lines.append("")
    if not diff.any_change and not diff.changed:
        lines.append("No change to routes, access or limits.")
    return "\n".join(lines).rstrip() + "\n"


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """0 (or, with --exit-code, 0 only when nothing changed; 1 otherwise);
    2: a side does not load."""
    try:
        with tempfile.TemporaryDirectory(prefix="extproc-policy-diff-") as workdir:
            diff = asyncio.run(compute(args.old, args.new, args.tests, Path(workdir)))
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=err)
        return 2
    except ValueError as exc:
        print(f"extproc policy diff: {exc}", file=err)
        return 2
    if args.format == "json":
        print(json.dumps(diff.as_dict(), indent=2), file=out)
    else:
        print(markdown(diff), file=out, end="")
    return 1 if args.exit_code and diff.any_change else 0
