"""Prometheus metrics (``extproc serve --metrics-port N``).

The metric objects live at module level so any module can import and use
them; they cost nothing until something increments them, and the request
path increments them only while metrics are on (``extproc.audit.telemetry``).

Hooks for other subsystems (import and increment; no set-up needed):

* ``QUOTA_DECISIONS.labels(limit=<policy quota name>, result=<allow|deny|fail_open|fail_closed>).inc()``
* ``REDIS_ERRORS.labels(operation=<e.g. acquire|release|script_load|connect>).inc()``

Keep label values bounded (names from the policy, fixed words), never a
subject, key or path: each distinct value is a new time series.

Several worker processes (``--workers N``): prometheus_client's multiprocess
mode. The supervisor gives every worker the same ``PROMETHEUS_MULTIPROC_DIR``
(a fresh private directory), each worker writes its samples there (mmap'd
files), and the supervisor alone serves ``/metrics``, summing them: one
scrape target per replica whatever ``--workers`` is. Counters and histograms
sum across workers; counters of a worker that died and was replaced keep
counting (its file stays), so totals never go backwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("extproc.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DECISIONS = Counter(
    "extproc_decisions",
    "Requests decided, by Envoy filter, policy route and outcome (allow|deny|error).",
    ["filter", "route", "decision"],
)
CAPABILITY_DECISIONS = Counter(
    "extproc_capability_decisions",
    "Capability decisions, by capability, mode (enforce|monitor) and outcome.",
    ["capability", "mode", "decision"],
)
DECISION_SECONDS = Histogram(
    "extproc_decision_duration_seconds",
    "Processor time from receiving a request's headers to its request-headers decision.",
    ["filter"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
POLICY_RELOADS = Counter(
    "extproc_policy_reloads",
    "Policy reloads, by result (ok: a new revision is live; failed: rejected, the last good revision keeps serving).",
    ["result"],
)
SPANS_DROPPED = Counter(
    "extproc_spans_dropped",
    "Audit spans lost, by reason (queue_full: the export queue was full; "
    "export_failed: the OTLP endpoint refused or was unreachable).",
    ["reason"],
)
DECISION_LOG_DROPPED = Counter(
    "extproc_decision_log_dropped", "Decision log lines lost because the writer fell behind."
)
# Set by extproc.bundle.status. livemax: with --workers, 1 for every revision
# some live worker serves (two at once while a reload spreads).
POLICY_REVISION = Gauge(
    "extproc_policy_revision_info",
    "The policy revision this processor serves (1), by revision.",
    ["revision"],
    multiprocess_mode="livemax",
)

# Hooks for the quota subsystem (extproc/quota, extproc/capabilities/quota.py).
QUOTA_DECISIONS = Counter(
    "extproc_quota_decisions",
    "Quota checks, by policy limit name and result (allow|deny|fail_open|fail_closed).",
    ["limit", "result"],
)
REDIS_ERRORS = Counter(
    "extproc_redis_errors", "Errors talking to the quota backend's Redis, by operation.", ["operation"]
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def serve_http(port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics for this process; returns (server, thread) so it can be stopped."""
    return start_http_server(port, addr=host)


class MultiprocessExporter:
    """The supervisor's side of multiprocess mode: owns the shared directory,
    serves the sum of every worker's samples."""

    def __init__(self, port: int, host: str):
        self.directory = tempfile.mkdtemp(prefix="extproc-metrics-")
        from prometheus_client import multiprocess

        self._multiprocess = multiprocess
        registry = CollectorRegistry()
        # prometheus_client leaves the multiprocess API unannotated.
        multiprocess.MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)

    def env(self) -> dict[str, str]:
        return {MULTIPROC_ENV: self.directory}

    def worker_exited(self, pid: int) -> None:
        try:
            self._multiprocess.mark_process_dead(pid, path=self.directory)  # type: ignore[no-untyped-call]
        except OSError:
            pass

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)
