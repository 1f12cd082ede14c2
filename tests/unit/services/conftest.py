import asyncio
import contextlib
import textwrap

import grpc
import pytest

from extproc.local.processor import free_port
from extproc.server import ServerOptions, serve

POLICY = """\
    routes:
      - name: api
        match: {path_prefix: /api/}
        capabilities:
          - type: header_match
            config: {deny: [{name: x-debug, present: true}]}
          - type: headers
            config:
              request: {set: {x-gateway: governance}, remove: [x-internal]}
              response: {set: {x-governed-by: extproc}, remove: [server]}
      - name: plain
        match: {path_prefix: /plain/}
"""


@contextlib.asynccontextmanager
async def serving(directory, policy: str):
    """A real grpc.aio server for ``policy`` in this event loop; a channel to it."""
    (directory / "policy.yaml").write_text(textwrap.dedent(policy))
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(ServerOptions(port=port, policies=str(directory), grace=1), ready, stop))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        stop.set()
        await task


@pytest.fixture
async def processor(tmp_path):
    async with serving(tmp_path, POLICY) as channel:
        yield channel
