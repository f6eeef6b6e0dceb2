"""What the browser tests do on a page: wait for it to settle, read its charts back, train, switch pages."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

from ui.navigation import PAGES

# A model that trains in a fraction of a second and still tells the story (CLI names, as in a shared link).
SMALL = {"d-in": 16, "hidden": 16, "d-out": 16, "n-samples": 256, "n-eval": 64, "pretrain-epochs": 15, "epochs": 15,
         "batch-size": 32, "seed": 7}
URL_PATHS = {label: "" if page.path == "app.py" else label for label, page in PAGES.items()}  # each page's URL path
CHARTS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
    title: (el.layout.title.text ?? "").replace(/<[^>]+>/g, ""),
    data: el.data.map(t => ({name: t.name, y: Array.from(t.y ?? [])}))}))"""


def settle(page, timeout: float = 300) -> None:
    """Wait until the page has a title, the script run is over (Streamlit's running indicator gone) and the
    browser is idle (the first chart on a page loads Plotly, which keeps the browser busy for a while)."""
    page.locator("h1").first.wait_for()
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet_since = None if running else (quiet_since or time.monotonic())
        if quiet_since and time.monotonic() - quiet_since > 0.4:
            page.evaluate("() => new Promise(done => requestIdleCallback(done, {timeout: 10000}))")
            return
        page.wait_for_timeout(50)
    raise AssertionError("the app kept running")


def screenshot(page, name: str) -> None:
    """A full-page screenshot: Streamlit scrolls inside its own container, so grow the viewport first."""
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"] > *, [data-testid="stMainBlockContainer"], [data-testid="stSidebarContent"]')]
        .map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": 1400, "height": max(900, height + 80)})
    page.wait_for_timeout(400)  # let the charts redraw at the new size
    page.screenshot(path=str(page.artifacts / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 900})


def assert_clean(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "the page shows an exception"
    assert not page.console.errors, page.console.errors


def slider(page, label: str):
    return page.locator(f'[data-testid="stSlider"] input[type="range"][aria-label="{label}"]')


def train(page) -> float:
    """Press Train and wait for the finished run's cards and chart; returns the seconds it took."""
    start = time.perf_counter()
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Merge check", exact=False).first.wait_for(timeout=120_000)
    page.locator(".js-plotly-plot").first.wait_for()
    elapsed = time.perf_counter() - start
    settle(page)
    return elapsed


def charts(page, need: str | tuple[str, ...] | None = None, guard: float = 90) -> dict[str, dict]:
    """The page's Plotly charts by title, once every chart element Streamlit placed has been drawn by Plotly
    (on a busy machine that can come well after the script run ends) and, with `need`, once a chart whose title
    starts with it (with each of them, for a tuple) is there; polled, with `guard` seconds only against a hang."""
    needed = (need,) if isinstance(need, str) else tuple(need or ())
    deadline = time.monotonic() + guard
    while True:
        placed = page.locator('[data-testid="stPlotlyChart"]').count()
        drawn = {c["title"]: c for c in page.evaluate(CHARTS_JS)}
        if len(drawn) >= placed and all(any(t.startswith(n) for t in drawn) for n in needed):
            return drawn
        assert time.monotonic() < deadline, f"charts not drawn after {guard:.0f} s: {list(drawn)}, {placed} placed"
        page.wait_for_timeout(100)


def held_out(chart: dict, phase: str) -> list[float]:
    return next(t["y"] for t in chart["data"] if t["name"] == f"{phase}, held-out")


def nav(page, name: str) -> None:
    """Switch page through the sidebar, keeping the session (a fresh URL would start a new one)."""
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name=name).click()
    page.wait_for_url(f"**/{URL_PATHS[name]}*")
    settle(page)


def open_grid(page, server: str, params: dict, members: int) -> None:
    """Open Compare with `params` in its link and check the grid it plans has `members` members."""
    page.goto(f"{server}/Compare?{urlencode(params)}")
    settle(page)
    assert page.get_by_text(f"{members} members", exact=False).count() == 1


def run_grid(page) -> None:
    """Press Compare's Run and wait for the sweep's result (its "N members in" caption)."""
    page.get_by_role("button", name="Run").click()
    page.get_by_text("members in", exact=False).first.wait_for(timeout=120_000)


def explore_compare(page) -> dict[str, str]:
    """Follow a lesson's link to the Compare page; the query parameters it opened with."""
    page.get_by_role("link", name="Explore it on the Compare page").click()
    page.wait_for_url("**/Compare?**")
    settle(page)
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
