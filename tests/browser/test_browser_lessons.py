"""A lesson in headless Chromium, from prediction to reveal, then its explore link to the Compare page."""

from __future__ import annotations

import time

from page_tools import assert_clean, charts, explore_compare, screenshot, settle
from server_probe import report

from lora_core.lessons import LESSONS


def predict_and_run(page, lesson_id: str, choice: str, reveal_text: str) -> dict:
    """Choose `choice`, press Run, wait for the reveal (a text of it): the reveal chart's bars. The seconds from
    the click to the reveal are reported (test-artifacts/timings.txt)."""
    page.locator('[data-testid="stRadio"]').get_by_text(choice, exact=True).click()
    settle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="Run").click()
    page.get_by_text(reveal_text, exact=False).wait_for(timeout=120_000)
    seconds = time.perf_counter() - start
    settle(page)
    report(page.artifacts, f"lesson '{lesson_id}' in the browser, click to reveal: {seconds:.2f} s")
    title = LESSONS[lesson_id].title
    return next(t for t in charts(page, need=title)[title]["data"] if t["name"] == "your runs")


def test_a_lesson_from_prediction_to_reveal_and_its_explore_link(server, page):
    lesson = LESSONS["rank"]
    page.goto(f"{server}/Lessons?lesson=rank")
    settle(page)
    assert page.get_by_role("heading", name=lesson.title).count() == 1
    run = page.get_by_role("button", name="Run")
    assert run.is_disabled()  # no prediction yet
    screenshot(page, "lesson-rank-question")
    bars = predict_and_run(page, "rank", "r = 2", "Your prediction held")
    assert len(bars["y"]) == 3 and bars["y"][0] > 10 * bars["y"][2]  # r = 1 stays high, r = 4 gets far lower
    assert page.get_by_text("The best any rank-1 pair of adapters", exact=False).count() == 1
    assert page.locator('[data-testid="stRadio"] input').first.is_disabled()  # committed
    screenshot(page, "lesson-rank-reveal")
    assert_clean(page)

    query = explore_compare(page)
    assert query["ranks"] == "1,2,4" and query["methods"] == "lora" and query["shift"] == "low_rank"
    assert page.get_by_text("3 members", exact=False).count() == 1
    screenshot(page, "lesson-rank-explore-compare")
    assert_clean(page)


def test_the_placement_lesson_on_the_transformer(server, page):
    page.goto(f"{server}/Lessons?lesson=placement")
    settle(page)
    bars = predict_and_run(page, "placement", LESSONS["placement"].choices[0], "the runs say")
    assert len(bars["y"]) == 4 and bars["y"] == sorted(bars["y"])  # lowest first
    screenshot(page, "lesson-placement-reveal")
    assert_clean(page)
    query = explore_compare(page)
    assert query["placements"] == "q,v;attention;mlp;all" and query["budget"] == "1152"
    assert page.get_by_text("4 members", exact=False).count() == 1
    assert_clean(page)
