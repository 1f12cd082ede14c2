"""Process-wide resources that outlive a policy revision.

A policy reload builds new capability instances, but connection pools, key
caches and quota backends must survive it (a reload must not drop Redis
connections or forget fetched JWKS). Capabilities get them from the
``Runtime`` they are constructed with, keyed so that two routes naming the
same JWKS URL share one cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Runtime:
    # Quota backend for every quota capability: "memory" (the embedded
    # default) or a redis:// / rediss:// / redis+cluster:// URL.
    quota_backend: str = field(default_factory=lambda: os.environ.get("EXTPROC_QUOTA_BACKEND", "memory"))
    _shared: dict[Any, Any] = field(default_factory=dict)

    def shared(self, key: Any, factory: Callable[[], T]) -> T:
        """The one instance for ``key``, made by ``factory`` on first use."""
        try:
            return self._shared[key]
        except KeyError:
            value = self._shared[key] = factory()
            return value

    async def aclose(self) -> None:
        for value in self._shared.values():
            close = getattr(value, "aclose", None)
            if close is not None:
                await close()
        self._shared.clear()


DEFAULT_RUNTIME = Runtime()
