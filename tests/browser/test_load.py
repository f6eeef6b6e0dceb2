"""A room on one server: N sessions press Train together, half of them with identical settings.

Marker `load` (and `browser`); N from $LOAD_SESSIONS (CI: 4). Two kinds of session:
- protocol clients (tests/browser/protocol.py) on the default preset: the server alone on the machine's cores, as
  in a workshop where the browsers run on the participants' laptops, with $LOAD_ROOM_VIEWERS Room pages refreshing
  themselves every REFRESH_S seconds meanwhile (the wall of a workshop);
- real Chromium tabs on the small model of the browser tests: the same checks through the real frontend, with
  the renderers sharing the server's cores (so their latencies measure the browsers too).
Each reports, per session, the seconds from click to finished charts and whether the page shows its own
settings' result; how many runs the server computed; the health check's worst latency while it worked; the
server's peak memory; the protocol test also one distinct run's solo time, to compare the last session with.
Latencies are reported (README), not asserted. Loopback only, bounded in time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from protocol import PageSession

from ui.room_view import REFRESH_S

pytestmark = pytest.mark.load
SESSIONS = int(os.environ.get("LOAD_SESSIONS", "4"))
ROOM_VIEWERS = int(os.environ.get("LOAD_ROOM_VIEWERS", "2"))  # Room pages open (refreshing) in the browser test
SMALL = "d-in=16&hidden=16&d-out=16&n-samples=256&n-eval=64&pretrain-epochs=15&epochs=15&batch-size=32"
SHARED_SEED = 500


def _seeds() -> list[int]:
    """Half the sessions share one setting (seed 500); the others each have their own seed."""
    return [SHARED_SEED if i % 2 == 0 else 600 + i for i in range(SESSIONS)]


class HealthWatch:
    """Polls the server's health check ten times a second from a thread; `.worst` is the slowest answer."""

    def __init__(self, url: str):
        self.url, self.worst, self._stop = url, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            start = time.perf_counter()
            urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=10).read()
            self.worst = max(self.worst, time.perf_counter() - start)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def _peak_rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def _stop(proc, log) -> int:
    """Stop the server; how many runs it computed (it logs one line per computed run)."""
    proc.terminate()
    proc.wait(10)
    log.close()
    return Path(log.name).read_text().count("lora-explorer: computing a run")


def _report(name: str, artifacts: Path, seconds: list[float], own: list[bool], computed: int, health: float,
            peak: float, extra: str = "") -> None:
    distinct = len(set(_seeds()))
    report = (f"{name}: {SESSIONS} sessions, {distinct} distinct settings: click-to-chart "
              f"{min(seconds):.2f}-{max(seconds):.2f} s (last {max(seconds):.2f} s){extra}; own result on "
              f"{sum(own)}/{SESSIONS}; runs computed {computed}; worst health check {health:.3f} s; "
              f"server peak RSS {peak:.0f} MiB")
    print(report)
    (artifacts / f"load-{name}-{SESSIONS}.txt").write_text(report + "\n")
    assert all(own)
    assert computed == distinct  # identical settings computed once


