"""The shared server in a real browser: a closed tab stops its run, and SIGTERM ends the server cleanly even
while it trains. Each test starts its own server, so that its CPU and exit are its own. How long stopping took
is reported (test-artifacts/timings.txt); the tests only guard against a hang."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from server_probe import GUARD_S, report, wait_until_busy, wait_until_idle

# Epochs of 30,000 single-row steps: several seconds each, so only a check between mini-batches stops quickly.
LONG = "Playground?pretrain-epochs=5&epochs=5&n-samples=30000&batch-size=1&d-in=8&hidden=8&d-out=8&seed=31"


def _start_training(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{url}/{LONG}")
    page.locator("h1").first.wait_for()
    page.get_by_role("button", name="Train").click()
    # The progress bar appears as the job is submitted; its first epoch (tens of seconds of one-row steps) need
    # not finish: wait_until_busy then tells that the run computes.
    page.locator('[data-testid="stProgress"]').wait_for(timeout=120_000)
    return context


def test_a_closed_tab_stops_its_run(browser, launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-closed-tab.log")
    try:
        context = _start_training(browser, url)
        wait_until_busy(proc.pid)  # the run computes
        context.close()  # the tab goes away mid-epoch
        seconds = wait_until_idle(proc.pid)  # the session ends when its websocket closes, the run at its next step
        report(Path(log.name).parent, f"closed tab: the server went idle {seconds:.2f} s after the tab closed")
    finally:
        proc.kill()
        proc.wait(GUARD_S)
        log.close()


def test_sigterm_while_training_exits_cleanly(browser, launch, tmp_path):
    url, proc, log = launch(tmp_path / "cache", "streamlit-sigterm.log")
    try:
        context = _start_training(browser, url)
        wait_until_busy(proc.pid)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(GUARD_S)  # a hang, not a slow machine, reaches this
        seconds = time.monotonic() - start
        context.close()
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    finally:
        log.close()
    text = Path(log.name).read_text()
    report(Path(log.name).parent, f"SIGTERM while training: exit status {code} after {seconds:.2f} s")
    assert code == 0, f"exit status {code} (-6 is SIGABRT) after {seconds:.2f} s"
    assert "Traceback" not in text and "Aborted" not in text, text[-2000:]
