"""At most one long computation per browser session at a time (a double click starts no second).

Streamlit runs a session's script in one thread, and a click during a run normally asks that
run to stop at its next Streamlit call. But a computation inside the library makes no
Streamlit calls until it returns, and when a run is stopped or its script runner is replaced
(a rerun that arrives while the old runner is shutting down), Streamlit starts a new thread
for the new run while the old one is still computing. Two adaptations of one session would
then compete for the same CPU. `OneRunAtATime.hold(session)` makes the new run wait for the
old computation to end (its result lands in the cache, so the new run is quick when it
asked for the same thing). Different sessions never wait for each other here.

No streamlit here: the pages pass a session token of their own.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class OneRunAtATime:
    """A lock per session, created on demand and dropped when nobody holds or waits for it,
    so sessions that have gone leave nothing behind."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        # Re-entrant: a guarded computation that calls another guarded one (a page that adapts
        # inside its own long computation) must not wait for itself.
        self._locks: dict[str, tuple[threading.RLock, int]] = {}  # session -> (lock, holders and waiters)

    @contextmanager
    def hold(self, session: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(session, (threading.RLock(), 0))
            self._locks[session] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[session]
                if users == 1:
                    del self._locks[session]
                else:
                    self._locks[session] = (lock, users - 1)

    def sessions(self) -> int:
        """Sessions with a computation running or waiting."""
        with self._guard:
            return len(self._locks)


LONG_COMPUTATIONS = OneRunAtATime()  # one per server process: every session's long computations
