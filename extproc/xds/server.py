"""The Aggregated Discovery Service (state of the world) serving snapshots.

Each Envoy holds one ADS stream. Per stream and resource type the server
remembers the version and nonce it last sent; a request is

* an ACK (its nonce is the last one sent, no error): nothing to do;
* a NACK (same, with ``error_detail``): logged with Envoy's message; the
  rejected version is not sent again, Envoy keeps serving its last good one,
  and the next policy change is pushed as usual;
* stale (an older nonce): ignored, as the xDS protocol says;
* a subscription (first request of a type, or Envoy asking again): answered
  with the current snapshot when Envoy does not have its version yet.

A new snapshot is pushed to every connected stream, clusters first, then
listeners, then routes (make before break). Every response of one push comes
from the same snapshot object, so an Envoy never mixes two policy revisions.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from extproc.policy.model import PolicySet
from extproc.policy.store import PolicyStore
from extproc.runtime import Runtime
from extproc.xds.compiler import Options, compile_policy
from extproc.xds.render import explain
from extproc.xds.resources import ROUTE_TYPE, TYPE_ORDER
from extproc.xds.snapshot import Snapshot

log = logging.getLogger("extproc.xds")
_PUSH = object()  # a queue item: the snapshot changed


@dataclass(slots=True)
class Nack:
    node: str
    type_url: str
    version: str
    message: str


class SnapshotCache:
    """The current snapshot and the streams to tell when it changes."""

    def __init__(self, snapshot: Snapshot):
        self.snapshot = snapshot
        self.nacks: list[Nack] = []
        self.acks: dict[tuple[str, str], str] = {}  # (node, type URL) -> version Envoy applied
        self._streams: set[asyncio.Queue[object]] = set()

    def set(self, snapshot: Snapshot) -> bool:
        if snapshot.version == self.snapshot.version:
            return False
        self.snapshot = snapshot
        for queue in self._streams:
            queue.put_nowait(_PUSH)
        log.info(
            "xds snapshot %s pushed to %d stream(s)",
            snapshot.version,
            len(self._streams),
            extra={"version": snapshot.version, "revision": snapshot.revision},
        )
        return True

    def subscribe(self, queue: asyncio.Queue[object]) -> None:
        self._streams.add(queue)

    def unsubscribe(self, queue: asyncio.Queue[object]) -> None:
        self._streams.discard(queue)

    @property
    def streams(self) -> int:
        return len(self._streams)


@dataclass(slots=True)
class _Stream:
    node: str = "?"
    subscribed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type URL -> resource names
    sent_version: dict[str, str] = field(default_factory=dict)
    sent_nonce: dict[str, str] = field(default_factory=dict)


_nonces = itertools.count(1)


class AggregatedDiscovery(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: SnapshotCache):
        self.cache = cache

    async def StreamAggregatedResources(
        self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        stream = _Stream()

        async def read() -> None:
            try:
                async for request in requests:
                    queue.put_nowait(request)
            finally:
                queue.put_nowait(None)

        reader = asyncio.create_task(read())
        self.cache.subscribe(queue)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if item is _PUSH:
                    types = [t for t in TYPE_ORDER if t in stream.subscribed]
                else:
                    assert isinstance(item, discovery_pb2.DiscoveryRequest)
                    types = self._on_request(stream, item)
                snapshot = self.cache.snapshot  # one snapshot for the whole push
                for type_url in types:
                    if stream.sent_version.get(type_url) != snapshot.version:
                        yield self._response(stream, type_url, snapshot)
        finally:
            self.cache.unsubscribe(queue)
            reader.cancel()
            log.info("xds stream closed", extra={"node": stream.node})

    def _on_request(self, stream: _Stream, request: discovery_pb2.DiscoveryRequest) -> list[str]:
        type_url = request.type_url
        if request.node.id:
            stream.node = request.node.id
        if request.response_nonce:
            if request.response_nonce != stream.sent_nonce.get(type_url):
                return []  # stale: answered by a later response already
            if request.HasField("error_detail"):
                rejected = stream.sent_version.get(type_url, "")
                self.cache.nacks.append(Nack(stream.node, type_url, rejected, request.error_detail.message))
                log.error(
                    "xds NACK from %s for %s version %s: %s; Envoy keeps version %r",
                    stream.node,
                    type_url.rsplit(".", 1)[-1],
                    rejected,
                    request.error_detail.message,
                    request.version_info,
                    extra={"node": stream.node, "rejected_version": rejected},
                )
                return []
            self.cache.acks[(stream.node, type_url)] = request.version_info
            if tuple(request.resource_names) == stream.subscribed.get(type_url):
                return []
        # A first request (new stream, reconnect) or new resource names: answer it.
        stream.subscribed[type_url] = tuple(request.resource_names)
        stream.sent_version.pop(type_url, None)
        return [type_url]

    def _response(self, stream: _Stream, type_url: str, snapshot: Snapshot) -> discovery_pb2.DiscoveryResponse:
        nonce = str(next(_nonces))
        stream.sent_version[type_url] = snapshot.version
        stream.sent_nonce[type_url] = nonce
        messages = snapshot.resources.get(type_url, [])
        names = stream.subscribed.get(type_url, ())
        if type_url == ROUTE_TYPE and names:
            messages = [m for m in messages if getattr(m, "name", None) in names]
        resources = []
        for message in messages:
            packed = any_pb2.Any()
            packed.Pack(message)
            resources.append(packed)
        return discovery_pb2.DiscoveryResponse(
            version_info=snapshot.version, resources=resources, type_url=type_url, nonce=nonce
        )


class ControlPlane:
    """A policy store followed into snapshots: a reload the store accepts is
    compiled and pushed; one it refuses (or that fails to compile) leaves
    the last snapshot serving."""

    def __init__(self, store: PolicyStore, options: Options):
        self.store = store
        self.options = options
        self._compiled: PolicySet = store.current
        self.cache = SnapshotCache(compile_policy(store.current, options))

    def compile(self, policy: PolicySet) -> Snapshot | None:
        """The snapshot of ``policy``; None (logged) when it does not compile."""
        started = time.perf_counter()
        try:
            snapshot = compile_policy(policy, self.options)
        except Exception:
            log.exception(
                "xds compile failed for revision %s; still serving %s", policy.revision, self.cache.snapshot.version
            )
            return None
        log.info(
            "xds compiled revision %s in %.1f ms\n%s",
            policy.revision,
            (time.perf_counter() - started) * 1000,
            explain(snapshot),
        )
        return snapshot

    async def refresh(self) -> bool:
        """Compile the store's policy if it changed (in a thread: OIDC
        discovery may fetch); whether a new version went out."""
        policy = self.store.current
        if policy is self._compiled:
            return False
        self._compiled = policy
        snapshot = await asyncio.to_thread(self.compile, policy)
        return snapshot is not None and self.cache.set(snapshot)

    async def follow(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.store.check_for_changes()
                await self.refresh()
            except Exception:  # the follower must outlive any surprise
                log.exception("xds policy follower error")


async def serve(args: argparse.Namespace, make_options: Callable[[argparse.Namespace, str], Options]) -> int:
    runtime = Runtime(quota_backend=args.quota_backend) if args.quota_backend else Runtime()
    store = PolicyStore(args.policies, runtime)
    plane = ControlPlane(store, make_options(args, runtime.quota_backend))
    log.info("xds initial snapshot\n%s", explain(plane.cache.snapshot))
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(AggregatedDiscovery(plane.cache), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info("xds ADS serving on %s:%d", args.host, port)
    follower = asyncio.create_task(plane.follow(args.reload_interval))
    try:
        await server.wait_for_termination()
    finally:
        follower.cancel()
        await server.stop(grace=1)
    return 0
