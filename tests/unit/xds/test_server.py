"""The ADS servicer over real gRPC: subscriptions, ACK, NACK, stale nonces,
pushes to every stream from one snapshot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from extproc.policy.model import PolicySet
from extproc.xds.compiler import Endpoint, Options, compile_policy
from extproc.xds.resources import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE
from extproc.xds.server import AggregatedDiscovery, SnapshotCache
from tests.unit.xds.conftest import route

Load = Callable[..., PolicySet]
RBAC = {"type": "rbac", "config": {"rules": [{"name": "all", "paths": ["/a/**"]}]}}


class Client:
    """One Envoy-like ADS stream."""

    def __init__(self, stub: Any, node: str):
        self.node = node
        self.requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self.call = stub.StreamAggregatedResources(self._iterate())
        self.responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self.responses.put_nowait(response)

    async def _iterate(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    def send(
        self, type_url: str, version: str = "", nonce: str = "", error: str | None = None, names: tuple[str, ...] = ()
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=self.node),
            type_url=type_url,
            version_info=version,
            response_nonce=nonce,
            resource_names=list(names),
        )
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.requests.put_nowait(request)

    async def receive(self, timeout: float = 2.0) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self.responses.get(), timeout)

    async def silent(self, seconds: float = 0.2) -> bool:
        await asyncio.sleep(seconds)
        return self.responses.empty()

    def close(self) -> None:
        self.requests.put_nowait(None)
        self.call.cancel()
        self._reader.cancel()


@pytest.fixture
async def ads(load: Load) -> AsyncIterator[tuple[SnapshotCache, Any, Callable[[Options], Any]]]:
    policy = load(route("a", "/a/", RBAC))
    cache = SnapshotCache(compile_policy(policy))
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(AggregatedDiscovery(cache), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    yield cache, stub, lambda options: compile_policy(policy, options)
    await channel.close()
    await server.stop(None)


async def test_subscribe_ack_and_push(ads: tuple[SnapshotCache, Any, Callable[[Options], Any]]) -> None:
    cache, stub, recompile = ads
    envoy = Client(stub, "envoy-1")
    envoy.send(CLUSTER_TYPE)
    clusters = await envoy.receive()
    assert clusters.type_url == CLUSTER_TYPE and clusters.version_info == cache.snapshot.version
    assert {"upstream", "governance"} <= {_name(r) for r in clusters.resources}
    envoy.send(CLUSTER_TYPE, clusters.version_info, clusters.nonce)  # ACK
    envoy.send(LISTENER_TYPE)
    listeners = await envoy.receive()
    assert listeners.type_url == LISTENER_TYPE
    envoy.send(LISTENER_TYPE, listeners.version_info, listeners.nonce)
    envoy.send(ROUTE_TYPE, names=("gateway",))
    routes = await envoy.receive()
    assert routes.type_url == ROUTE_TYPE and len(routes.resources) == 1
    envoy.send(ROUTE_TYPE, routes.version_info, routes.nonce, names=("gateway",))
    assert await envoy.silent()  # ACKs need no answer
    await asyncio.sleep(0.05)
    assert cache.acks[("envoy-1", CLUSTER_TYPE)] == clusters.version_info

    new = recompile(Options(upstream=Endpoint("127.0.0.1", 9999)))
    assert cache.set(new)
    pushed = [await envoy.receive() for _ in range(3)]
    assert [p.type_url for p in pushed] == [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE]  # make before break
    assert {p.version_info for p in pushed} == {new.version}
    assert not cache.set(new)  # the same version is not pushed twice
    envoy.close()


async def test_nack_is_recorded_and_not_resent(ads: tuple[SnapshotCache, Any, Callable[[Options], Any]]) -> None:
    cache, stub, recompile = ads
    envoy = Client(stub, "envoy-2")
    envoy.send(CLUSTER_TYPE)
    first = await envoy.receive()
    envoy.send(CLUSTER_TYPE, first.version_info, first.nonce)
    new = recompile(Options(upstream=Endpoint("127.0.0.1", 9998)))
    cache.set(new)
    pushed = await envoy.receive()
    envoy.send(CLUSTER_TYPE, first.version_info, pushed.nonce, error="cluster rejected: bad")
    assert await envoy.silent()  # the rejected version is not sent again
    assert [(n.node, n.version, n.message) for n in cache.nacks] == [("envoy-2", new.version, "cluster rejected: bad")]
    # A stale nonce (an older response) is ignored: no answer, no NACK recorded.
    envoy.send(CLUSTER_TYPE, first.version_info, first.nonce, error="late")
    assert await envoy.silent()
    assert len(cache.nacks) == 1
    # The next version goes out as usual.
    cache.set(recompile(Options(upstream=Endpoint("127.0.0.1", 9997))))
    assert (await envoy.receive()).version_info == cache.snapshot.version
    envoy.close()


async def test_every_stream_gets_the_same_push(ads: tuple[SnapshotCache, Any, Callable[[Options], Any]]) -> None:
    cache, stub, recompile = ads
    envoys = [Client(stub, f"envoy-{i}") for i in range(3)]
    for envoy in envoys:
        envoy.send(LISTENER_TYPE)
        response = await envoy.receive()
        envoy.send(LISTENER_TYPE, response.version_info, response.nonce)
    await asyncio.sleep(0.05)
    assert cache.streams == 3
    cache.set(recompile(Options(listen=Endpoint("127.0.0.1", 10001))))
    versions = {(await envoy.receive()).version_info for envoy in envoys}
    assert versions == {cache.snapshot.version}
    for envoy in envoys:
        envoy.close()


def _name(resource: Any) -> str:
    from envoy.config.cluster.v3.cluster_pb2 import Cluster

    cluster = Cluster()
    resource.Unpack(cluster)
    return str(cluster.name)
