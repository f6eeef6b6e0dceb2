"""Classroom links through AppTest: `hide` takes controls away and keeps the link's values, `pages` takes pages
away, bad values are named, and the Playground's "Share this setup" panel writes a link that does the same."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.test_app_pages import SMALL, start, train, widget
from ui.classroom import parse, share_link
from ui.navigation import PAGES

PLAYGROUND = "pages/1_Playground.py"


def _labels(at) -> set[str]:
    return {w.label for kind in ("slider", "selectbox", "number_input", "checkbox")
            for w in getattr(at.sidebar, kind)}


def test_hidden_controls_are_absent_and_their_values_are_the_links():
    at = start(PLAYGROUND, **SMALL, alpha="4", rank="1", seed="301", hide="alpha,shift,method,preset")
    assert not {"Alpha α", "Shift", "Method", "Preset"} & _labels(at)
    assert "Rank r" in _labels(at)
    train(at)
    result = at.session_state["lora_explorer"].last()
    assert result.config["alpha"] == 4.0 and result.config["shift"] == "constant"
    assert at.query_params["hide"] in ("alpha,shift,method,preset", ["alpha,shift,method,preset"])


def test_a_link_shows_only_its_pages():
    at = start(PLAYGROUND, pages="Lessons,playground")
    assert [p.proto.page for p in at.sidebar.get("page_link")] == ["Lessons", "Playground"]
    at.switch_page("pages/5_Compare.py").run()
    assert any("opens only: Lessons, Playground" in i.value for i in at.info)
    assert not at.get("multiselect") and not at.get("plotly_chart")  # nothing of the page itself


def test_bad_hide_and_pages_values_are_named_in_a_warning():
    at = start(PLAYGROUND, hide="alpha,<b>x</b>", pages="Runs,Nowhere")
    warning = " ".join(w.value for w in at.warning)
    assert "hide=\\<b\\>x" in warning and "<b>" not in warning
    assert "pages=Nowhere" in warning and "not a page" in warning
    assert "Alpha α" not in _labels(at)  # the good values still apply
    assert [p.proto.page for p in at.sidebar.get("page_link")] == ["Runs"]


def test_parse_keeps_order_drops_repeats_and_bounds_the_list():
    hidden, pages, warnings = parse({"hide": "Alpha, shift-scale,alpha", "pages": "lessons"}, tuple(PAGES))
    assert hidden == ("alpha", "shift_scale") and pages == ("Lessons",) and warnings == []
    _, _, many = parse({"hide": ",".join(["x"] * 1000)}, tuple(PAGES))
    assert len(many) == 100


def test_share_this_setup_writes_a_link_that_opens_the_same_setup():
    at = start(PLAYGROUND, rank="3", alpha="6")
    widget(at, "checkbox", "Hide Alpha α").check().run()
    widget(at, "multiselect", "Pages to show (none: all)").set_value(["Lessons", "Playground"]).run()
    (code,) = [c.value for c in at.get("code")]
    query = {k: v[0] for k, v in parse_qs(urlsplit(code).query).items()}
    assert urlsplit(code).path.endswith("/Playground")
    assert query == {"rank": "3", "alpha": "6.0", "hide": "alpha", "pages": "Lessons,Playground"}
    assert share_link({}, [], []) == "/Playground"

    opened = start(PLAYGROUND, **query)
    assert "Alpha α" not in _labels(opened)
    assert opened.session_state["lora_explorer"].settings["alpha"] == 6.0
    assert widget(opened, "slider", "Rank r").value == 3


def test_a_preset_change_keeps_the_hidden_values():
    at = start(PLAYGROUND, alpha="5", hide="alpha")
    widget(at, "selectbox", "Preset").set_value("digits").run()
    assert at.session_state["lora_explorer"].settings["alpha"] == 5.0
    assert at.session_state["lora_explorer"].settings["task"] == "digits"
