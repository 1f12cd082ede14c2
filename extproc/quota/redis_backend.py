"""Quota state in Redis (standalone, TLS, or Redis Cluster), shared by every
processor that points at the same server.

URL forms::

    redis://[user:pass@]host:6379/0
    rediss://host:6380/0                     (TLS)
    redis+cluster://host:7000                (Redis Cluster; any node as seed)
    rediss+cluster://host:7000

plus these query options (stripped before the URL reaches redis-py; any
other query option goes to redis-py unchanged):

    timeout=50ms          bound on one operation, queueing included
    connect_timeout=50ms  TCP (and TLS) connect bound
    retry_interval=250ms  after a failure, how long to answer "unavailable"
                          at once before trying Redis again
    max_connections=64    operations in flight at once (excess waits,
                          within ``timeout``)

Failure handling: every operation is bounded by ``timeout`` and any error
becomes ``BackendUnavailable``; the caller decides what that means (fail
open or closed). After a failure the backend stays "unavailable" for
``retry_interval`` without touching Redis, so an outage costs requests
nothing but a dictionary lookup, then the next request probes again: when
Redis is back, enforcement resumes within about ``retry_interval``. redis-py
retries are turned off: a retried ``check`` whose first attempt did run
would consume twice, and the timeout must bound the whole operation.

So a connection that died while idle in the pool (Redis restarted) must be
replaced before it is used, never cost a request: redis-py checks a pooled
connection for EOF before handing it out, but skips that check while "maint
notifications" are enabled, and redis-py 8 enables them by default (the
truthy string "auto"). They are turned off explicitly, and the request that
probes a recovering Redis first drops every idle connection (one that sat
through an outage is dead), which also covers the cluster client, whose
node pools make no such check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError
from redis.maint_notifications import MaintNotificationsConfig

from extproc.quota import lua
from extproc.quota.backend import (
    US,
    BackendUnavailable,
    Lease,
    Outcome,
    QuotaBackend,
    RateCheck,
    RateStatus,
    Reservation,
    SlotCheck,
)
from extproc.quota.durations import parse_duration
from extproc.quota.gcra import BUDGET_EPSILON

log = logging.getLogger("extproc.quota")

SCHEMES = {
    "redis": ("redis", False),
    "rediss": ("rediss", False),
    "redis+cluster": ("redis", True),
    "rediss+cluster": ("rediss", True),
}
DEFAULTS = {"timeout": 0.05, "connect_timeout": 0.05, "retry_interval": 0.25, "max_connections": 64}
# RedisClusterException (slot and topology trouble) is not a RedisError.
_FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)


def redacted_url(url: str) -> str:
    """``url`` fit for a log line or an error: without user and password."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _split_options(url: str) -> tuple[str, bool, dict[str, Any]]:
    """(URL for redis-py, is_cluster, our options). Errors never carry the
    URL's credentials."""
    parts = urlsplit(url)
    shown = redacted_url(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"quota backend {shown!r}: scheme must be one of memory, {', '.join(SCHEMES)}")
    if not parts.hostname:
        raise ValueError(f"quota backend {shown!r}: no host")
    scheme, cluster = SCHEMES[parts.scheme]
    options = dict(DEFAULTS)
    passthrough = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "max_connections":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"quota backend {shown!r}: max_connections must be a positive integer")
            options[name] = int(value)
        elif name in DEFAULTS:
            options[name] = parse_duration(value)
        else:
            passthrough.append((name, value))
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(passthrough), "")), cluster, options


