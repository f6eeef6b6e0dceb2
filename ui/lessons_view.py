"""The Lessons page: choose a lesson, commit to a prediction, run its sweep through the server's scheduler, then
the reveal (lora_core/lessons.py writes it from the runs), its chart, and a link to explore further."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

from lora_core.lessons import LESSONS, Lesson, Reveal
from lora_core.sweep import SweepResult, answers, members

from . import live, session
from .figures import LEGEND, MARGIN
from .grid import grid_params
from .navigation import link
from .settings import settings_of, url_params
from .text import plain

LESSON_PARAM = "lesson"  # /Lessons?lesson=<id>


def chosen_lesson() -> tuple[Lesson, str | None]:
    """The lesson the URL names (the first one when it names none), and a warning for a name it does not know."""
    asked = st.query_params.get(LESSON_PARAM)
    if asked is None or asked in LESSONS:
        return LESSONS[asked or next(iter(LESSONS))], None
    known = ", ".join(LESSONS)
    return next(iter(LESSONS.values())), f"lesson={asked} is not a lesson; the lessons are {known}"


def pick_lesson() -> Lesson:
    """The lesson chooser, kept in the URL (?lesson=<id>) so that a link opens one lesson."""
    note = live.prewarm_note()
    if note:
        st.caption(note)
    lesson, warning = chosen_lesson()
    if warning:
        st.warning(plain(warning), icon="⚠️")
    ids = list(LESSONS)
    picked = st.selectbox("Lesson", ids, index=ids.index(lesson.id),
                          format_func=lambda i: f"{ids.index(i) + 1}. {LESSONS[i].title}")
    st.query_params[LESSON_PARAM] = picked
    return LESSONS[picked]


def lesson_figure(reveal: Reveal, title: str) -> go.Figure:
    """The reveal's bars, with the best any adapter of that kind could do as a marker where it is known."""
    labels = [b.label for b in reveal.bars]
    fig = go.Figure(go.Bar(x=labels, y=[b.value for b in reveal.bars], name="your runs", marker_color="#F76707",
                           text=[f"{b.value:.3g}" for b in reveal.bars], textposition="outside",
                           cliponaxis=False))
    floors = [(b.label, b.floor) for b in reveal.bars if b.floor is not None]
    if floors:
        fig.add_trace(go.Scatter(x=[f[0] for f in floors], y=[f[1] for f in floors], mode="markers",
                                 name="best possible at that rank",
                                 marker={"symbol": "line-ew-open", "size": 28, "color": "#1F2937",
                                         "line": {"width": 3}}))
    fig.update_layout(title=title, yaxis_title=reveal.y_title, legend=LEGEND, margin=MARGIN, showlegend=True)
    values = [b.value for b in reveal.bars] + [f for _, f in floors]
    if min(values) > 0 and max(values) / min(values) > 100:  # over two decades: only a log axis shows them all
        low = math.floor(math.log10(min(values))) - 0.5  # every bar starts below its top, the smallest too
        high = math.log10(max(values))
        # room above the tallest bar for its label and the floor's marker: a tenth of the axis' decades
        fig.update_yaxes(type="log", exponentformat="power", range=[low, high + max(0.3, 0.1 * (high - low))])
    return fig


def explore_params(lesson: Lesson) -> dict[str, str]:
    """The query parameters that open the lesson's page with its settings (and its grid, on Compare)."""
    req = lesson.runs()
    params = url_params(settings_of(req.config))
    if lesson.explore == "Compare":
        params.update(grid_params({"methods": list(req.methods), "ranks": list(req.ranks),
                                   "alphas": list(req.alphas), "seeds": list(req.seeds),
                                   "placements": list(req.targets), "budget": req.budget}))
    return params


def show(lesson: Lesson) -> None:
    """One lesson: the question, the prediction, Run, and the reveal once its runs are done."""
    state = session.current()
    kept = state.lessons.get(lesson.id)
    st.header(lesson.title)
    st.markdown(lesson.question)
    key = f"w_lesson_{lesson.id}"
    if kept is not None:  # a committed prediction stays what it was
        st.session_state[key] = kept[0]
    prediction = st.radio("Your prediction", lesson.choices, index=None, key=key, disabled=kept is not None,
                          help="Choose before you run: the reveal says whether it held.")
    if kept is None:
        req = lesson.runs()
        count = len(members(req))
        pressed = st.button("Run", type="primary", disabled=prediction is None,
                            help="Choose a prediction first" if prediction is None else
                            f"{count} fine-tunes from one pretrained base")
        if prediction is None:
            st.caption("Choose a prediction to run the lesson.")
        if not pressed:
            return
        result, _ = live.sweep(req, st.empty(), lesson=lesson.id)
        if result is None or not answers(result, req) or result.status != "ok":
            st.warning("The lesson's runs did not finish; press Run again.")
            return
        state.lessons[lesson.id] = (prediction, result)
        st.rerun()  # drawn again with the prediction committed (its widget disabled) and the reveal below it
    _reveal(lesson, *kept)


def _reveal(lesson: Lesson, prediction: str, result: SweepResult) -> None:
    reveal = lesson.reveal(result)
    held = prediction == reveal.answer  # one of the lesson's own choices: a radio sends only an index
    verdict = st.success if held else st.info
    verdict(f"You predicted **{prediction}**; the runs say **{reveal.answer}**."
            + (" Your prediction held." if held else " Not this time: see why below."))
    st.markdown(reveal.text)
    st.plotly_chart(lesson_figure(reveal, lesson.title), key=f"lesson-{lesson.id}")
    seconds = result.timings.get("total_s")
    if seconds is not None:
        st.caption(f"{len(result.members)} fine-tunes from one pretrained base, {seconds:.1f} s on this server.")
    left, right = st.columns(2)
    with left:
        link(lesson.explore, f"Explore it on the {lesson.explore} page", query_params=explore_params(lesson))
    if right.button("Try again", help="Forget this prediction and its runs, and predict again"):
        del session.current().lessons[lesson.id]
        st.rerun()
