"""The decision log: one JSON object per line per decision, shaped like OPA's
decision logs so the same pipelines (Fluent Bit, Vector, Loki, a SIEM) read it.

    {"decision_id": "9f0c…", "timestamp": "2026-11-27T17:44:45.612345Z",
     "revision": "3b1d…", "path": "extproc/ext_authz/api",
     "input": {"method": "GET", "path": "/api/hello", "host": "gw.example",
               "scheme": "http", "route": "api", "filter": "ext_authz",
               "headers": {"user-agent": "curl/8.5.0", …},
               "identity": {"subject": "alice", "roles": ["reader"], "methods": ["jwt"], …}},
     "result": {"allowed": false, "status": 403, "code": "forbidden",
                "reason": "no allow rule matched",
                "records": [{"capability": "jwt", "mode": "enforce", "decision": "allow"},
                            {"capability": "rbac", "mode": "enforce", "decision": "deny", …}],
                "attributes": {"gen_ai.request.model": "gpt-4o-mini", …}},
     "erased": ["/input/headers/authorization", "/input/query"],
     "labels": {"service": "extproc", "instance_id": "…", "version": "0.1.0"},
     "metrics": {"timer_decision_ns": 183000},
     "trace_id": "…", "span_id": "…"}

Masking (OPA's ``erased``): a masked field is removed and its JSON pointer
listed under ``erased``. Always erased: the query string (credentials travel
there too), JWT claims, bodies (never logged at all). Headers are erased when
their name matches the mask list (defaults below plus ``--decision-log-mask``
patterns) or their value looks like a credential or an e-mail address.
Pseudo-headers are left out (they are ``method``/``path``/``host``).

Writing never blocks a request: lines go through a bounded queue to a writer
thread; when it is full the line is dropped and counted
(``extproc_decision_log_dropped_total``). Each line is written with a single
``write`` so workers sharing a file (``O_APPEND``) or a pipe never interleave
within a line (on a pipe, lines up to PIPE_BUF = 4 KiB).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from extproc.audit.record import AuditRecord
from extproc.context import RequestContext

log = logging.getLogger("extproc.decision_log")

# Header names (fnmatch patterns, lower case) whose values never appear.
DEFAULT_MASK = (
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-refresh-token",
    "x-id-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-iap-jwt-assertion",
    "x-forwarded-client-cert",
    "x-client-cert",
    "ssl-client-cert",
    "*token*",
    "*secret*",
    "*password*",
    "*passwd*",
    "*session*",
    "*credential*",
    "*api-key*",
    "*apikey*",
    "*signature*",
    "*-key",
)
_SENSITIVE_VALUE = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"  # JWT / JWS
    r"|^\s*(?i:bearer|basic|digest|negotiate)\s"  # an Authorization-style credential
    r"|[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"  # e-mail address
)
MAX_HEADER_VALUE = 512
QUEUE_SIZE = 10_000


def _now_rfc3339(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1000:06d}Z"


class HeaderMask:
    def __init__(self, extra: Iterable[str] = ()):
        patterns = [p.strip().lower() for p in (*DEFAULT_MASK, *extra) if p and p.strip()]
        self._regex = re.compile("|".join(fnmatch.translate(p) for p in patterns))
        self._known: dict[str, bool] = {}  # header names repeat: decide each once

    def masked_name(self, name: str) -> bool:
        known = self._known.get(name)
        if known is None:
            known = self._regex.match(name.lower()) is not None
            if len(self._known) < 4096:
                self._known[name] = known
        return known

    def apply(self, headers: dict[str, str], erased: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in headers.items():
            if name.startswith(":"):
                continue
            if self.masked_name(name) or _SENSITIVE_VALUE.search(value):
                erased.append("/input/headers/" + name.replace("~", "~0").replace("/", "~1"))
                continue
            out[name] = value if len(value) <= MAX_HEADER_VALUE else value[:MAX_HEADER_VALUE] + "…"
        return out


class DecisionLog:
    """Formats and writes decision log lines to ``destination`` (``-`` for
    stdout or a file path, opened for appending)."""

    def __init__(
        self,
        destination: str,
        labels: dict[str, str],
        mask: Iterable[str] = (),
        queue_size: int = QUEUE_SIZE,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.destination = destination
        self.labels = labels
        self.mask = HeaderMask(mask)
        self.dropped = 0
        self._on_drop = on_drop
        if destination == "-":
            self._fd = sys.stdout.fileno()
            self._own_fd = False
        else:
            self._fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._own_fd = True
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._thread = threading.Thread(target=self._run, name="extproc-decision-log", daemon=True)
        self._thread.start()

    # -- building ---------------------------------------------------------

    def entry(
        self,
        ctx: RequestContext,
        record: AuditRecord,
        end_ns: int,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> dict[str, Any]:
        request = ctx.request
        erased: list[str] = []
        inp: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "host": request.host,
            "scheme": request.scheme,
            "route": record.route,
            "filter": record.filter,
            "headers": self.mask.apply(request.headers, erased),
        }
        if request.query:
            erased.append("/input/query")
        if record.identity:
            inp["identity"] = record.identity
        if ctx.identity.claims:
            erased.append("/input/identity/claims")
        result: dict[str, Any] = {"allowed": record.decision == "allow"}
        if record.status is not None:
            result["status"] = record.status
            result["code"] = record.code
            result["reason"] = record.reason
        elif record.upstream_status is not None:
            result["status"] = record.upstream_status
        result["records"] = [c.as_dict() for c in record.capabilities]
        if record.facts:
            result["attributes"] = record.facts
        entry: dict[str, Any] = {
            "decision_id": record.decision_id,
            "timestamp": _now_rfc3339(end_ns),
            "revision": record.revision,
            "path": f"extproc/{record.filter}/{record.route or '-'}",
            "input": inp,
            "result": result,
        }
        if erased:
            entry["erased"] = erased
        entry["labels"] = self.labels
        if record.decision_ns:
            entry["metrics"] = {"timer_decision_ns": record.decision_ns}
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = span_id
        return entry

    # -- writing ----------------------------------------------------------

    def submit(self, entry: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()

    def _run(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None:
                return
            try:
                line = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=str) + "\n"
                data = line.encode()
                while data:
                    written = os.write(self._fd, data)
                    data = data[written:]
            except Exception:
                log.exception("decision log write failed")

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout``), then stop."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._own_fd:
            try:
                os.close(self._fd)
            except OSError:
                pass