class RedisBackend(QuotaBackend):
    name = "redis"

    def __init__(self, url: str):
        redis_url, self.cluster, options = _split_options(url)
        self.url = url
        self.timeout: float = options["timeout"]
        self.retry_interval: float = options["retry_interval"]
        common: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": options["connect_timeout"],
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
            "maint_notifications_config": MaintNotificationsConfig(enabled=False),
        }
        self._client: Redis | RedisCluster
        if self.cluster:
            self._client = RedisCluster.from_url(redis_url, max_connections=options["max_connections"], **common)
        else:
            self._client = Redis.from_url(redis_url, max_connections=options["max_connections"], **common)
        # Bounds operations in flight (the cluster client raises instead of
        # waiting when its per-node pool is exhausted).
        self._gate = asyncio.Semaphore(options["max_connections"])
        # EVALSHA; on NOSCRIPT (e.g. Redis restarted) redis-py loads the script and retries.
        self._check = self._client.register_script(lua.CHECK)
        self._release = self._client.register_script(lua.RELEASE)
        self._reserve = self._client.register_script(lua.RESERVE)
        self._reconcile = self._client.register_script(lua.RECONCILE)
        self._scripts = (self._check, self._release, self._reserve, self._reconcile)
        self._ready = False  # connected (cluster: slot map loaded) and scripts loaded
        self._connect_lock = asyncio.Lock()
        self._down_since: float | None = None
        self._down_until = 0.0  # monotonic time before which we do not try Redis
        self._probing = False
        self._pending: set[asyncio.Task[Any]] = set()
        try:
            # Built while the policy loads inside the server's loop: connect
            # now, so the first request does not pay for it and an unreachable
            # Redis is reported at start-up.
            self._track(asyncio.get_running_loop().create_task(self._warm_up()))
        except RuntimeError:
            pass  # no loop (policy validation, tests): connect on first use

    @property
    def available(self) -> bool:
        return self._down_since is None

    async def _warm_up(self) -> None:
        try:
            async with asyncio.timeout(max(self.timeout, 1.0)):
                await self._connect()
        except _FAILURES as exc:
            self._failed(exc)

    async def _connect(self) -> None:
        # One task connects while the others wait: concurrent first use of a
        # fresh cluster client races in redis-py, and loading the scripts up
        # front spares every request of a burst its own NOSCRIPT round trip.
        async with self._connect_lock:
            if self._ready:
                return
            if self.cluster:
                await self._client.initialize()
            for script in self._scripts:
                await self._client.script_load(script.script)
            self._ready = True

    async def _run(self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        probing = False
        if self._down_since is not None:
            # Down: answer at once until retry_interval has passed, then let
            # exactly one request probe while the others keep failing fast.
            if self._probing or time.monotonic() < self._down_until:
                raise BackendUnavailable(f"{self.name} unavailable since {self._down_since:.3f}")
            self._probing = probing = True
        try:
            async with asyncio.timeout(self.timeout):
                if probing:
                    await self._drop_idle_connections()
                if not self._ready:
                    await self._connect()
                async with self._gate:
                    result: list[Any] = await script(keys=keys, args=args)
        except _FAILURES as exc:
            self._failed(exc)
            raise BackendUnavailable(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        finally:
            if probing:
                self._probing = False
        if self._down_since is not None:
            log.info(
                "quota backend recovered",
                extra={"backend": self._redacted(), "down_s": round(time.monotonic() - self._down_since, 3)},
            )
            self._down_since = None
        return result

    async def _drop_idle_connections(self) -> None:
        if isinstance(self._client, RedisCluster):
            await asyncio.gather(*(node.disconnect_free_connections() for node in self._client.get_nodes()))
        else:
            await self._client.connection_pool.disconnect(inuse_connections=False)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._ready = False  # reconnect (and reload scripts: a restarted Redis forgot them)
        self._down_until = now + self.retry_interval
        if self._down_since is None:
            self._down_since = now
            log.error("quota backend unavailable: %s: %s", type(exc).__name__, exc, extra={"backend": self._redacted()})

    def _redacted(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"

    async def check(self, rates: Sequence[RateCheck], slots: Sequence[SlotCheck] = ()) -> Outcome:
        keys = [key for key, _ in rates]
        args: list[Any] = [len(rates)]
        for _key, spec in rates:
            args += (spec.interval_us, spec.tolerance_us)
        for key, slot, lease in slots:
            keys.append(key)
            args += (slot.limit, slot.lease_us, lease)
        reply = await self._run(self._check, keys, args)
        n = len(rates)
        statuses = tuple(
            RateStatus(int(reply[i]), reply[i + 1] / 1000, reply[i + 2] / 1000) for i in range(1, 1 + 3 * n, 3)
        )
        return Outcome(reply[0] == 1, statuses, tuple(int(v) for v in reply[1 + 3 * n :]))

    async def release(self, leases: Sequence[Lease]) -> None:
        if leases:
            await self._run(self._release, [key for key, _ in leases], [lease for _, lease in leases])

    def release_soon(self, leases: Sequence[Lease]) -> None:
        if leases:
            self._track(asyncio.get_running_loop().create_task(self._release_quietly(leases)))

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._pending.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._pending.discard)

    async def _release_quietly(self, leases: Sequence[Lease]) -> None:
        try:
            await self.release(leases)
        except BackendUnavailable as exc:
            log.debug("quota release failed; the leases will expire: %s", exc)

    async def reserve(self, key: str, amount: int, limit: int, period: float) -> Reservation:
        granted, remaining = await self._run(self._reserve, [key], [amount, limit, round(period * US), BUDGET_EPSILON])
        return Reservation(granted == 1, int(remaining))

    async def reconcile(self, key: str, reserved: int, actual: int) -> int:
        difference = actual - reserved
        if difference:
            await self._run(self._reconcile, [key], [difference])
        return difference

    async def aclose(self) -> None:
        if self._pending:  # let in-flight releases finish (each is bounded by the timeout)
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._client.aclose()

    # -- owner store (see QuotaBackend.claim_owner) ---------------------------

    def _owner_script(self, name: str, source: str) -> AsyncScript:
        # Registered on first use (EVALSHA; redis-py loads it on NOSCRIPT).
        scripts: dict[str, AsyncScript] = self.__dict__.setdefault("_owner_scripts", {})
        if name not in scripts:
            scripts[name] = self._client.register_script(source)
        return scripts[name]

    async def claim_owner(self, key: str, owner: str, ttl: float) -> str:
        script = self._owner_script("claim", _CLAIM_OWNER)
        current = await self._run(script, [key], [owner, max(1, round(ttl * 1000))])
        return current.decode() if isinstance(current, bytes) else str(current)

    async def owners_of(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        # One script, one round trip: keys of one owner namespace share a
        # cluster hash tag, so they live in one slot.
        values = await self._run(self._owner_script("mget", _OWNERS_OF), list(keys), [])
        return [v.decode() if isinstance(v, bytes) else v for v in values]


_CLAIM_OWNER = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
_OWNERS_OF = "return redis.call('MGET', unpack(KEYS))"
