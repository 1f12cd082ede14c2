"""``--workers N``: N server processes on one port, kept alive - within reason.

The supervisor owns the port (``extproc.portclaim``) and starts each worker
as a fresh interpreter (gRPC's core does not survive fork). A worker that
dies is replaced, so one crash costs one process's in-flight requests, not
half the capacity for good. But a worker that cannot start (the port taken
from under us, a broken environment) would die again at once, so:

* a worker that dies before it reports ready (it writes one byte on the
  pipe named by ``READY_FD_ENV`` once it listens), or within
  ``MIN_UPTIME_S`` after, is a *failed start*; each one in a row doubles the wait before the next try (from
  ``BACKOFF_INITIAL_S`` up to ``BACKOFF_MAX_S``), and after
  ``max_failed_starts`` in a row the supervisor stops every worker and
  exits 1 with a one-line reason. A worker that stays up resets the count.
* a replacement must not fail just because someone saved a broken policy
  since the others started: workers hot-reload and keep their last good
  policy in memory, and a replacement needs the same. The supervisor keeps
  a private copy of the last policy directory the workers would accept
  (``LastGoodPolicy``: valid, and not refused as a mass route removal) and
  starts every worker on it (``--last-good``) with the live directory to
  watch. The worker's ordinary hot reload then moves it to the live policy
  if, and only if, the other workers accepted it too; a broken live
  directory is logged as a rejected reload while the copy keeps serving.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extproc.policy.loader import PolicyLoadError
    from extproc.policy.model import PolicySet

log = logging.getLogger("extproc.supervisor")

SUPERVISED_ENV = "EXTPROC_SUPERVISOR_PID"
READY_FD_ENV = "EXTPROC_READY_FD"  # a worker writes one byte here once it serves
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode (extproc.audit.metrics)
MIN_UPTIME_S = 5.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
DEFAULT_MAX_FAILED_STARTS = 5
_POLL_S = 0.2


class LastGoodPolicy:
    """A private copy of the newest policy directory that loaded cleanly.

    The copy is taken first and validated second, so what is kept is exactly
    what was checked, even if the live directory changes meanwhile."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._root = Path(tempfile.mkdtemp(prefix="extproc-last-good-"))
        self._generation = 0
        self.path: Path | None = None
        self.policy: PolicySet | None = None  # the PolicySet of the copy at ``path`` (its resources already released)
        self._signature: tuple[Any, ...] = ()
        errors = self.refresh()
        if errors is not None:
            self.close()
            raise errors

    def _stat_signature(self) -> tuple[Any, ...]:
        from extproc.policy.loader import policy_files

        try:
            return tuple(
                (str(p), s.st_mtime_ns, s.st_size, s.st_ino) for p in policy_files(self.directory) for s in (p.stat(),)
            )
        except OSError:
            return ("unreadable",)

    def refresh(self) -> PolicyLoadError | None:
        """Copy and validate the live directory if it changed. Returns the
        ``PolicyLoadError`` of a change the workers would refuse too (the
        previous copy stays)."""
        # Imported here: the CLI reads this module's defaults without paying
        # for every capability's import.
        from extproc.policy.loader import PolicyError, PolicyLoadError, route_removal_error, validate_policy_dir

        signature = self._stat_signature()
        if self.path is not None and signature == self._signature:
            return None
        self._signature = signature
        self._generation += 1
        candidate = self._root / str(self._generation)
        try:
            self._copy(candidate)
            policy = validate_policy_dir(candidate, copied_from=self.directory)
            refusal = route_removal_error(self.policy, policy, self.directory) if self.policy else None
            if refusal is not None:
                raise PolicyLoadError([refusal])
        except (PolicyLoadError, OSError) as exc:
            shutil.rmtree(candidate, ignore_errors=True)
            if isinstance(exc, OSError):
                exc = PolicyLoadError([PolicyError(str(self.directory), 0, "", exc.strerror or str(exc))])
            return exc
        previous, self.path, self.policy = self.path, candidate, policy
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return None

    def _copy(self, target: Path) -> None:
        if self.directory.is_file():
            target.mkdir()
            shutil.copy2(self.directory, target / self.directory.name)
        else:
            shutil.copytree(self.directory, target)  # follows symlinks: a ConfigMap's ..data links

    def close(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)


