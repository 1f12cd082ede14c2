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
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class Runtime:
    # Quota backend for every quota capability: "memory" (the embedded
    # default) or a redis:// / rediss:// / redis+cluster:// URL.
    quota_backend: str = field(default_factory=lambda: os.environ.get("EXTPROC_QUOTA_BACKEND", "memory"))
    # Relative file paths in a policy (JWKS files, API key files) resolve
    # against the policy directory, not the process's working directory.
    policy_dir: Path | None = None
    # Files the current policy refers to; a change to one reloads the policy.
    referenced_files: set[Path] = field(default_factory=set)
    _shared: dict[Any, Any] = field(default_factory=dict)

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path)
        if not candidate.is_absolute() and self.policy_dir is not None:
            candidate = self.policy_dir / candidate
        resolved = candidate.resolve()
        self.referenced_files.add(resolved)
        return resolved

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
