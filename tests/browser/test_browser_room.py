"""The Room in headless Chromium: two sessions train, a third session's board shows both, by their nicknames."""

from __future__ import annotations

from urllib.parse import urlencode

from conftest import Console
from page_tools import SMALL, assert_clean, charts, nav, screenshot, settle, train

BOARD = "The room's runs: linear regression (the article)"


def _session(browser, artifacts):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.console, page.artifacts = Console(page), artifacts
    return context, page


def _train_as(page, server: str, nickname: str, seed: int) -> None:
    page.goto(f"{server}/Playground?{urlencode({**SMALL, 'seed': seed})}")
    settle(page)
    nav(page, "Room")  # the same session (a new URL would start another)
    box = page.get_by_role("textbox", name="Your nickname on the board (optional)")
    box.fill(nickname)
    box.press("Enter")
    settle(page)
    nav(page, "Playground")
    train(page)


def test_two_sessions_runs_appear_on_a_third_sessions_board(server, browser, page):
    others = [_session(browser, page.artifacts) for _ in range(2)]
    try:
        for (_, other), (nickname, seed) in zip(others, (("room-ada", 801), ("room-bob", 802)), strict=True):
            _train_as(other, server, nickname, seed)
        page.goto(f"{server}/Room")
        settle(page)
        board = charts(page, need=BOARD)[BOARD]
        assert any(t["name"] == "LoRA" and len(t["y"]) >= 2 for t in board["data"])
        assert not any(t["name"] == "your runs" for t in board["data"])  # this session ran nothing
        hovers = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .flatMap(el => el.data.flatMap(t => Array.from(t.text ?? [])))""")
        text = " ".join(hovers)
        assert "room\\-ada" in text and "room\\-bob" in text  # each run by its nickname, as plain text
        screenshot(page, "room-board")
        assert_clean(page)
    finally:
        for context, _ in others:
            context.close()
