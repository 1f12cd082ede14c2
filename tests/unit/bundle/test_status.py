"""The serving revision in health replies and in the revision gauge."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from extproc.bundle.status import REVISION_METADATA, RevisionHealthServicer, publish_revision
from extproc.policy.store import PolicyStore
from extproc.runtime import Runtime
from tests.unit.bundle.conftest import ALLOW_A, ALLOW_A_AND_B, make_policy


def _gauge(revision: str) -> float | None:
    return REGISTRY.get_sample_value("extproc_policy_revision_info", {"revision": revision})


async def test_health_replies_and_the_gauge_follow_the_store(tmp_path: Path) -> None:
    policy = make_policy(tmp_path / "p", {"a.yaml": ALLOW_A})
    store = PolicyStore(policy, Runtime(quota_backend="memory"))
    first = store.current.revision
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(RevisionHealthServicer(store), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    gauge = asyncio.create_task(publish_revision(store, 0.01))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def served() -> tuple[int, str]:
                call = stub.Check(health_pb2.HealthCheckRequest())
                reply = await call
                return reply.status, dict(await call.initial_metadata())[REVISION_METADATA]

            assert await served() == (health_pb2.HealthCheckResponse.SERVING, first)
            await asyncio.sleep(0.05)
            assert _gauge(first) == 1.0

            (policy / "a.yaml").write_text(ALLOW_A_AND_B)
            assert store.reload()
            second = store.current.revision
            assert second != first
            assert await served() == (health_pb2.HealthCheckResponse.SERVING, second)
            await asyncio.sleep(0.05)
            assert (_gauge(first), _gauge(second)) == (None, 1.0)
    finally:
        gauge.cancel()
        await server.stop(None)
