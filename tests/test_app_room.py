"""The Room page through AppTest: runs of two sessions on a third session's board, own runs ringed, nicknames as
plain text, the lessons' filter, one shared figure per change of the board, and the facilitator's controls only
with the server's token and only after it was entered."""

from __future__ import annotations

import json

import pytest

from lora_core.serving.room import ROOM_DB_ENV, BoardRun, RoomStore
from tests.test_app_lessons import _open
from tests.test_app_pages import SMALL, start, train, widget
from ui import live, room_view
from ui.room_view import FACILITATOR_ENV

ROOM = "pages/7_Room.py"


@pytest.fixture(autouse=True)
def own_board(tmp_path, monkeypatch):
    """Each test its own board file (the server's board is made once per process: made again here)."""
    monkeypatch.setenv(ROOM_DB_ENV, str(tmp_path / "room.sqlite3"))
    live.room.clear()
    yield
    live.room.clear()


def _trained(seed: str, **extra: str):
    at = start("pages/1_Playground.py", **SMALL, seed=seed, **extra)
    return train(at)


def _board(at) -> dict:
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {t["name"]: t for t in chart["data"]}


def test_two_sessions_runs_on_a_third_sessions_board_and_own_runs_ringed():
    first, second = _trained("611", rank="1"), _trained("612", rank="3")
    viewer = start(ROOM)
    traces = _board(viewer)
    losses = sorted(traces["LoRA"]["y"])
    expected = sorted(at.session_state["lora_explorer"].last().losses["merged_on_shifted"] for at in (first, second))
    assert losses == pytest.approx(expected)
    assert "your runs" not in traces  # the viewer ran nothing
    first.switch_page(ROOM).run()
    assert _board(first)["your runs"]["y"] == pytest.approx(
        [first.session_state["lora_explorer"].last().losses["merged_on_shifted"]])
    assert "2 run(s) on the board" in " ".join(c.value for c in viewer.caption)
    (listing,) = [d.value for d in viewer.dataframe]
    assert sorted(listing["merged loss, shifted"]) == pytest.approx(expected)
    assert "accuracy, shifted (%)" not in listing.columns  # a regression has no accuracy to list


def test_a_nickname_goes_with_the_runs_as_plain_text():
    at = start(ROOM)
    widget(at, "text_input", "Your nickname on the board (optional)").input("<b>ada</b> **x**").run()
    at.switch_page("pages/1_Playground.py").run()
    at.query_params.update({**SMALL, "seed": "613"})
    train(at.switch_page("pages/1_Playground.py").run())
    at.switch_page(ROOM).run()
    (row,) = live.room().runs()
    assert row["nickname"] == "<b>ada</b> **x**"
    hover = _board(at)["LoRA"]["text"][0]
    assert "<b>" not in hover and "\\*\\*x\\*\\*" in hover


def test_the_lessons_filter_shows_a_lessons_runs():
    at = _open("rank")
    widget(at, "radio", "Your prediction").set_value("r = 2").run()
    widget(at, "button", "Run").click().run()
    at.switch_page(ROOM).run()
    widget(at, "selectbox", "Lesson").set_value("rank").run()
    assert sorted(_board(at)["LoRA"]["x"]) == [(64 + 64) * r * 2 for r in (1, 2, 4)]  # its three members
    assert {r["source"] for r in live.room().runs(lesson="rank")} == {"lesson"}


def test_one_query_and_one_figure_per_change_of_the_board():
    _trained("614")
    rows, fig = room_view.board("linear", "")
    assert room_view.board("linear", "") == (rows, fig)  # the same objects for every viewer
    _trained("615")
    assert room_view.board("linear", "")[1] is not fig


def test_no_facilitator_controls_without_the_servers_token(monkeypatch):
    monkeypatch.delenv(FACILITATOR_ENV, raising=False)
    at = start(ROOM)
    assert [t.label for t in at.text_input] == ["Your nickname on the board (optional)"]
    assert not [b for b in at.button if b.label == "Clear the board"]


def test_a_wrong_token_gives_nothing_and_the_right_one_the_controls(monkeypatch):
    monkeypatch.setenv(FACILITATOR_ENV, "correct horse")
    _trained("616")
    at = start(ROOM)
    widget(at, "text_input", "Facilitator token").input("wrong").run()
    assert any("not the facilitator's token" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Clear the board"]
    assert "correct horse" not in json.dumps(dict(at.query_params))
    widget(at, "text_input", "Facilitator token").input("correct horse").run()
    assert at.session_state["lora_explorer"].facilitator
    widget(at, "button", "Clear the board").click().run()
    assert live.room().runs() == []


def test_a_facilitators_challenge_its_link_and_its_leaderboard(monkeypatch):
    monkeypatch.setenv(FACILITATOR_ENV, "tok")
    host = start("pages/1_Playground.py", **SMALL, seed="620")  # the challenge's settings: the host's
    host.switch_page(ROOM).run()
    widget(host, "text_input", "Facilitator token").input("tok").run()
    widget(host, "number_input", "Threshold X").set_value(5.0).run()
    widget(host, "multiselect", "Settings participants may change").set_value(["rank"]).run()
    widget(host, "button", "Set the challenge").click().run()
    rules = live.room().challenge()
    assert rules["goal"] == "loss_at_most" and rules["shared"]["seed"] == 620 and "rank" not in rules["shared"]

    params = room_view.challenge_link(rules)
    hidden = params["hide"].split(",")
    assert "rank" not in hidden and {"alpha", "seed", "preset"} <= set(hidden)
    player = start("pages/1_Playground.py", **params)
    labels = {w.label for w in (*player.sidebar.slider, *player.sidebar.number_input)}
    assert labels == {"Rank r"}  # only what the challenge lets them change
    widget(player, "slider", "Rank r").set_value(3).run()
    train(player)
    player.switch_page(ROOM).run()
    (shown,) = [d.value for d in player.dataframe if "place" in d.value.columns]
    assert list(shown["you"]) == ["←"] and list(shown["r"]) == [3]
    assert "accuracy, shifted (%)" not in shown.columns
    (leader,) = room_view.rules.leaderboard(rules, live.room().runs(task="linear"))
    assert leader["rank"] == 3 and leader["session"] == player.session_state["lora_explorer"].board_id
    assert any("Challenge" in m.value and "at most 5" in m.value for m in player.markdown)


def test_the_table_lists_accuracy_in_percent_only_for_a_task_that_classifies():
    store = RoomStore(":memory:")
    store.add("s1", [BoardRun("digits", "LoRA", 4, 8.0, 2000, 0.61, 0.873, None, "run")], nickname="ada")
    store.add("s2", [BoardRun("linear", "LoRA", 1, 1.0, 128, 0.25, None, 0.2, "run")])
    digits = room_view.table(store.runs(task="digits"), "digits")
    assert list(digits["accuracy, shifted (%)"]) == pytest.approx([87.3])
    assert list(digits["nickname"]) == ["ada"]
    linear = room_view.table(store.runs(task="linear"), "linear")
    assert "accuracy, shifted (%)" not in linear.columns and list(linear["merged loss, shifted"]) == [0.25]
