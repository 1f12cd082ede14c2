"""Load a policy directory into a ``PolicySet``, or explain precisely why not.

Every error names the file, the line and the field (``routes[0].capabilities[1]
.config.deny``), so a reviewer can fix a policy without reading our code.
YAML is composed into nodes first so that pydantic's error locations can be
mapped back to source lines.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from extproc.capabilities import REGISTRY
from extproc.capabilities.base import Capability
from extproc.policy.model import CompiledRoute, PolicySet, compile_match
from extproc.policy.schema import Defaults, PolicyFile
from extproc.runtime import DEFAULT_RUNTIME, Runtime

log = logging.getLogger("extproc.policy")
POLICY_SUFFIXES = (".yaml", ".yml")
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class PolicyError:
    file: str
    line: int  # 0: about the file or directory as a whole
    field: str
    message: str
    column: int = 0

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class PolicyLoadError(Exception):
    def __init__(self, errors: list[PolicyError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Locator:
    """Maps a pydantic error location to the line of the YAML node it names."""

    def __init__(self, root: yaml.Node | None):
        self.root = root

    def line(self, loc: Loc) -> int:
        node = self.root
        if node is None:
            return 1
        line: int = node.start_mark.line + 1
        for part in loc:
            child = None
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if key_node.value == str(part):
                        # An unknown key is best reported at the key itself.
                        line = key_node.start_mark.line + 1
                        child = value_node
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                child = node.value[part]
            if child is None:
                break
            node = child
            line = node.start_mark.line + 1
        return line


def _duplicate_keys(node: yaml.Node | None, file: str) -> list[PolicyError]:
    # PyYAML silently keeps the last of two equal keys: in a policy that could
    # quietly drop a deny rule, so it is an error.
    errors: list[PolicyError] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in current.value:
                if key_node.value in seen:
                    errors.append(PolicyError(file, key_node.start_mark.line + 1, str(key_node.value), "duplicate key"))
                seen.add(key_node.value)
                stack.append(value_node)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return errors


def validation_errors(exc: ValidationError, file: str, locator: _Locator, prefix: Loc = ()) -> list[PolicyError]:
    errors = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        errors.append(PolicyError(file, locator.line(loc), format_loc(loc), message))
    return errors


def _yaml_syntax_error(exc: yaml.MarkedYAMLError, file: str) -> PolicyError:
    """One line, located where the broken construct starts (the unclosed
    ``[``, ``{`` or quote: PyYAML's context mark), also naming where the
    parser gave up (its problem mark), which may be many lines further."""
    start, stop = exc.context_mark, exc.problem_mark
    where = start or stop
    message = exc.problem or "syntax error"
    if stop is not None and stop is not where:
        message += f" at line {stop.line + 1} column {stop.column + 1}"
    if exc.context and start is not None:
        message = f"{exc.context} (starting here): {message}"
    if "'\\t'" in message:
        message += " (YAML indentation must use spaces, not tabs)"
    return PolicyError(
        file,
        where.line + 1 if where else 1,
        "",
        f"invalid YAML: {' '.join(message.split())}",
        where.column + 1 if where else 0,
    )


def parse_yaml(text: str, file: str) -> tuple[Any, _Locator, list[PolicyError]]:
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        return None, _Locator(None), [_yaml_syntax_error(exc, file)]
    except yaml.YAMLError as exc:
        return None, _Locator(None), [PolicyError(file, 1, "", f"invalid YAML: {exc}")]
    return data, _Locator(root), _duplicate_keys(root, file)


# Where each built capability was declared, for errors its start() raises.
Placement = dict[int, tuple[str, int, str]]


def _compile_file(
    text: str, file: str, runtime: Runtime, placed: Placement | None = None
) -> tuple[PolicyFile | None, list[CompiledRoute], list[PolicyError]]:
    data, locator, errors = parse_yaml(text, file)
    if errors:
        return None, [], errors
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [], [PolicyError(file, 1, "", "a policy file must be a mapping with a 'routes' list")]
    try:
        spec = PolicyFile.model_validate(data)
    except ValidationError as exc:
        return None, [], validation_errors(exc, file, locator)

    routes: list[CompiledRoute] = []
    for r_index, route in enumerate(spec.routes):
        capabilities = []
        for c_index, cap_spec in enumerate(route.capabilities):
            loc: Loc = ("routes", r_index, "capabilities", c_index)
            cls = REGISTRY.get(cap_spec.type)
            if cls is None:
                known = ", ".join(sorted(REGISTRY))
                errors.append(
                    PolicyError(
                        file,
                        locator.line((*loc, "type")),
                        format_loc((*loc, "type")),
                        f"unknown capability {cap_spec.type!r} (known: {known})",
                    )
                )
                continue
            try:
                config = cls.Config.model_validate(cap_spec.config)
            except ValidationError as exc:
                errors.extend(validation_errors(exc, file, locator, (*loc, "config")))
                continue
            try:
                capability = cls(config, cap_spec.mode, runtime)
            except (ValueError, OSError) as exc:
                errors.append(PolicyError(file, locator.line(loc), format_loc(loc), str(exc)))
                continue
            capabilities.append(capability)
            if placed is not None:
                placed[id(capability)] = (file, locator.line(loc), format_loc(loc))
        routes.append(
            CompiledRoute(
                name=route.name,
                source=f"{file}:{locator.line(('routes', r_index))}",
                capabilities=tuple(capabilities),
                matcher=compile_match(route.match) if route.match is not None else None,
            )
        )
    return spec, routes, errors


def policy_files(directory: Path) -> list[Path]:
    if directory.is_file():
        return [directory]
    return sorted(p for p in directory.iterdir() if p.suffix in POLICY_SUFFIXES and p.is_file())


def load_policy_dir(
    directory: str | Path, runtime: Runtime = DEFAULT_RUNTIME, copied_from: str | Path | None = None
) -> PolicySet:
    """``copied_from``: ``directory`` is a copy of that one (see
    ``Runtime.live_policy_dir``)."""
    """Load every ``*.yaml``/``*.yml`` in ``directory`` (sorted by name; route
    match order follows). Raises ``PolicyLoadError`` with every error found.

    The revision holds the ``runtime`` resources it uses until it is passed
    to ``discard_policy``; a load that fails releases what it made."""
    directory = Path(directory)
    if not directory.exists():
        raise PolicyLoadError([PolicyError(str(directory), 0, "", "no such file or directory")])
    built: list[CompiledRoute] = []
    with runtime.collecting() as resources:
        try:
            policy = _load(directory, runtime, built, Path(copied_from) if copied_from else None)
        except BaseException:
            _close_capabilities(built)
            runtime.drop_unheld(resources)
            raise
    runtime.hold(resources)
    policy.resources = frozenset(resources)
    return policy


def _load(directory: Path, runtime: Runtime, built: list[CompiledRoute], copied_from: Path | None) -> PolicySet:
    files = policy_files(directory)
    runtime.policy_dir = directory if directory.is_dir() else directory.parent
    runtime.live_policy_dir = (
        None if copied_from is None else copied_from if copied_from.is_dir() else copied_from.parent
    )
    runtime.referenced_files = set()
    digest = hashlib.sha256()
    errors: list[PolicyError] = []
    routes: dict[str, CompiledRoute] = {}
    unmatched_allow = allow_empty = allow_route_removal = False
    max_route_removal = Defaults().max_route_removal
    defaults_from: str | None = None
    placed: Placement = {}

    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw + b"\0")
        name = str(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append(PolicyError(name, raw[: exc.start].count(b"\n") + 1, "", "file is not valid UTF-8"))
            continue
        spec, file_routes, file_errors = _compile_file(text, name, runtime, placed)
        built.extend(file_routes)
        errors.extend(file_errors)
        if spec is None:
            continue
        allow_empty |= spec.allow_empty
        allow_route_removal |= spec.allow_route_removal
        if spec.defaults is not None:
            if defaults_from is not None:
                errors.append(PolicyError(name, 1, "defaults", f"defaults are already set in {defaults_from}"))
            defaults_from = name
            unmatched_allow = spec.defaults.unmatched == "allow"
            max_route_removal = spec.defaults.max_route_removal
        for route in file_routes:
            if route.name in routes:
                first = routes[route.name].source
                line = int(route.source.rsplit(":", 1)[1])
                errors.append(
                    PolicyError(name, line, "routes.name", f"route {route.name!r} is already defined at {first}")
                )
                continue
            routes[route.name] = route

    # I/O only once everything validated: a policy with a typo fetches nothing.
    if not errors:
        errors.extend(_start_capabilities(routes.values(), placed))

    # Data a policy refers to (key files...) is part of its revision.
    # Referenced files are named relative to the policy directory, so one
    # policy has one revision wherever it sits (bundles, ConfigMap mounts).
    roots = [d.resolve() for d in (runtime.policy_dir, runtime.live_policy_dir) if d is not None]
    for path in sorted(runtime.referenced_files):
        name = next((path.relative_to(r).as_posix() for r in roots if path.is_relative_to(r)), str(path))
        try:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:
            pass  # the capability that refers to it has reported the error

    if not routes and not errors and not allow_empty:
        # Serving no route denies (or allows) everything: far more often a
        # wrong path or a half-synced directory than the intent.
        found = f"{len(files)} policy file(s), none declaring a route" if files else "no *.yaml or *.yml file"
        errors.append(
            PolicyError(str(directory), 0, "", f"no routes ({found}); a policy that means it sets 'allow_empty: true'")
        )
    if errors:
        raise PolicyLoadError(errors)
    return PolicySet(
        revision=digest.hexdigest()[:12],
        routes=routes,
        unmatched_allow=unmatched_allow,
        files=tuple(str(p) for p in files),
        max_route_removal=max_route_removal,
        allow_route_removal=allow_route_removal,
    )


def route_removal_error(live: PolicySet, candidate: PolicySet, directory: str | Path) -> PolicyError | None:
    """Why ``candidate`` may not replace ``live``, if it removes more of the
    live routes than the live policy's ``defaults.max_route_removal`` allows
    without declaring ``allow_route_removal: true``."""
    if candidate.allow_route_removal or not live.routes:
        return None
    removed = sorted(set(live.routes) - set(candidate.routes))
    if len(removed) <= live.max_route_removal * len(live.routes):
        return None
    shown = ", ".join(removed[:5]) + (f" and {len(removed) - 5} more" if len(removed) > 5 else "")
    return PolicyError(
        str(directory),
        0,
        "",
        (
            f"reload refused: it removes {len(removed)} of {len(live.routes)} routes ({shown}), more than "
            f"max_route_removal {live.max_route_removal:g}; set 'allow_route_removal: true' if that is intended"
        ),
    )


def discard_policy(policy: PolicySet, runtime: Runtime = DEFAULT_RUNTIME) -> None:
    """A revision that no longer serves (replaced, or refused after loading):
    close its capabilities and release its runtime resources. Requests that
    started on it keep working with what they hold."""
    _close_capabilities(policy.routes.values())
    runtime.release(policy.resources)
    policy.resources = frozenset()  # released once, however often this is called


def validate_policy_dir(directory: str | Path, copied_from: str | Path | None = None) -> PolicySet:
    """Load ``directory`` to check it, without serving it: built in a
    throwaway runtime whose resources (JWKS polling...) are released before
    returning. Raises ``PolicyLoadError``, one line per error."""
    runtime = Runtime(quota_backend="memory")
    policy = load_policy_dir(directory, runtime, copied_from)
    discard_policy(policy, runtime)
    return policy


def _start_capabilities(routes: Iterable[CompiledRoute], placed: Placement) -> list[PolicyError]:
    """Run every capability's ``start`` before the revision serves; what one
    raises (a missing key file, an unreadable JWKS) fails the load at the
    capability's place in the policy, as a constructor's error does.

    The loader is synchronous: it runs in offline validation and inside a
    reload on the server's event loop alike, so it cannot wait on the loop.
    A ``start`` therefore runs to completion without suspending (bounded
    local reads directly, network I/O handed to a background task); one that
    awaits is a bug in that capability and fails the load with that error."""
    errors: list[PolicyError] = []
    for route in routes:
        for capability in route.capabilities:
            file, line, field = placed.get(id(capability), (route.source, 0, ""))
            try:
                start_capability(capability)
            except (ValueError, OSError) as exc:
                errors.append(PolicyError(file, line, field, str(exc)))
    return errors


def start_capability(capability: Capability[Any]) -> None:
    """Run ``capability.start()`` to completion without an event loop (see
    ``_start_capabilities``); raises what it raises."""
    start = capability.start()
    try:
        start.send(None)
    except StopIteration:
        return
    start.close()
    raise ValueError(f"capability {capability.name}: start() waited on the event loop; it must hand waiting to a task")


def _close_capabilities(routes: Iterable[CompiledRoute]) -> None:
    for route in routes:
        for capability in route.capabilities:
            try:
                capability.close()
            except Exception:
                log.exception("closing capability %s failed", capability.name)
