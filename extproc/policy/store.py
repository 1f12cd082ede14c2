"""The live policy, and hot reload.

``PolicyStore.current`` is swapped as one reference assignment: a request
takes the reference once when it starts and keeps that revision to the end,
so a reload never changes policy under an in-flight request. An invalid
change is logged and the last good policy keeps serving.

A valid change can still be a wrong one: a file sync caught half-way shows
a directory with a file missing. So a change is applied only once the
directory looks the same on two consecutive scans, and a reload that
removes more of the live routes than ``defaults.max_route_removal`` allows
is refused unless the new policy declares ``allow_route_removal: true``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from extproc.policy.loader import (
    PolicyLoadError,
    discard_policy,
    load_policy_dir,
    policy_files,
    route_removal_error,
)
from extproc.policy.model import PolicySet
from extproc.runtime import DEFAULT_RUNTIME, Runtime

log = logging.getLogger("extproc.policy")


class PolicyStore:
    def __init__(self, directory: str | Path, runtime: Runtime = DEFAULT_RUNTIME, start_from: str | Path | None = None):
        """``start_from``: serve this copy of ``directory`` first (the
        supervisor's last good policy), then follow ``directory``."""
        self.directory = Path(directory)
        self.runtime = runtime
        # A bad policy at start-up is fatal.
        self.current: PolicySet = (
            load_policy_dir(start_from, runtime, copied_from=self.directory)
            if start_from is not None
            else load_policy_dir(self.directory, runtime)
        )
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_errors: list[str] = []
        # Started from a copy: the first settled scan loads the live directory
        # (and so watches its files, not the copy's).
        self._signature = () if start_from is not None else self._stat_signature()
        self._unsettled: tuple[Any, ...] | None = None  # a changed signature seen once, not yet twice
        log.info("policy loaded", extra={"revision": self.current.revision, "routes": sorted(self.current.routes)})

    def _stat_signature(self) -> tuple[Any, ...]:
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
            return self._refused([str(e) for e in exc.errors])
        except OSError as exc:
            return self._refused([str(exc)])
        refusal = route_removal_error(self.current, candidate, self.directory)
        if refusal is not None:
            discard_policy(candidate, self.runtime)
            return self._refused([str(refusal)])
        self.last_errors = []
        if candidate.revision == self.current.revision:
            discard_policy(candidate, self.runtime)
            return True
        previous, self.current = self.current, candidate
        self.reloads_ok += 1
        log.info("policy reloaded", extra={"revision": candidate.revision, "previous_revision": previous.revision})
        discard_policy(previous, self.runtime)
        return True

    def _refused(self, errors: list[str]) -> bool:
        self.reloads_failed += 1
        self.last_errors = errors
        log.error(
            "policy reload rejected: %s; still serving revision %s",
            errors[0],
            self.current.revision,
            extra={"errors": errors, "revision": self.current.revision},
        )
        return False

    def check_for_changes(self) -> None:
        """Reload once a change has settled: the same on two scans in a row."""
        signature = self._stat_signature()
        if signature == self._signature:
            self._unsettled = None
        elif signature != self._unsettled:
            self._unsettled = signature  # maybe mid-sync: look again next scan
        else:
            self._signature, self._unsettled = signature, None
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
