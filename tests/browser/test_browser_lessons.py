"""A lesson in headless Chromium, from prediction to reveal, then its explore link to the Compare page."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

from page_tools import assert_clean, charts, screenshot, settle
from server_probe import report

from lora_core.lessons import LESSONS


def test_a_lesson_from_prediction_to_reveal_and_its_explore_link(server, page):
    lesson = LESSONS["rank"]
    page.goto(f"{server}/Lessons?lesson=rank")
    settle(page)
    assert page.get_by_role("heading", name=lesson.title).count() == 1
    run = page.get_by_role("button", name="Run")
    assert run.is_disabled()  # no prediction yet
    screenshot(page, "lesson-rank-question")
    page.locator('[data-testid="stRadio"]').get_by_text("r = 2", exact=True).click()
    settle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="Run").click()
    page.get_by_text("Your prediction held", exact=False).wait_for(timeout=120_000)
    seconds = time.perf_counter() - start
    settle(page)
    report(page.artifacts, f"lesson 'rank' in the browser, click to reveal: {seconds:.2f} s")
    bars = next(t for t in charts(page, need=lesson.title)[lesson.title]["data"] if t["name"] == "your runs")
    assert len(bars["y"]) == 3 and bars["y"][0] > 10 * bars["y"][2]  # r = 1 stays high, r = 4 gets far lower
    assert page.get_by_text("The best any rank-1 pair of adapters", exact=False).count() == 1
    assert page.locator('[data-testid="stRadio"] input').first.is_disabled()  # committed
    screenshot(page, "lesson-rank-reveal")
    assert_clean(page)

    page.get_by_role("link", name="Explore it on the Compare page").click()
    page.wait_for_url("**/Compare?**")
    settle(page)
    query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert query["ranks"] == "1,2,4" and query["methods"] == "lora" and query["shift"] == "low_rank"
    assert page.get_by_text("3 members", exact=False).count() == 1
    screenshot(page, "lesson-rank-explore-compare")
    assert_clean(page)


def test_the_placement_lesson_on_the_transformer(server, page):
    lesson = LESSONS["placement"]
    page.goto(f"{server}/Lessons?lesson=placement")
    settle(page)
    page.locator('[data-testid="stRadio"]').get_by_text(lesson.choices[0], exact=True).click()
    settle(page)
    start = time.perf_counter()
    page.get_by_role("button", name="Run").click()
    page.get_by_text("the runs say", exact=False).wait_for(timeout=120_000)
    seconds = time.perf_counter() - start
    settle(page)
    report(page.artifacts, f"lesson 'placement' in the browser, click to reveal: {seconds:.2f} s")
    bars = next(t for t in charts(page, need=lesson.title)[lesson.title]["data"] if t["name"] == "your runs")
    assert len(bars["y"]) == 4 and bars["y"] == sorted(bars["y"])  # lowest first
    screenshot(page, "lesson-placement-reveal")
    assert_clean(page)
    page.get_by_role("link", name="Explore it on the Compare page").click()
    page.wait_for_url("**/Compare?**")
    settle(page)
    query = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    assert query["placements"] == "q,v;attention;mlp;all" and query["budget"] == "1152"
    assert page.get_by_text("4 members", exact=False).count() == 1
    assert_clean(page)
