"""What only the Redis backend does: URLs, server time, key hygiene, script
loading, timeouts, outages and recovery, cluster slots. Real servers."""

from __future__ import annotations

import asyncio
import hashlib
import logging

import pytest

from extproc.quota import BackendUnavailable, RateSpec, SlotSpec, lua, open_backend
from extproc.quota.redis_backend import RedisBackend, _split_options, redacted_url
from tests.redis_server import patient

HOUR = 3600.0
RATE = RateSpec.of(10, HOUR)


@pytest.fixture
async def make_backend():
    made: list[RedisBackend] = []

    def make(url: str) -> RedisBackend:
        made.append(RedisBackend(patient(url)))
        return made[-1]

    yield make
    for backend in made:
        await backend.aclose()


async def eventually(call, timeout: float = 5.0):
    """Retry ``call`` until it stops raising BackendUnavailable."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await call()
        except BackendUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.02)


def test_url_options_are_ours_and_the_rest_goes_to_redis_py():
    url, cluster, options = _split_options(
        "redis://user:pw@h:6380/2?timeout=20ms&connect_timeout=1s&retry_interval=2s&max_connections=8&client_name=gw"
    )
    assert url == "redis://user:pw@h:6380/2?client_name=gw" and not cluster
    assert options == {"timeout": 0.02, "connect_timeout": 1.0, "retry_interval": 2.0, "max_connections": 8}
    url, cluster, options = _split_options("rediss+cluster://h:7000")
    assert url == "rediss://h:7000" and cluster and options["timeout"] == 0.05


@pytest.mark.parametrize(
    "url", ["http://h", "redis://", "redis://h?timeout=fast", "redis://h?max_connections=0", "memcached://h"]
)
def test_bad_urls_are_refused_before_connecting(url):
    with pytest.raises(ValueError):
        open_backend(url)


async def test_state_is_kept_in_server_time_and_expires(redis_server, make_backend):
    backend = make_backend(redis_server.url)
    await backend.check([("quota:{t}:r", RATE)], [("quota:{t}:c", SlotSpec(2, 30), "lease")])
    await backend.reserve("quota:{t}:b", 5, 100, 60)
    with redis_server.client() as client:
        seconds, micros = client.time()
        tat = int(client.get("quota:{t}:r"))
        # The TAT is on Redis' clock (epoch microseconds), one interval ahead.
        assert 0 < tat - (seconds * 1_000_000 + micros) <= RATE.interval_us
        # Nothing lives forever: the TAT key goes when it no longer limits,
        # the lease set with its newest lease, the budget a period after it refills.
        assert 0 < client.pttl("quota:{t}:r") <= RATE.interval_us / 1000 + 1
        assert 29_000 < client.pttl("quota:{t}:c") <= 30_001
        assert 60_000 < client.pttl("quota:{t}:b") <= 63_001


async def test_scripts_are_loaded_at_start_and_reloaded_after_a_flush(redis_server, make_backend):
    sha = hashlib.sha1(lua.CHECK.encode()).hexdigest()
    with redis_server.client() as client:
        backend = make_backend(redis_server.url)  # built inside a running loop: connects at once
        for _ in range(250):
            if client.script_exists(sha)[0]:
                break
            await asyncio.sleep(0.02)
        assert client.script_exists(sha)[0]
        client.script_flush()  # what a restart or failover does to the script cache
    assert (await backend.check([("quota:{t}:r", RATE)])).allowed


async def test_a_hung_redis_is_an_error_within_the_timeout_not_a_hang(redis_server, make_backend):
    backend = make_backend(redis_server.url + "?timeout=50ms&retry_interval=100ms")
    assert (await eventually(lambda: backend.check([("quota:{t}:r", RATE)]))).allowed
    redis_server.pause()
    try:
        with pytest.raises(BackendUnavailable):
            await asyncio.wait_for(backend.check([("quota:{t}:r", RATE)]), 5)
        assert not backend.available
        # While down, requests are answered at once without touching Redis.
        with pytest.raises(BackendUnavailable, match="unavailable since"):
            await asyncio.wait_for(backend.check([("quota:{t}:r", RATE)]), 5)
    finally:
        redis_server.resume()
    outcome = await eventually(lambda: backend.check([("quota:{t}:r", RATE)]))
    assert outcome.allowed and backend.available


async def test_outage_and_restart_on_the_same_port(redis_server, make_backend, caplog):
    backend = make_backend(redis_server.url + "?retry_interval=100ms")
    for _ in range(3):
        assert (await backend.check([("quota:{t}:r", RATE)])).allowed
    redis_server.kill()
    with caplog.at_level(logging.INFO, logger="extproc.quota"):
        for _ in range(3):
            with pytest.raises(BackendUnavailable):
                await backend.check([("quota:{t}:r", RATE)])
        redis_server.start()
        outcome = await eventually(lambda: backend.check([("quota:{t}:r", RATE)]))
    # A restarted Redis (no persistence) starts from a full bucket.
    assert outcome.allowed and outcome.rates[0].remaining == 9
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1  # one log line per outage, not per request
    assert sum("recovered" in m for m in messages) == 1


@pytest.mark.integration  # starts its own Redis, after the backend
async def test_unreachable_at_start_is_reported_and_retried(make_backend, caplog):
    from tests.redis_server import RedisServer, free_port

    port = free_port()
    with caplog.at_level(logging.ERROR, logger="extproc.quota"):
        backend = make_backend(f"redis://127.0.0.1:{port}?retry_interval=50ms")
        with pytest.raises(BackendUnavailable):
            await eventually(lambda: backend.check([("quota:{t}:r", RATE)]), timeout=0.2)
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    with RedisServer(port):
        assert (await eventually(lambda: backend.check([("quota:{t}:r", RATE)]))).allowed


async def test_release_soon_gives_the_slot_back(redis_server, make_backend):
    backend = make_backend(redis_server.url)
    slot = SlotSpec(1, HOUR)
    assert (await backend.check([], [("quota:{t}:c", slot, "a")])).allowed
    backend.release_soon([("quota:{t}:c", "a")])
    await backend.aclose()  # waits for pending releases
    with redis_server.client() as client:
        assert client.zcard("quota:{t}:c") == 0


async def test_cluster_keeps_one_requests_keys_in_one_slot(redis_cluster, make_backend):
    backend = make_backend(redis_cluster.url)
    same_tag = [("quota:{alice}:r:a", RATE), ("quota:{alice}:r:b", RATE)]
    assert (await backend.check(same_tag)).allowed
    # Without a common tag the keys hash to different slots and Redis Cluster
    # refuses the script (CROSSSLOT): why every key of a request shares one.
    with pytest.raises(BackendUnavailable, match=r"(?i)slot"):
        await backend.check([("quota:{alice}:r:a", RATE), ("quota:{bob}:r:a", RATE)])


async def _fill_pool(backend: RedisBackend, connections: int) -> None:
    # Concurrent checks each hold a connection, so the pool ends up with
    # ``connections`` idle ones: what a busy processor has when Redis dies.
    await asyncio.gather(*(backend.check([(f"quota:{{p{i}}}:r", RATE)]) for i in range(connections)))


async def _failures_after_first_success(backend: RedisBackend, rounds: int = 20, burst: int = 10) -> tuple[int, int]:
    # Bursts of concurrent checks; a failure counts when its burst started
    # after one that saw a success (the probe's own burst fails fast by design).
    admitted = failed_after = 0
    for _ in range(rounds):
        recovered = admitted > 0
        results = await asyncio.gather(
            *(backend.check([(f"quota:{{n{i}}}:r", RATE)]) for i in range(burst)), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BackendUnavailable):
                failed_after += recovered
            else:
                admitted += 1
        await asyncio.sleep(0.01)
    return admitted, failed_after


def test_maint_notifications_are_off_so_the_pool_checks_idle_connections(redis_server):
    # redis-py skips its dead-connection check while maintenance notifications
    # are on (8.x default: the truthy "auto"); an upgrade that turns them back
    # on must fail here, not in production after a Redis restart.
    backend = RedisBackend(redis_server.url)
    assert not backend._client.connection_pool.maint_notifications_enabled()


async def test_restart_while_idle_costs_no_request(redis_server, make_backend):
    # Redis restarts between two requests: no outage was ever seen, and every
    # pooled connection is dead. Not one request may fail for it.
    backend = make_backend(redis_server.url + "?retry_interval=100ms")
    await _fill_pool(backend, 16)
    redis_server.restart()
    # restart() blocked this loop; a serving processor's loop would have seen
    # the closed sockets at once (redis-py's check reads the stream's EOF flag).
    await asyncio.sleep(0.01)
    admitted, failed_after = await _failures_after_first_success(backend)
    assert backend.available and failed_after == 0 and admitted == 200


async def test_recovery_does_not_flap_back_into_outage(redis_server, make_backend, caplog):
    backend = make_backend(redis_server.url + "?retry_interval=50ms")
    await _fill_pool(backend, 16)
    redis_server.kill()
    with caplog.at_level(logging.INFO, logger="extproc.quota"):
        with pytest.raises(BackendUnavailable):
            await backend.check([("quota:{t}:r", RATE)])
        redis_server.start()
        await asyncio.sleep(0.1)  # past retry_interval: the next request probes
        admitted, failed_after = await _failures_after_first_success(backend)
    assert admitted > 0 and failed_after == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1 and sum("recovered" in m for m in messages) == 1


async def test_cluster_recovers_without_stale_connection_failures(redis_cluster, make_backend):
    # The cluster client's node pools never check an idle connection before
    # use: the request that probes after an outage must drop them first.
    backend = make_backend(redis_cluster.url + "?retry_interval=50ms")
    await _fill_pool(backend, 16)
    for node in redis_cluster.nodes:  # every idle connection dies, as in a restart
        with node.client() as client:
            client.execute_command("CLIENT KILL TYPE normal SKIPME yes")
    await asyncio.sleep(0.01)
    with pytest.raises(BackendUnavailable):  # one idle connection is used and fails: the outage starts
        await backend.check([("quota:{p0}:r", RATE)])
    await asyncio.sleep(0.06)
    admitted, failed_after = await _failures_after_first_success(backend, rounds=5)
    assert admitted > 0 and failed_after == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret@h:6379/0?timeout=x",
        "ftp://:s3cret@h",
        "redis://u:s3cret@:1",
        "redis://:s3cret@h?max_connections=0",
    ],
)
def test_errors_and_logs_never_carry_the_urls_credentials(url):
    with pytest.raises(ValueError) as failed:
        _split_options(url)
    assert "s3cret" not in str(failed.value)
    assert "s3cret" not in redacted_url(url) and "***@" in redacted_url(url)
