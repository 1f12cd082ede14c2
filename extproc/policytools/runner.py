"""``extproc policy test DIR``: run a policy's test cases, report, exit code."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from xml.etree import ElementTree as ET

from extproc.policy.loader import PolicyLoadError, validate_policy_dir
from extproc.policytools.cases import LocatedCase, load_cases
from extproc.policytools.coverage import Coverage
from extproc.policytools.expect import compare
from extproc.policytools.harness import Outcome, Session
from extproc.policytools.keys import TestKeys


@dataclass(slots=True)
class CaseResult:
    case: LocatedCase
    outcome: Outcome | None
    diff: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.diff and not self.error


@dataclass(slots=True)
class SuiteResult:
    results: list[CaseResult]
    coverage: Coverage
    revision: str

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


async def run_case(directory: Path, keys: TestKeys, case: LocatedCase) -> CaseResult:
    """One case on a fresh copy of the policy (fresh in-memory counters)."""
    started = time.perf_counter()
    session = Session(directory, keys)
    try:
        outcome: Outcome | None = None
        for _ in range(case.case.repeat):
            outcome = await session.send(case.case.request)
        assert outcome is not None  # repeat >= 1
        diff = compare(case.case.expect, outcome)
        return CaseResult(case, outcome, diff, seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001  (a case that cannot run fails; the suite goes on)
        return CaseResult(case, None, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - started)
    finally:
        await session.aclose()


async def run_suite(directory: Path, cases: list[LocatedCase]) -> SuiteResult:
    policy = validate_policy_dir(directory)
    coverage = Coverage.of(policy)
    results = []
    with TestKeys() as keys:
        for case in cases:
            result = await run_case(directory, keys, case)
            if result.outcome is not None:
                coverage.add(result.outcome)
            results.append(result)
    return SuiteResult(results, coverage, policy.revision)


def tests_location(directory: Path, tests: str | None) -> Path:
    return Path(tests) if tests else (directory if directory.is_dir() else directory.parent) / "tests"


def report(suite: SuiteResult, out: TextIO, verbose: bool = False) -> None:
    for result in suite.results:
        case = result.case
        if result.passed:
            if verbose:
                print(f"PASS {case.where} {case.case.name}", file=out)
            continue
        print(f"FAIL {case.where} {case.case.name}", file=out)
        if result.error:
            print(f"  error: {result.error}", file=out)
        for line in result.diff:
            print(f"  {line}", file=out)
    print(suite.coverage.summary(), file=out)
    for item in suite.coverage.missing():
        print(f"  not exercised: {item}", file=out)
    passed = len(suite.results) - len(suite.failed)
    print(f"{passed} passed, {len(suite.failed)} failed (policy revision {suite.revision})", file=out)


def junit(suite: SuiteResult, path: Path) -> None:
    failures = suite.failed
    root = ET.Element(
        "testsuite",
        name="extproc policy test",
        tests=str(len(suite.results)),
        failures=str(sum(1 for r in failures if not r.error)),
        errors=str(sum(1 for r in failures if r.error)),
        time=f"{sum(r.seconds for r in suite.results):.3f}",
    )
    props = ET.SubElement(root, "properties")
    ET.SubElement(props, "property", name="revision", value=suite.revision)
    ET.SubElement(props, "property", name="coverage", value=suite.coverage.summary())
    for result in suite.results:
        case = result.case
        element = ET.SubElement(
            root,
            "testcase",
            classname=Path(case.file).stem,
            name=case.case.name,
            file=case.file,
            line=str(case.line),
            time=f"{result.seconds:.3f}",
        )
        if result.error:
            ET.SubElement(element, "error", message=result.error).text = result.error
        elif result.diff:
            failure = ET.SubElement(element, "failure", message=f"{case.where}: outcome differs from expect")
            failure.text = "\n".join(result.diff)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def main(
    directory: str,
    tests: str | None,
    junit_path: str | None,
    out: TextIO,
    err: TextIO,
    verbose: bool = False,
    require_coverage: bool = False,
) -> int:
    """0: every case passed; 1: a case failed (or coverage is required and
    incomplete); 2: the policy or a case file is invalid."""
    policy_dir = Path(directory)
    try:
        cases = load_cases(tests_location(policy_dir, tests))
        suite = asyncio.run(run_suite(policy_dir, cases))
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=err)
        print(f"{len(exc.errors)} error(s)", file=err)
        return 2
    report(suite, out, verbose)
    if junit_path:
        junit(suite, Path(junit_path))
    if suite.failed:
        return 1
    if require_coverage and suite.coverage.missing():
        print("coverage required: the items above were not exercised", file=err)
        return 1
    return 0
