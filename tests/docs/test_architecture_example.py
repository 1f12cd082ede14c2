"""docs/architecture.md's worked example stays true.

The document's titled code blocks (```python title="extproc/capabilities/…"```)
are extracted and run against the real code: the capability module is written
to a temporary directory that joins the ``extproc.capabilities`` package, the
registration line is checked against the real ``__init__.py``, the policy
snippet is loaded beside the shipped ``policies/`` by the real loader, and the
example's own tests run in a fresh interpreter — once as written, where they
must pass, and once with the capability's handlers emptied, where they must
fail (tests that cannot fail would prove nothing).
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest
import yaml

import extproc.capabilities
from extproc.capabilities.base import REGISTRY, Capability
from extproc.policy.loader import discard_policy, load_policy_dir
from extproc.policytools.jsonschema import policy_file_schema
from extproc.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
PACKAGE = "extproc.capabilities"
FENCE = re.compile(r'^```(?P<lang>[\w-]+) title="(?P<title>[^"]+)"\n(?P<body>.*?)^```[ \t]*$', re.M | re.S)


@dataclass(frozen=True)
class Example:
    module_name: str  # e.g. "maintenance"
    module: str  # the capability module's source
    registration: str  # the diff against extproc/capabilities/__init__.py
    policy_title: str  # e.g. "policies/maintenance.yaml"
    policy: str
    tests_title: str
    tests: str


def _extract() -> Example:
    blocks: dict[str, tuple[str, str]] = {}
    for found in FENCE.finditer(DOC.read_text()):
        title = found["title"]
        assert title not in blocks, f"{DOC.name}: two blocks titled {title!r}"
        blocks[title] = (found["lang"], found["body"])

    def one(pattern: str, lang: str) -> tuple[str, str]:
        matching = [title for title in blocks if re.fullmatch(pattern, title)]
        assert len(matching) == 1, f"{DOC.name}: expected one block titled like {pattern!r}, found {matching}"
        title = matching[0]
        assert blocks[title][0] == lang, f"{DOC.name}: block {title!r} should be ```{lang}"
        return title, blocks[title][1]

    module_title, module = one(r"extproc/capabilities/(?!__init__)\w+\.py", "python")
    _, registration = one(r"extproc/capabilities/__init__\.py", "diff")
    policy_title, policy = one(r"policies/[\w-]+\.ya?ml", "yaml")
    tests_title, tests = one(r"tests/unit/capabilities/test_\w+\.py", "python")
    return Example(Path(module_title).stem, module, registration, policy_title, policy, tests_title, tests)


EXAMPLE = _extract()


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    """The example's module alone in a directory, to be added to the package's path."""
    directory = tmp_path / "capabilities"
    directory.mkdir()
    (directory / f"{EXAMPLE.module_name}.py").write_text(EXAMPLE.module)
    return directory


@contextmanager
def registered(directory: Path) -> Iterator[ModuleType]:
    """Import the example as ``extproc.capabilities.<name>`` (which registers
    it, as its line in ``__init__.py`` would), and undo all of it afterwards."""
    package = extproc.capabilities
    qualified = f"{PACKAGE}.{EXAMPLE.module_name}"
    assert qualified not in sys.modules, f"{qualified} exists already: the example must be a new capability"
    before = dict(REGISTRY)
    package.__path__.append(str(directory))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(qualified)
    finally:
        package.__path__.remove(str(directory))
        sys.modules.pop(qualified, None)
        if hasattr(package, EXAMPLE.module_name):
            delattr(package, EXAMPLE.module_name)
        REGISTRY.clear()
        REGISTRY.update(before)


def _capability_classes(module: ModuleType) -> list[type[Capability]]:
    return [cls for cls in REGISTRY.values() if cls.__module__ == module.__name__]


def test_the_example_registers_one_new_capability(module_dir: Path) -> None:
    before = set(REGISTRY)
    with registered(module_dir) as module:
        (cls,) = _capability_classes(module)
        assert cls.name not in before
        assert cls.phases(), "the example overrides no phase handler"
        assert cls.Config.model_json_schema()["properties"], "the example's config has no fields"
    assert set(REGISTRY) == before


def test_the_registration_line_fits_the_real_init() -> None:
    """The diff's context lines are consecutive in the real file and the added
    line, inserted between them, imports the example's module."""
    lines = EXAMPLE.registration.splitlines()
    added = [line[1:] for line in lines if line.startswith("+")]
    assert [line.strip() for line in added] == [f"{EXAMPLE.module_name},"]
    assert not any(line.startswith("-") for line in lines)
    before = [line[1:] for line in lines[: lines.index("+" + added[0])]]
    after = [line[1:] for line in lines[lines.index("+" + added[0]) + 1 :]]
    init = (REPO / "extproc" / "capabilities" / "__init__.py").read_text().splitlines()
    context = before + after
    starts = [i for i in range(len(init)) if init[i : i + len(context)] == context]
    assert starts, f"the registration diff's context {context} is not in extproc/capabilities/__init__.py"
    # Kept in alphabetical order, like the real list.
    names = [line.strip().rstrip(",") for line in [*before, *added, *after]]
    assert names == sorted(names)