@dataclass(slots=True)
class _Slot:
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready_pipe: int | None = None  # read end; closed once the worker reported ready
    ready_at: float | None = None
    proven: bool = False  # stayed up MIN_UPTIME_S past ready
    next_start: float = 0.0

    def poll_ready(self, now: float) -> None:
        if self.ready_pipe is None:
            return
        try:
            if not os.read(self.ready_pipe, 1):
                return  # EOF: the worker is gone without reporting
        except BlockingIOError:
            return
        self.ready_at = now
        self.close_pipe()

    def close_pipe(self) -> None:
        if self.ready_pipe is not None:
            os.close(self.ready_pipe)
            self.ready_pipe = None


def report_ready() -> None:
    """In a worker, once it serves: tell the supervisor (if any)."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None or os.environ.get(SUPERVISED_ENV) != str(os.getppid()):
        return
    try:
        os.write(int(fd), b"1")
        os.close(int(fd))
    except (OSError, ValueError):
        pass


class Supervisor:
    def __init__(
        self,
        worker_argv: list[str],
        workers: int,
        policies: LastGoodPolicy,
        env: dict[str, str],
        max_failed_starts: int = DEFAULT_MAX_FAILED_STARTS,
        reload_interval: float = 1.0,
        on_worker_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.worker_argv = worker_argv
        self.slots = [_Slot() for _ in range(workers)]
        self.policies = policies
        self.env = env
        self.max_failed_starts = max_failed_starts
        self.reload_interval = reload_interval
        self.on_worker_exit = on_worker_exit
        self.failed_starts = 0
        self.stopping = False

    def _spawn(self, slot: _Slot) -> None:
        argv = [*self.worker_argv, "--last-good", str(self.policies.path)]
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        try:
            slot.proc = subprocess.Popen(argv, env={**self.env, READY_FD_ENV: str(write_end)}, pass_fds=(write_end,))
        finally:
            os.close(write_end)
        slot.ready_pipe, slot.ready_at = read_end, None
        slot.started = time.monotonic()
        slot.proven = False

    def _signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signum)

    def install_signal_handlers(self) -> None:
        def forward(signum: int, _frame: FrameType | None) -> None:
            self.stopping = self.stopping or signum != signal.SIGHUP
            self._signal_all(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, forward)

    def run(self) -> int:
        for slot in self.slots:
            self._spawn(slot)
        next_policy_check = time.monotonic() + self.reload_interval
        while not self.stopping:
            now = time.monotonic()
            if now >= next_policy_check:
                next_policy_check = now + self.reload_interval
                self.policies.refresh()  # workers log their own rejections
            for slot in self.slots:
                reason = self._tend(slot, now)
                if reason is not None:
                    return self._give_up(reason)
            time.sleep(_POLL_S)
        return max((slot.proc.wait() for slot in self.slots if slot.proc is not None), default=0)

    def _tend(self, slot: _Slot, now: float) -> str | None:
        proc = slot.proc
        if proc is None:
            if now >= slot.next_start and not self.stopping:
                self._spawn(slot)
            return None
        slot.poll_ready(now)
        code = proc.poll()
        if code is None:
            if not slot.proven and slot.ready_at is not None and now - slot.ready_at >= MIN_UPTIME_S:
                slot.proven = True
                self.failed_starts = 0
            return None
        slot.close_pipe()
        if self.stopping:
            return None
        if self.on_worker_exit is not None:
            self.on_worker_exit(proc.pid)
        slot.proc = None
        if slot.proven:
            self.failed_starts = 0
            delay = 0.0
            log.error("worker exited; restarting", extra={"pid": proc.pid, "code": code})
        else:
            self.failed_starts += 1
            if self.failed_starts >= self.max_failed_starts:
                return (
                    f"workers failed to start {self.failed_starts} times in a row "
                    f"(last: pid {proc.pid} exited with {code} after {now - slot.started:.1f}s); giving up"
                )
            delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** (self.failed_starts - 1))
            log.error(
                "worker died %.1fs after its start (%s); restarting in %.1fs",
                now - slot.started,
                "before serving" if slot.ready_at is None else "soon after",
                delay,
                extra={"pid": proc.pid, "code": code, "failed_starts": self.failed_starts},
            )
        slot.next_start = now + delay
        return None

    def _give_up(self, reason: str) -> int:
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        for slot in self.slots:
            if slot.proc is not None:
                try:
                    slot.proc.wait(30)
                except subprocess.TimeoutExpired:
                    slot.proc.kill()
                    slot.proc.wait()
        print(f"extproc: {reason}", file=sys.stderr, flush=True)
        return 1


def worker_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, SUPERVISED_ENV: str(os.getpid()), **extra}
    if MULTIPROC_ENV not in extra:
        env.pop(MULTIPROC_ENV, None)
    return env
