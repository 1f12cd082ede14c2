"""Fixtures for the whole suite: real Redis servers (see tests/redis_server.py)."""

from __future__ import annotations

import pytest

from tests.redis_server import RedisClusterServers, RedisServer


@pytest.fixture
def redis_server():
    """A fresh standalone Redis for one test (it may kill or restart it)."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def _redis_cluster_session():
    # Assembling a cluster takes seconds: one per test session, emptied per test.
    with RedisClusterServers() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(_redis_cluster_session):
    for node in _redis_cluster_session.nodes:
        with node.client() as client:
            client.flushall()
    return _redis_cluster_session
