"""The Room page: every run finished on this server, from every session, on one chart that refreshes itself,
a table beside it, a nickname a participant may choose, and the facilitator's controls for a session that
entered the server's facilitator token.

Cheap to watch: the board's rows and its figure are built once per change of the board (the store's version)
and shared by every viewer; each viewer adds only the marks of its own runs."""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from lora_core.lessons import LESSONS
from lora_core.serving import challenge as rules
from lora_core.serving.room import NICKNAME_MAX
from lora_core.settings.choices import TASK_LABELS
from lora_core.settings.config import LABELS, ConfigError
from lora_core.settings.task_specs import TASK_SPECS

from . import classroom, gate, live, session
from .figures import LEGEND, MARGIN
from .navigation import link
from .settings import settings_of, to_config, url_params
from .text import plain

FACILITATOR_ENV = "LORA_EXPLORER_FACILITATOR_TOKEN"
REFRESH_S = 2.0
COLUMNS = {"nickname": "nickname", "method": "method", "rank": "r", "alpha": "α", "params": "trainable parameters",
           "loss": "merged loss, shifted", "accuracy": "accuracy, shifted (%)", "source": "from", "lesson": "lesson"}

class OncePerBoard:
    """A value built once per change of the board (the store's version) and shared by every viewer."""

    def __init__(self, build: Callable[..., Any]) -> None:
        self.build, self._kept, self._lock = build, {}, threading.Lock()

    def __call__(self, *args: Any) -> Any:
        key = (live.room().version(), *args)
        with self._lock:
            if key not in self._kept:
                self._kept.clear()  # only the newest board is worth keeping
                self._kept[key] = self.build(*args)
            return self._kept[key]


def _board(task: str, lesson: str) -> tuple[list[dict], go.Figure]:
    rows = live.room().runs(task=task, lesson=lesson or None)
    return rows, board_figure(rows, task)


def _standing() -> tuple[dict | None, list[dict]]:
    challenge = live.room().challenge()
    if challenge is None:
        return None, []
    return challenge, rules.leaderboard(challenge, live.room().runs(task=challenge["task"]))


board = OncePerBoard(_board)  # (task, lesson) -> the board's rows and figure for that filter
standing = OncePerBoard(_standing)  # () -> the challenge and its leaderboard's rows


def _classifies(task: str) -> bool:
    """Whether the board plots the task's accuracy (a classification task) rather than its loss."""
    return TASK_SPECS[task].classifies


def _value(row: dict, task: str) -> float | None:
    """What the board plots for a run: its merged loss on the shifted data, or its accuracy there in percent."""
    if _classifies(task):
        return None if row["accuracy"] is None else 100 * row["accuracy"]
    return row["loss"]


def _markers(rows: list[dict], task: str, name: str, marker: dict, hover: bool = False) -> go.Scatter:
    """The runs among `rows` that have a value, as one trace of markers at (trainable parameters, value)."""
    shown = [r for r in rows if _value(r, task) is not None]
    return go.Scatter(x=[r["params"] for r in shown], y=[_value(r, task) for r in shown], mode="markers",
                      name=name, marker=marker, text=[_hover(r) for r in shown] if hover else None,
                      hoverinfo="text+x+y" if hover else None)


def board_figure(rows: list[dict], task: str) -> go.Figure:
    """Merged loss (accuracy for a classification task) against trainable parameters, one colour per method."""
    fig = go.Figure()
    for method in sorted({r["method"] for r in rows}):
        fig.add_trace(_markers([r for r in rows if r["method"] == method], task, method,
                               {"size": 9, "opacity": 0.8}, hover=True))
    floors = [r for r in rows if r["floor"] is not None] if not _classifies(task) else []
    if floors:
        fig.add_trace(go.Scatter(x=[r["params"] for r in floors], y=[r["floor"] for r in floors], mode="markers",
                                 name="best possible at that rank", marker={"symbol": "line-ew-open", "size": 14,
                                                                           "color": "#1F2937"}))
    title = ("held-out accuracy on the shifted task (%)" if _classifies(task) else
             "merged model's loss on the shifted task (MSE)")
    fig.update_layout(title=f"The room's runs: {TASK_LABELS.get(task, task)}", xaxis_title="trainable parameters",
                      yaxis_title=title, legend=LEGEND, margin=MARGIN)
    fig.update_xaxes(type="log")
    if not _classifies(task):
        fig.update_yaxes(type="log", exponentformat="power")
    return fig


def _hover(row: dict) -> str:
    who = plain(row["nickname"], NICKNAME_MAX) if row["nickname"] else "anonymous"
    return f"{who}: {row['method']} r={row['rank']} α={row['alpha']:g}"


def mine(fig: go.Figure, rows: list[dict], task: str) -> go.Figure:
    """A copy of the shared figure with this session's runs ringed."""
    own = [r for r in rows if r["session"] == live.my_board_id()]
    out = go.Figure(fig)
    if any(_value(r, task) is not None for r in own):
        out.add_trace(_markers(own, task, "your runs", {"size": 16, "symbol": "circle-open", "color": "#000",
                                                        "line": {"width": 2}}))
    return out


def table(rows: list[dict], task: str) -> pd.DataFrame:
    """The board's runs, one row each; the accuracy column only for a task that classifies (a regression has
    none, and a column of "None" says nothing)."""
    frame = pd.DataFrame(rows, columns=["id", *COLUMNS])
    frame["accuracy"] = frame["accuracy"] * 100
    dropped = ["id"] if _classifies(task) else ["id", "accuracy"]
    return frame.drop(columns=dropped).rename(columns=COLUMNS)


