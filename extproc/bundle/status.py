"""What policy revision a processor serves, for health checks and metrics.

* ``grpc.health.v1`` Check replies carry the serving revision in the
  ``x-extproc-policy-revision`` initial metadata (``extproc health
  --revision`` prints it), so a probe sees which revision each replica runs.
* ``extproc_policy_revision_info{revision}`` is 1 for the serving revision.

Decision logs and audit spans carry the revision of each decision already.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc_health.v1 import health

from extproc.policy.store import PolicyStore

REVISION_METADATA = "x-extproc-policy-revision"


# grpc_health ships no type information: its servicer is Any to mypy.
class RevisionHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]
    def __init__(self, store: PolicyStore) -> None:
        super().__init__()
        self._store = store

    async def Check(self, request: Any, context: Any) -> Any:
        await context.send_initial_metadata(((REVISION_METADATA, self._store.current.revision),))
        return await super().Check(request, context)


async def publish_revision(store: PolicyStore, interval: float) -> None:
    """Keep the revision gauge on the serving revision (a task per worker)."""
    from extproc.audit.metrics import POLICY_REVISION, multiprocess_dir

    # Multiprocess mode cannot remove a series (its value lives in the shared
    # files): the replaced revision stays, at 0.
    removable = multiprocess_dir() is None
    shown: str | None = None
    while True:
        revision = store.current.revision
        if revision != shown:
            if shown is not None:
                POLICY_REVISION.labels(shown).set(0)
                if removable:
                    POLICY_REVISION.remove(shown)
            POLICY_REVISION.labels(revision).set(1)
            shown = revision
        await asyncio.sleep(interval)
