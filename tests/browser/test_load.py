"""A room on one server: N browser sessions press Train together, half of them with identical settings.

Marker `load` (and `browser`); N from $LOAD_SESSIONS (CI: 4). Reports, per session, the seconds from click to
finished charts and whether the page shows its own settings' result; how many runs the server computed; the
health check's worst latency while it worked; the server's peak memory (reported, not asserted: timings on a
shared 2-core machine measure the browsers too). Loopback only, bounded in time.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.load
SESSIONS = int(os.environ.get("LOAD_SESSIONS", "4"))
SMALL = "d-in=16&hidden=16&d-out=16&n-samples=256&n-eval=64&pretrain-epochs=15&epochs=15&batch-size=32"


def _peak_rss_mib(pid: int) -> float:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def test_sessions_pressing_train_together(browser, launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-load.log")
    worst_health, stop = [0.0], threading.Event()

    def watch_health() -> None:
        while not stop.wait(0.1):
            start = time.perf_counter()
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=10).read()
            worst_health[0] = max(worst_health[0], time.perf_counter() - start)

    # Half the sessions share one setting (seed 500); the others each have their own seed.
    seeds = [500 if i % 2 == 0 else 600 + i for i in range(SESSIONS)]
    contexts, pages = [], []
    try:
        for seed in seeds:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            page.set_default_timeout(180_000)
            page.goto(f"{url}/Playground?{SMALL}&seed={seed}")
            page.get_by_role("button", name="Train").wait_for()
            contexts.append(context)
            pages.append(page)
        time.sleep(1.0)
        watcher = threading.Thread(target=watch_health, daemon=True)
        watcher.start()
        clicked = []
        for page in pages:  # as close together as one driver can click
            page.get_by_role("button", name="Train").click()
            clicked.append(time.perf_counter())
        seconds, own = [], []
        for page, start in zip(pages, clicked, strict=True):
            page.get_by_text("Merge check").first.wait_for()
            seconds.append(time.perf_counter() - start)
            # the page's settings are the run's: no "results are from different settings" note, a fresh chart
            own.append(page.get_by_text("from different settings").count() == 0
                       and page.locator(".js-plotly-plot").count() >= 1)
        stop.set()
        watcher.join(5)
        peak = _peak_rss_mib(proc.pid)
    finally:
        for context in contexts:
            context.close()
        proc.terminate()
        proc.wait(10)
        log.close()
    computed = (Path(log.name)).read_text().count("lora-explorer: computing a run")
    distinct = len(set(seeds))
    report = (f"{SESSIONS} sessions, {distinct} distinct settings: click-to-chart "
              f"{min(seconds):.2f}-{max(seconds):.2f} s (last {max(seconds):.2f} s); own result on "
              f"{sum(own)}/{SESSIONS}; runs computed {computed}; worst health check {worst_health[0]:.3f} s; "
              f"server peak RSS {peak:.0f} MiB")
    print(report)
    (Path(log.name).parent / f"load-{SESSIONS}.txt").write_text(report + "\n")
    assert all(own)
    assert computed == distinct  # identical settings computed once
    # Latencies are reported above, not asserted: on a 2-core machine they measure the browsers' load too.
