"""The Lessons page through AppTest: no Run before a prediction, then the runs, the reveal and its chart read back
against the lesson's own reveal of the same runs, the explore link, and bad links named."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from lora_core.lessons import LESSONS
from lora_core.settings.config import PRESETS
from tests.test_app_pages import start, widget

PAGE = "pages/0_Lessons.py"


def _open(lesson_id: str):
    at = start("app.py", lesson=lesson_id)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("lesson_id", list(LESSONS))
def test_predict_run_and_reveal(lesson_id):
    lesson = LESSONS[lesson_id]
    at = _open(lesson_id)
    assert widget(at, "selectbox", "Lesson").value == lesson_id
    run = widget(at, "button", "Run")
    assert run.disabled  # no prediction yet
    assert not at.get("plotly_chart")
    prediction = lesson.choices[-1]
    widget(at, "radio", "Your prediction").set_value(prediction).run()
    widget(at, "button", "Run").click().run()
    assert not at.exception, at.exception

    kept_prediction, result = at.session_state["lora_explorer"].lessons[lesson_id]
    assert kept_prediction == prediction
    reveal = lesson.reveal(result)
    verdicts = [m.value for m in (*at.success, *at.info)]
    assert any(f"You predicted **{prediction}**; the runs say **{reveal.answer}**" in v for v in verdicts)
    assert any(("Your prediction held" in v) == (prediction == reveal.answer) for v in verdicts)
    assert reveal.text in [m.value for m in at.markdown]
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = next(t for t in chart["data"] if t["type"] == "bar")
    assert bars["x"] == [b.label for b in reveal.bars]
    assert bars["y"] == pytest.approx([b.value for b in reveal.bars])
    assert chart["layout"]["title"]["text"] == lesson.title and chart["layout"]["yaxis"]["title"]["text"]
    values = [b.value for b in reveal.bars] + [b.floor for b in reveal.bars if b.floor is not None]
    wide = max(values) / min(values) > 100
    assert (chart["layout"]["yaxis"].get("type") == "log") == wide  # a log axis only where it is needed
    if wide:  # and every bar's foot below the smallest value, so that no bar looks empty
        assert 10 ** chart["layout"]["yaxis"]["range"][0] < min(values)
    assert widget(at, "radio", "Your prediction").disabled  # committed

    (explore,) = [p for p in at.get("page_link") if p.proto.label.startswith("Explore")]
    assert explore.proto.page.endswith(lesson.explore)
    query = {k: v[0] for k, v in parse_qs(explore.proto.query_string).items()}
    req = lesson.runs()
    if lesson.explore == "Compare":
        assert query["ranks"] == ",".join(map(str, req.ranks)) and query["methods"] == ",".join(req.methods)
    assert query.get("preset", "default") == (req.config.task if req.config.task in PRESETS else "default")
    if req.targets:  # the placement lesson opens Compare on its placements and budget
        assert query["placements"] == ";".join(req.targets) and query["budget"] == str(req.budget)


def test_try_again_forgets_the_prediction_and_its_runs():
    at = _open("alpha")
    widget(at, "radio", "Your prediction").set_value("about the same").run()
    widget(at, "button", "Run").click().run()
    widget(at, "button", "Try again").click().run()
    assert not at.exception, at.exception
    assert "alpha" not in at.session_state["lora_explorer"].lessons
    assert not widget(at, "radio", "Your prediction").disabled and not at.get("plotly_chart")


def test_a_lesson_that_does_not_exist_is_named_in_a_warning():
    at = _open("nope<b>")
    assert any("nope\\<b\\> is not a lesson" in w.value for w in at.warning)  # named, shown as plain text
    assert widget(at, "selectbox", "Lesson").value == next(iter(LESSONS))


def test_choosing_another_lesson_writes_it_to_the_url():
    at = _open("constant")
    widget(at, "selectbox", "Lesson").set_value("inverted").run()
    assert at.query_params["lesson"] == ["inverted"] or at.query_params["lesson"] == "inverted"
    assert at.header[0].value == LESSONS["inverted"].title
