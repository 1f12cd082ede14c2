"""The suite's markers and the fixtures every directory shares.

Three kinds of test, told apart by what they need:

* ``e2e``: a real Envoy (everything under tests/e2e, and the few tests
  elsewhere that run the Envoy binary, marked by hand);
* ``integration``: another process or a shared machine resource: real Redis,
  the processor or the CLI in a child process, supervisors and their sockets,
  process pools, fresh interpreters, timing assertions that need a quiet CPU;
* unit: everything else, one process (in-process loopback servers allowed),
  run by ``make unit``.

Markers are set here, before ``-m`` selects: by directory, and by the
fixtures a test uses (the Redis and gateway fixtures start processes). What
that cannot see is marked in the test file; tests/process_guard.py fails any
unmarked test that starts a process, so a miss cannot hide in the fast suite.

Hypothesis runs under the ``ci`` profile, or ``unit`` (fewer examples) when
the run deselects the integration tests: see tests/profiles.py.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import profiles
from tests.process_guard import no_child_processes
from tests.redis_server import RedisClusterServers, RedisServer

TESTS = Path(__file__).resolve().parent
E2E_DIR = TESTS / "e2e"

# Fixtures that start processes: a test using one, directly or through
# another fixture, is an integration test.
PROCESS_FIXTURES = frozenset({"redis_server", "redis_cluster", "_redis_cluster_session"})
ENVOY_FIXTURES = frozenset({"gateway", "gateway_factory"})
SUITE_MARKERS = ("e2e", "integration")
_REFUSED = pytest.StashKey[list[str]]()  # a unit test's refused process starts


def _excludes(config: pytest.Config, marker: str) -> bool:
    """Whether ``-m`` rules out every test carrying ``marker`` (a plain
    conjunction such as ``not e2e and not integration``)."""
    markexpr = config.getoption("markexpr", "") or ""
    return f"not {marker}" in markexpr and " or " not in markexpr


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("hypothesis_profile", None):
        return  # asked for by name: the hypothesis plugin loads it
    settings.load_profile(profiles.UNIT if _excludes(config, "integration") else profiles.CI)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Every test under tests/e2e is marked e2e: a run that deselects them
    # need not import them (the OpenAI and A2A SDKs take seconds).
    if collection_path == E2E_DIR and _excludes(config, "e2e"):
        return True
    return None


@pytest.hookimpl(tryfirst=True)  # before -m deselects on the markers added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.is_relative_to(E2E_DIR) or fixtures & ENVOY_FIXTURES:
            item.add_marker(pytest.mark.e2e)
        if fixtures & PROCESS_FIXTURES:
            item.add_marker(pytest.mark.integration)


def is_unit(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(name) for name in SUITE_MARKERS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    if not is_unit(item):
        return (yield)
    with no_child_processes(item.nodeid) as refused:
        item.stash[_REFUSED] = refused
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    refused = item.stash.get(_REFUSED, [])
    if refused and call.when == "call" and report.passed:
        # The test swallowed the refusal (a broad except): still a miss.
        report.outcome = "failed"
        report.longrepr = "\n".join(refused)
    return report


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh standalone Redis for one test (it may kill or restart it)."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def _redis_cluster_session() -> Iterator[RedisClusterServers]:
    # Assembling a cluster takes seconds: one per test session, emptied per test.
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_redis_cluster_session: RedisClusterServers) -> RedisClusterServers:
    for node in _redis_cluster_session.nodes:
        with node.client() as client:
            client.flushall()
    return _redis_cluster_session
