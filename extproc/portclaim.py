"""One processor per port: only a supervisor's own workers share it.

Workers share a port through SO_REUSEPORT, and the kernel lets *any*
socket with that option (under the same user) join the group and take
a share of the new connections. A second ``extproc serve`` started by
mistake with another policy would silently answer about half of them. So
the process that owns the port (the supervisor, or a lone server) claims
it twice before anyone listens:

* a name only one process can hold, taken by every ``extproc serve``
  whatever its ``--workers``, so a second instance fails at once, naming
  the holder's pid. On Linux it is the abstract unix socket
  ``@extproc-port-<port>``: abstract names live in the network namespace,
  exactly where port conflicts live (two containers of one pod collide,
  two pods do not), and vanish with their holder, even on SIGKILL. Elsewhere
  it is an ``flock`` on ``<lock dir>/extproc-port-<port>.lock``. Either is
  keyed by the port alone, because ``0.0.0.0:P`` and ``127.0.0.1:P``
  conflict too.
* for a supervisor, a bound (never listening) SO_REUSEPORT socket held for
  its lifetime. It receives no connections, but it keeps the port from
  anything without SO_REUSEPORT, and from other users even with it; the
  supervisor's workers, same user with SO_REUSEPORT, can still join.

What remains possible: a program that is not extproc, runs as the same
user and sets SO_REUSEPORT itself. The kernel offers no way to refuse it.

A lone server (``--workers 1``) binds without SO_REUSEPORT, so the kernel
itself refuses any other listener; its claim is the name plus a probe bind
that turns a busy port into a clear message before gRPC logs its own.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
import tempfile
from pathlib import Path

LOCK_DIR_ENV = "EXTPROC_LOCK_DIR"  # only where abstract unix sockets do not exist


class PortInUse(Exception):
    """The port is served by someone else; the message says by whom if known."""


def _bind(host: str, port: int, reuseport: bool) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
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


class _AbstractName:
    """``@extproc-port-<port>``, listening so a rival can ask who holds it."""

    def __init__(self, port: int):
        self.address = f"\0extproc-port-{port}"
        self.where = f"abstract socket @extproc-port-{port}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.address)
            sock.listen(1)
        except OSError:
            sock.close()
            raise
        self._sock = sock

    @staticmethod
    def holder(port: int) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(f"\0extproc-port-{port}")
                creds = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                return str(struct.unpack("3i", creds)[0])
        except OSError:
            return "?"

    def release(self) -> None:
        self._sock.close()


class _LockFile:
    def __init__(self, port: int):
        import fcntl

        directory = Path(os.environ.get(LOCK_DIR_ENV) or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
        self.where = str(directory / f"extproc-port-{port}.lock")
        try:
            fd = os.open(self.where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:  # another user's lock file: flock works read-only too
            fd = os.open(self.where, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        try:  # the pid only makes the next instance's message helpful
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError:
            pass

    @staticmethod
    def holder(port: int) -> str:
        directory = Path(os.environ.get(LOCK_DIR_ENV) or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
        try:
            return (directory / f"extproc-port-{port}.lock").read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        os.close(self._fd)  # closing drops the flock


_NAME = _AbstractName if sys.platform.startswith("linux") else _LockFile


class PortClaim:
    """Held by the process that owns ``port``; ``release()`` (or exit) frees it."""

    def __init__(self, host: str, port: int, *, for_workers: bool):
        self.port = port
        self._socket: socket.socket | None = None
        try:
            self._name: _AbstractName | _LockFile | None = _NAME(port)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EWOULDBLOCK):
                raise PortInUse(
                    f"port {port} is already served by another extproc (pid {_NAME.holder(port)})"
                ) from None
            raise PortInUse(f"cannot claim port {port}: {exc.strerror or exc}") from None
        try:
            self._socket = _bind(host, port, reuseport=for_workers)
        except OSError as exc:
            self.release()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} is already in use by another process") from None
            raise PortInUse(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
        if not for_workers:
            # A lone server's gRPC listener takes the port right after; the
            # name keeps other extproc instances off it in the meantime.
            self._socket.close()
            self._socket = None

    def release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._name is not None:
            self._name.release()
            self._name = None
