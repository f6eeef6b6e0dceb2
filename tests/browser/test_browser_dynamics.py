"""See it learn in headless Chromium: the directions chart grows while the run trains, and the Spectrum page
scrubs ΔW through training."""

from __future__ import annotations

import time

from page_tools import CHARTS_JS, assert_clean, charts, nav, screenshot, settle
from server_probe import report

from ui.dynamics_figures import TITLE


def test_the_directions_chart_grows_while_the_run_trains(server, page):
    page.goto(f"{server}/Playground?preset=dynamics&epochs=800&seed=5")
    settle(page)
    page.get_by_role("button", name="Train").click()
    seen = []  # points of the chart's first line each time it is read while the run trains
    deadline = time.monotonic() + 180  # a hang guard: the run takes seconds
    while page.get_by_text("Merge check", exact=False).count() == 0 and time.monotonic() < deadline:
        chart = next((c for c in page.evaluate(CHARTS_JS) if c["title"] == TITLE), None)
        if chart and chart["data"]:
            seen.append(len(chart["data"][0]["y"]))
        page.wait_for_timeout(150)
    settle(page)
    final = charts(page, need=TITLE)[TITLE]
    points = len(final["data"][0]["y"])
    report(page.artifacts, f"directions chart: {len(seen)} reads while training, {sorted(set(seen))[:8]} points, "
                           f"{points} at the end")
    assert points == 400  # 800 epochs, thinned evenly to 400 recorded ones
    assert seen and min(seen) < points  # drawn while the run trained, before its last epoch
    names = [t["name"] for t in final["data"]]
    assert sum(n.startswith("shift's") for n in names) == 3 and "layer1: σ3 of ΔW" in names
    assert page.get_by_text("one at a time, largest first", exact=False).count() == 1
    screenshot(page, "playground-dynamics")
    assert_clean(page)
    nav(page, "Spectrum")
    assert page.get_by_text("Fine-tuning epoch", exact=True).count() == 1
    epoch = next(t for t in charts(page, need="ΔW's singular values after") if t.startswith("ΔW's singular values"))
    assert epoch == "ΔW's singular values after fine-tuning epoch 800"
    screenshot(page, "spectrum-epoch")
    assert_clean(page)