def filters() -> tuple[str, str]:
    left, right = st.columns(2)
    task = left.selectbox("Task", list(TASK_LABELS), format_func=TASK_LABELS.get, key="w_room_task")
    lesson = right.selectbox("Lesson", ["", *LESSONS], key="w_room_lesson",
                             format_func=lambda i: "every run" if not i else f"lesson: {LESSONS[i].title}")
    return task, lesson


def nickname() -> None:
    state = session.current()
    chosen = st.text_input("Your nickname on the board (optional)", value=state.nickname, max_chars=NICKNAME_MAX,
                           help="Runs are anonymous unless you choose one; it goes with the runs you finish from "
                                "now on.")
    state.nickname = " ".join(chosen.split())[:NICKNAME_MAX]


@st.fragment(run_every=REFRESH_S)
def live_room(challenge_slot, task: str, lesson: str) -> None:
    """The challenge (drawn into `challenge_slot`, a container at the page's top) and the board, redrawn every
    REFRESH_S seconds. One fragment, so that a refresh is one script run: a run's own cost in Streamlit (about
    20 ms of the server's CPU, measured) is most of a refresh's, and twenty viewers make ten refreshes a second."""
    with gate.building():  # a refresh is a script run too (the page's first one holds its place already)
        with challenge_slot:
            show_challenge()
        live_board(task, lesson)


def live_board(task: str, lesson: str) -> None:
    """The chart and the table from the shared board; this viewer's copy rebuilt only when the board changed."""
    rows, fig = board(task, lesson)
    if live.room().problem:
        st.warning(plain(live.room().problem, 300), icon="⚠️")
        return
    st.caption(f"{len(rows)} run(s) on the board for this filter; it refreshes itself every {REFRESH_S:g} s.")
    state = session.current()
    if state.room_drawn is None or state.room_drawn[0] is not fig:  # the board changed: this viewer's copy too
        state.room_drawn = (fig, mine(fig, rows, task), table(rows, task))
    _, own, listing = state.room_drawn
    st.plotly_chart(own, key="room-board")
    st.dataframe(listing, hide_index=True, height=300)


def challenge_link(challenge: dict) -> dict[str, str]:
    """The Playground with the challenge's settings, every control outside it hidden (a classroom link)."""
    settings = settings_of(rules.playground_settings(challenge))
    hidden = [f for f in ("preset", *LABELS) if f not in challenge["allowed"]]
    return {**url_params(settings), **classroom.link_params(hidden, ())}


def show_challenge() -> None:
    """The challenge, if the facilitator set one: its goal, a link to take it, and its leaderboard."""
    challenge, board_rows = standing()
    if challenge is None:
        return
    with st.container(border=True):
        st.markdown(f"**Challenge** ({TASK_LABELS.get(challenge['task'], challenge['task'])}): "
                    f"{rules.describe(challenge)}. You may change: "
                    + (", ".join(LABELS[f] for f in challenge["allowed"]) or "nothing") + ".")
        link("Playground", "Take the challenge on the Playground", query_params=challenge_link(challenge),
             icon=":material/flag:")
        if not board_rows:
            st.caption("No run meets it yet.")
            return
        st.dataframe(leaderboard_table(board_rows, challenge["task"]), hide_index=True)


def leaderboard_table(board_rows: list[dict], task: str) -> pd.DataFrame:
    """The leaderboard's places (a dataframe shows nicknames as text, never markup); accuracy only for a task
    that classifies."""
    frame = pd.DataFrame([{
        "place": i + 1, COLUMNS["nickname"]: r["nickname"] or "anonymous",
        COLUMNS["params"]: r["params"], COLUMNS["loss"]: r["loss"],
        COLUMNS["accuracy"]: None if r["accuracy"] is None else 100 * r["accuracy"], COLUMNS["method"]: r["method"],
        COLUMNS["rank"]: r["rank"], COLUMNS["alpha"]: r["alpha"],
        "you": "←" if r["session"] == live.my_board_id() else ""} for i, r in enumerate(board_rows)])
    return frame if _classifies(task) else frame.drop(columns=COLUMNS["accuracy"])


def _set_challenge() -> None:
    """The facilitator's form: a challenge from this session's Playground settings."""
    st.markdown("**A challenge from your Playground settings**")
    goal = st.selectbox("Goal", list(rules.GOALS), format_func=lambda g: rules.GOALS[g].label.format(
        threshold=0).replace(" 0", " X"))
    threshold = st.number_input("Threshold X", min_value=0.0, value=0.1 if goal == "loss_at_most" else 2000.0,
                                format="%g")
    allowed = st.multiselect("Settings participants may change", list(LABELS), default=["rank", "alpha"],
                             format_func=LABELS.get)
    if st.button("Set the challenge"):
        try:
            live.room().set_challenge(rules.rules(to_config(session.current().settings), goal, threshold, allowed))
        except ConfigError as e:
            st.error(plain(str(e), 300))
    if live.room().challenge() is not None and st.button("End the challenge"):
        live.room().set_challenge(None)


def facilitator() -> None:
    """The facilitator's controls, only with a server token and only for a session that entered it."""
    token = os.environ.get(FACILITATOR_ENV, "")
    if not token:
        return
    state = session.current()
    with st.expander("Facilitator"):
        if not state.facilitator:
            entered = st.text_input("Facilitator token", type="password", key="w_room_token")
            if entered and hmac.compare_digest(entered.encode(), token.encode()):
                state.facilitator = True
                st.rerun()
            elif entered:
                st.error("That is not the facilitator's token.")
            return
        _set_challenge()
        store = live.room()
        if st.button("Clear the board"):
            store.clear()
        names = sorted({r["nickname"] for r in store.runs() if r["nickname"]})
        hide = st.selectbox("Nickname to hide", ["", *names], format_func=lambda n: plain(n, NICKNAME_MAX) or "—")
        if hide and st.button("Hide it"):
            store.hide_nickname(hide)
