"""Keep unit tests in one process.

``make unit`` promises no child processes: no Redis, no Envoy, no processor,
no fresh interpreter, no process pool. The markers that keep those tests out
of it are set by directory and by fixture (tests/conftest.py); a test that
starts a process some other way would slip into the fast suite unseen. While
a test without the ``e2e`` or ``integration`` marker runs, every way Python
starts a process raises ``ChildProcessInUnitTest`` instead, and the test
fails naming the marker it needs.

Code under test that starts processes in the background and can do without
them (the guards' scan pool falls back to threads) gets the same refusal and
takes its fallback: only attempts from the test's own thread fail the test.
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class ChildProcessInUnitTest(RuntimeError):
    pass


# Where CPython starts a process: subprocess (fork_exec, bound at import, or
# posix_spawn), multiprocessing's spawn and forkserver (fork_exec looked up
# at call time) and its fork context (os.fork).
_ENTRY_POINTS: list[tuple[Any, str]] = [
    (subprocess, "_fork_exec"),
    (_posixsubprocess, "fork_exec"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
    (os, "fork"),
]


@contextmanager
def no_child_processes(test_id: str) -> Iterator[list[str]]:
    """Within the block, starting a process raises; yields the list of
    refusals made on the calling thread (empty if the test kept to itself)."""
    owner = threading.get_ident()
    refused: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def refused_call(*args: Any, **kwargs: Any) -> Any:
            message = (
                f"{test_id} started a child process ({name}); "
                "mark it @pytest.mark.integration (or e2e when it runs Envoy)"
            )
            if threading.get_ident() == owner:
                refused.append(message)
            raise ChildProcessInUnitTest(message)

        return refused_call

    saved = [(owner_module, name, getattr(owner_module, name)) for owner_module, name in _ENTRY_POINTS]
    for owner_module, name, _ in saved:
        setattr(owner_module, name, refuse(f"{owner_module.__name__}.{name}"))
    try:
        yield refused
    finally:
        for owner_module, name, original in saved:
            setattr(owner_module, name, original)