@pytest.mark.integration  # ruff and mypy in child processes
def test_the_module_passes_the_quality_gates(tmp_path: Path) -> None:
    """ruff (lint and format) and strict mypy, as `make lint` holds extproc/ to."""
    module = tmp_path / f"{EXAMPLE.module_name}.py"
    module.write_text(EXAMPLE.module)
    tests = tmp_path / Path(EXAMPLE.tests_title).name
    tests.write_text(EXAMPLE.tests)
    config = str(REPO / "pyproject.toml")
    commands = [
        [sys.executable, "-m", "ruff", "check", "--config", config, str(module), str(tests)],
        [sys.executable, "-m", "ruff", "format", "--check", "--diff", "--config", config, str(module), str(tests)],
        # follow-imports=silent: judge the example, not the rest of the tree.
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-error-summary", str(module)],
    ]
    for command in commands:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{' '.join(command[2:4])}:\n{done.stdout}{done.stderr}"


def test_the_policy_snippet_loads_beside_the_shipped_policies(module_dir: Path, tmp_path: Path) -> None:
    """Through the real loader, and as the shipped files are held to: the
    editor-schema line first, valid against the schema generated with the
    example registered (tests/unit/policytools/test_schema.py)."""
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    snippet = policies / Path(EXAMPLE.policy_title).name
    assert not snippet.exists(), f"{EXAMPLE.policy_title} would replace a shipped file"
    snippet.write_text(EXAMPLE.policy)
    modeline = (REPO / "policies" / "demo.yaml").read_text().splitlines()[0]
    assert EXAMPLE.policy.splitlines()[0] == modeline
    runtime = Runtime(quota_backend="memory")
    with registered(module_dir) as module:
        (cls,) = _capability_classes(module)
        validator = jsonschema.Draft202012Validator(policy_file_schema())
        assert [e.message for e in validator.iter_errors(yaml.safe_load(EXAMPLE.policy))] == []
        policy = load_policy_dir(policies, runtime)
        try:
            uses = [
                (route, [c.name for c in route.capabilities])
                for route in policy.routes.values()
                if any(isinstance(c, cls) for c in route.capabilities)
            ]
            assert uses, f"{EXAMPLE.policy_title} attaches no {cls.name} capability"
            for route, names in uses:
                priorities = [c.priority for c in route.capabilities]
                assert priorities == sorted(priorities, reverse=True), names
                assert route.source.startswith(str(snippet))
        finally:
            discard_policy(policy, runtime)


def _run_example_tests(tmp_path: Path, module_dir: Path, sabotage: bool) -> subprocess.CompletedProcess[str]:
    """The example's tests in a fresh interpreter with the project's pytest
    settings and tests/conftest.py's hooks (so a test of the example that
    started a process would fail, as in tests/unit); a conftest registers
    the module the way its line in ``__init__.py`` would. ``sabotage``: every phase handler of the example
    capability is replaced by one that lets everything through."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / Path(EXAMPLE.tests_title).name).write_text(EXAMPLE.tests)
    (run_dir / "conftest.py").write_text(
        textwrap.dedent(
            f"""\
            import extproc.capabilities
            from extproc.capabilities.base import REGISTRY, Capability
            from tests.conftest import *  # the suite's markers and process guard, as in tests/unit

            extproc.capabilities.__path__.append({str(module_dir)!r})
            from extproc.capabilities import {EXAMPLE.module_name}  # the registration line

            if {sabotage!r}:
                async def _let_through(self, ctx):
                    return None

                for cls in list(REGISTRY.values()):
                    if cls.__module__ == {EXAMPLE.module_name}.__name__:
                        for phase in cls.phases():
                            setattr(cls, f"on_{{phase.value}}", _let_through)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(REPO / "pyproject.toml"),
        "--rootdir",
        str(run_dir),
        str(run_dir),
    ]
    if sabotage:
        command.insert(-1, "-x")  # one failure is the proof
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration  # a fresh interpreter
def test_the_example_tests_pass(tmp_path: Path, module_dir: Path) -> None:
    done = _run_example_tests(tmp_path, module_dir, sabotage=False)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"\d+ passed in [\d.]+s", summary), summary  # nothing skipped, nothing xfailed


@pytest.mark.integration  # a fresh interpreter
def test_the_example_tests_fail_when_the_capability_does_nothing(tmp_path: Path, module_dir: Path) -> None:
    done = _run_example_tests(tmp_path, module_dir, sabotage=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"\d+ failed", done.stdout), done.stdout
