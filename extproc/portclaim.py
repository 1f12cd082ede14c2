"""One processor per port: only a supervisor's own workers share it.

Workers share a port through SO_REUSEPORT, and the kernel lets *any*
socket with that option (under the same user) join the group and take
a share of the new connections. A second ``extproc serve`` started by
mistake with another policy would silently answer about half of them. So
the process that owns the port (the supervisor, or a lone server) claims
it twice before anyone listens:

* an exclusive ``flock`` on ``<lock dir>/extproc-port-<port>.lock``, which
  every ``extproc serve`` takes, whatever its ``--workers``: a second
  instance fails at once, naming the holder's pid. The lock is keyed by the
  port alone, because ``0.0.0.0:P`` and ``127.0.0.1:P`` conflict too. The
  kernel drops it when the holder dies, even by SIGKILL: no stale lock.
* a bound (never listening) socket held for the supervisor's lifetime. A
  bound socket receives no connections, but it keeps the port from anyone
  without SO_REUSEPORT, and from any other user even with it; the
  supervisor's workers, same user with SO_REUSEPORT, can still join.

A lone server (``--workers 1``) binds without SO_REUSEPORT, so the kernel
itself refuses any other listener; its claim is the lock plus a probe bind
that turns a busy port into a clear message before gRPC logs its own.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import tempfile
from pathlib import Path

LOCK_DIR_ENV = "EXTPROC_LOCK_DIR"


class PortInUse(Exception):
    """The port is served by someone else; the message says by whom if known."""


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


def _bind(host: str, port: int, reuseport: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does: TIME_WAIT is no conflict
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


class PortClaim:
    """Held by the process that owns ``port``; ``release()`` (or exit) frees it."""

    def __init__(self, host: str, port: int, *, for_workers: bool):
        self.port = port
        self.lock_path = lock_dir() / f"extproc-port-{port}.lock"
        self._lock_fd: int | None = None
        self._socket: socket.socket | None = None
        try:
            self._take_lock()
        except OSError as exc:
            raise PortInUse(f"cannot lock {self.lock_path}: {exc.strerror or exc} (set {LOCK_DIR_ENV})") from None
        try:
            self._socket = _bind(host, port, reuseport=for_workers)
        except OSError as exc:
            self.release()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is already in use by another process") from None
            raise PortInUse(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
        if not for_workers:
            # A lone server's gRPC listener takes the port right after; the lock
            # keeps other extproc instances off it in the meantime.
            self._socket.close()
            self._socket = None

    def _take_lock(self) -> None:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:  # another user's lock file: flock works read-only too
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PortInUse(f"port {self.port} is already served by another extproc (pid {holder}; "
                            f"lock {self.lock_path})") from None
        except OSError:
            os.close(fd)
            raise
        self._lock_fd = fd
        try:  # the pid only makes the next instance's message helpful
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

