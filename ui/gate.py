"""At most a few script runs build pages at once.

A page run is Python under the GIL. When twenty sessions press Train in the same second, twenty script threads
competing for the GIL starve the server's event loop (its health check, every websocket): a thread that wants
the GIL waits behind all the others, each holding it for the interpreter's switch interval. Builds beyond the
first BUILDERS wait on a semaphore instead (a blocked thread does not compete), so the event loop competes with
at most BUILDERS threads. A build that waits for its job lets go of its place meanwhile (`waiting`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

BUILDERS = 2  # Python runs one thread at a time: more builders at once only lengthen the event loop's waits
_PLACES = threading.BoundedSemaphore(BUILDERS)
_HELD = threading.local()  # whether this thread holds a place (a page's build includes its fragments' first run)


def _holds() -> bool:
    return getattr(_HELD, "place", False)


@contextlib.contextmanager
def building() -> Iterator[None]:
    """Hold one of the BUILDERS places while the block runs (at once if this thread already holds one)."""
    if _holds():
        yield
        return
    _PLACES.acquire()
    _HELD.place = True
    try:
        yield
    finally:
        _HELD.place = False
        _PLACES.release()


@contextlib.contextmanager
def waiting() -> Iterator[None]:
    """Inside a build, give its place to another while the block waits (for a job), and take one back after."""
    if not _holds():
        yield
        return
    _HELD.place = False
    _PLACES.release()
    try:
        yield
    finally:
        _PLACES.acquire()
        _HELD.place = True
