"""ui/gate.py: at most BUILDERS page builds at once, a waiting build gives its place up, nothing leaks."""

from __future__ import annotations

import threading

from ui import gate

HANG_S = 30  # a guard against a deadlock, not a timing: every wait below ends at once when the gate works


def _places_free() -> int:
    """How many places are free now (taken and given back, so the count is unchanged)."""
    taken = 0
    while gate._PLACES.acquire(blocking=False):
        taken += 1
    for _ in range(taken):
        gate._PLACES.release()
    return taken


def _hold(entered: threading.Event, leave: threading.Event, wait_inside: bool = False) -> threading.Thread:
    def run() -> None:
        with gate.building():
            entered.set()
            if wait_inside:
                with gate.waiting():
                    leave.wait(HANG_S)
            else:
                leave.wait(HANG_S)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_builds_beyond_the_places_wait_until_one_ends():
    leave = threading.Event()
    inside = [threading.Event() for _ in range(gate.BUILDERS + 2)]
    threads = [_hold(e, leave) for e in inside]
    for e in inside[:gate.BUILDERS]:
        assert e.wait(HANG_S)
    assert _places_free() == 0
    leave.set()  # the first builds end: the others get in, one place at a time
    for e in inside:
        assert e.wait(HANG_S)
    for t in threads:
        t.join(HANG_S)
        assert not t.is_alive()
    assert _places_free() == gate.BUILDERS


def test_a_build_waiting_for_its_job_lets_another_build_meanwhile():
    leave = threading.Event()
    waiters = [threading.Event() for _ in range(gate.BUILDERS)]
    threads = [_hold(e, leave, wait_inside=True) for e in waiters]
    for e in waiters:
        assert e.wait(HANG_S)
    other = threading.Event()
    threads.append(_hold(other, leave))  # every place's build is waiting: this one gets in
    assert other.wait(HANG_S)
    leave.set()
    for t in threads:
        t.join(HANG_S)
        assert not t.is_alive()
    assert _places_free() == gate.BUILDERS


def test_nested_builds_take_one_place_and_an_error_gives_it_back():
    def run() -> None:
        with gate.building():  # a page's build runs its fragment's first run inside it
            with gate.building():
                assert _places_free() == gate.BUILDERS - 1
            raise ValueError("the page failed")

    failed = []
    thread = threading.Thread(target=lambda: failed.append(_raises(run)), daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert failed == [True]
    assert _places_free() == gate.BUILDERS


def test_waiting_outside_a_build_takes_nothing():
    with gate.waiting():
        assert _places_free() == gate.BUILDERS
    assert _places_free() == gate.BUILDERS


def _raises(run) -> bool:
    try:
        run()
    except ValueError:
        return True
    return False