def _in_own_loop(make_coroutine):
    """Run a coroutine on an event loop of its own thread: after the browser tests, Playwright's sync API keeps
    an event loop running on this one, where asyncio.run refuses to start."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = asyncio.run(make_coroutine())
        except BaseException as error:  # re-raised in the test's thread
            out["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_protocol_sessions_pressing_train_together(launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-load-protocol.log")

    async def room() -> tuple[float, list[float], list[bool], float, list[float]]:
        # One run to warm the server up (torch's and Plotly's first calls), then one distinct run alone.
        for seed in (SHARED_SEED - 2, SHARED_SEED - 1):
            alone = await PageSession.open(url, "Playground", f"seed={seed}")
            solo = await alone.press("Train")
            await alone.close()
        viewers = [await PageSession.open(url, "Room") for _ in range(ROOM_VIEWERS)]
        assert all(v.auto_reruns for v in viewers)  # the board asked to be refreshed
        sessions = [await PageSession.open(url, "Playground", f"seed={seed}") for seed in _seeds()]
        on_board = f"{SESSIONS + 2} run(s) on the board"  # the two runs above and every session's
        with HealthWatch(url) as health:
            pressed = asyncio.gather(*(s.press("Train") for s in sessions))
            watched = asyncio.gather(*(_watch(v, pressed, on_board) for v in viewers))
            seconds, refreshes = await pressed, await watched
        # the page's settings are the run's: its charts drawn, no "results are from different settings" note
        own = [s.shows("Merge check") and not s.shows("from different settings") for s in sessions]
        for s in (*sessions, *viewers):
            await s.close()
        return solo, list(seconds), own, health.worst, [t for r in refreshes for t in r]

    try:
        solo, seconds, own, worst, refreshes = _in_own_loop(lambda: asyncio.wait_for(room(), 600))
        peak = _peak_rss_mib(proc.pid)
    finally:
        computed = _stop(proc, log)
    distinct = len(set(_seeds()))
    _report("protocol", Path(log.name).parent, seconds, own, computed - 2, worst, peak,
            f", one distinct run alone {solo:.2f} s, last / (distinct x alone) "
            f"{max(seconds) / (distinct * solo):.2f}; {ROOM_VIEWERS} Room page(s) refreshing every {REFRESH_S:g} s "
            f"saw every run, {len(refreshes)} refreshes, slowest {max(refreshes, default=0):.2f} s")


async def _watch(viewer: PageSession, pressed: asyncio.Future, expected: str, limit_s: float = 300) -> list[float]:
    """Refresh a Room page every REFRESH_S seconds until the room's runs are done and it shows `expected`;
    the seconds each refresh took. Bounded by `limit_s`."""
    took, deadline = [], time.monotonic() + limit_s
    while time.monotonic() < deadline:
        await asyncio.sleep(REFRESH_S)
        took.append(await viewer.refresh())
        if pressed.done() and viewer.shows(expected):
            return took
    raise TimeoutError(f"a Room page did not come to show {expected!r} within {limit_s:.0f} s")


# A run the server admits but estimates at over a minute: it goes to the long lane (scheduler.LONG_RUN_S).
LONG = "d-in=8&hidden=8&d-out=8&n-samples=20000&n-eval=16&batch-size=1&pretrain-epochs=3&epochs=3&seed=900"


def test_a_long_run_does_not_hold_the_short_ones_behind_it(launch, tmp_path):
    """One session starts a long run; the others press Train meanwhile. Their click-to-chart is reported against
    one such run alone (a lane of its own keeps them from queueing behind it; they share the CPU with it)."""
    url, proc, log = launch(tmp_path / "cache", "streamlit-load-long.log")

    async def room() -> tuple[float, list[float], list[bool], bool]:
        for seed in (SHARED_SEED - 4, SHARED_SEED - 3):  # warm the server up, then one run alone
            alone = await PageSession.open(url, "Playground", f"seed={seed}")
            solo = await alone.press("Train")
            await alone.close()
        long_session = await PageSession.open(url, "Playground", LONG)
        long_run = asyncio.ensure_future(long_session.press("Train"))
        await asyncio.sleep(2.0)  # it has started computing
        others = [await PageSession.open(url, "Playground", f"seed={700 + i}") for i in range(SESSIONS)]
        seconds = await asyncio.gather(*(s.press("Train") for s in others))
        own = [s.shows("Merge check") for s in others]
        still_running = not long_run.done()
        for s in others:
            await s.close()
        long_run.cancel()
        await long_session.close()
        return solo, list(seconds), own, still_running

    try:
        solo, seconds, own, still_running = _in_own_loop(lambda: asyncio.wait_for(room(), 600))
    finally:
        _stop(proc, log)
    report = (f"long run beside: {SESSIONS} sessions pressed Train while another session's long run trained: "
              f"click-to-chart {min(seconds):.2f}-{max(seconds):.2f} s against {solo:.2f} s alone; the long run "
              f"{'was still running' if still_running else 'had finished'} when they were done")
    print(report)
    (Path(log.name).parent / f"load-long-{SESSIONS}.txt").write_text(report + "\n")
    assert all(own)


def test_browser_sessions_pressing_train_together(browser, launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-load.log")
    contexts, pages, viewers = [], [], []
    try:
        for _ in range(ROOM_VIEWERS):  # the wall of a workshop: the board refreshing itself while the room trains
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            viewer = context.new_page()
            viewer.set_default_timeout(180_000)
            viewer.goto(f"{url}/Room")
            viewer.get_by_text("run(s) on the board", exact=False).wait_for()
            contexts.append(context)
            viewers.append(viewer)
        for seed in _seeds():
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.set_default_timeout(180_000)
            page.goto(f"{url}/Playground?{SMALL}&seed={seed}")
            page.get_by_role("button", name="Train").wait_for()
            contexts.append(context)
            pages.append(page)
        time.sleep(1.0)
        with HealthWatch(url) as health:
            clicked = []
            for page in pages:  # as close together as one driver can click
                page.get_by_role("button", name="Train").click()
                clicked.append(time.perf_counter())
            seconds, own = [], []
            for page, start in zip(pages, clicked, strict=True):
                page.get_by_text("Merge check").first.wait_for()
                seconds.append(time.perf_counter() - start)
                own.append(page.get_by_text("from different settings").count() == 0
                           and page.locator(".js-plotly-plot").count() >= 1)
            for viewer in viewers:  # every session's run reached the board, and the board redrew itself
                viewer.get_by_text(f"{SESSIONS} run(s) on the board", exact=False).wait_for()
        peak = _peak_rss_mib(proc.pid)
    finally:
        for context in contexts:
            context.close()
        computed = _stop(proc, log)
    _report("browser", Path(log.name).parent, seconds, own, computed, health.worst, peak,
            f"; {ROOM_VIEWERS} Room page(s) open, refreshing every {REFRESH_S:g} s, saw all {SESSIONS} runs")
