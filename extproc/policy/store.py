"""The live policy, and hot reload.

``PolicyStore.current`` is swapped as one reference assignment: a request
takes the reference once when it starts and keeps that revision to the end,
so a reload never changes policy under an in-flight request. An invalid
change is logged and the last good policy keeps serving.
"""

from __future__ import annotations

import asyncio
import logging

from pathlib import Path

from extproc.policy.loader import PolicyLoadError, load_policy_dir, policy_files
from extproc.policy.model import PolicySet
from extproc.runtime import DEFAULT_RUNTIME, Runtime

log = logging.getLogger("extproc.policy")


class PolicyStore:
    def __init__(self, directory: str | Path, runtime: Runtime = DEFAULT_RUNTIME):
        self.directory = Path(directory)
        self.runtime = runtime
        self.current: PolicySet = load_policy_dir(self.directory, runtime)  # a bad policy at start-up is fatal
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_errors: list[str] = []
        self._signature = self._stat_signature()
        log.info("policy loaded", extra={"revision": self.current.revision, "routes": sorted(self.current.routes)})

    def _stat_signature(self) -> tuple:
        try:
            files = policy_files(self.directory)
        except OSError:
            return ()
        signature = []
        for path in (*files, *sorted(self.runtime.referenced_files)):
            try:
                st = path.stat()
            except OSError:
                continue
            signature.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(signature)

    def reload(self) -> bool:
        """Load the directory again; swap it in if valid. Returns whether the
        live policy is now what is on disk."""
        try:
            candidate = load_policy_dir(self.directory, self.runtime)
        except PolicyLoadError as exc:
            self.reloads_failed += 1
            self.last_errors = [str(e) for e in exc.errors]
            log.error("policy reload rejected; still serving revision %s", self.current.revision,
                      extra={"errors": self.last_errors, "revision": self.current.revision})
            return False
        except OSError as exc:
            self.reloads_failed += 1
            self.last_errors = [str(exc)]
            log.error("policy reload failed: %s; still serving revision %s", exc, self.current.revision)
            return False
        self.last_errors = []
        if candidate.revision != self.current.revision:
            previous, self.current = self.current.revision, candidate
            self.reloads_ok += 1
            log.info("policy reloaded", extra={"revision": candidate.revision, "previous_revision": previous})
        return True

    def check_for_changes(self) -> None:
        signature = self._stat_signature()
        if signature != self._signature:
            self._signature = signature
            self.reload()

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the directory's file stats (cheap, works on every filesystem
        and with ConfigMap symlink swaps) and reload on change."""
        while True:
            await asyncio.sleep(interval)
            try:
                self.check_for_changes()
            except Exception:  # the watcher must outlive any surprise
                log.exception("policy watcher error")


