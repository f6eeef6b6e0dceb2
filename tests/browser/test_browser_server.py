"""The shared server in a real browser: a closed tab stops its run, and SIGTERM ends the server cleanly and
quickly even while it trains. Each test starts its own server, so that its CPU and exit are its own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

# Epochs of 30,000 single-row steps: several seconds each, so only a check between mini-batches stops quickly.
LONG = "Playground?pretrain-epochs=5&epochs=5&n-samples=30000&batch-size=1&d-in=8&hidden=8&d-out=8&seed=31"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _busy(pid: int, seconds: float = 1.0) -> float:
    start = _cpu_seconds(pid)
    time.sleep(seconds)
    return (_cpu_seconds(pid) - start) / seconds


def _start_training(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/{LONG}")
    page.locator("h1").first.wait_for()
    page.get_by_role("button", name="Train").click()
    page.locator('[data-testid="stProgress"]').filter(has_text="pretraining").wait_for(timeout=60_000)
    return context


def test_a_closed_tab_stops_its_run(browser, launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-closed-tab.log")
    try:
        context = _start_training(browser, url)
        assert _busy(proc.pid, 0.5) > 0.5, "the run should keep the server busy"
        context.close()  # the tab goes away mid-epoch
        time.sleep(1.5)  # the session ends when its websocket closes; the run stops before its next step
        busy = _busy(proc.pid, 1.5)
        assert busy < 0.3, f"the server still uses {busy:.0%} of a CPU after the tab closed"
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


def test_sigterm_while_training_exits_cleanly_within_two_seconds(browser, launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-sigterm.log")
    try:
        context = _start_training(browser, url)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(10)
        seconds = time.monotonic() - start
        context.close()
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        log.close()
    assert code == 0 and seconds < 2.0, f"exit status {code} after {seconds:.2f} s"
