"""The Playground's sidebar: one widget per Playground setting, drawn from its declaration in config.py.

Each widget has the key `w_<field>`, seeded from the session's settings and written back to them; the URL
follows (settings.py). A field's declaration says which widget it gets: a selectbox for choices, a slider
where it declares a span, else a number input.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import streamlit as st

from lora_core.settings.config import FIELDS, LABELS, PRESETS, ConfigError, ExperimentConfig, matters, rank_limit

from . import classroom, session
from .navigation import PAGES
from .settings import PRESET_LABELS, parse_params, preset_settings, to_config, url_params
from .text import plain

PRESET_HELP = ("load a preset's values: Default runs in about a second, Digits is the handwritten digits task "
               "(about a second), Article is the article's experiment (1001→1000→1000, minutes on a CPU), Text a "
               "small transformer learning documentation, then code (about 25 s the first time)")


def _key(field: str, value: Any) -> str:
    """The widget key of `field`, seeded with `value` the first time."""
    key = f"w_{field}"
    if key not in st.session_state:
        st.session_state[key] = value
    return key


def _forget_widgets() -> None:
    """Drop the settings' widget states (not other widgets', such as the Compare page's grid)."""
    for name in ("preset", *LABELS):
        st.session_state.pop(f"w_{name}", None)


def _on_preset() -> None:
    s = session.current()
    fixed = {f: s.settings[f] for f in s.hidden}  # a classroom link's values stay
    s.settings = {**preset_settings(st.session_state["w_preset"]), **fixed}
    for field, value in s.settings.items():
        st.session_state[f"w_{field}"] = value


def _widget(field: str, settings: dict[str, Any]) -> Any:
    """Draw `field`'s widget in the current container; returns its value."""
    meta, kind = FIELDS[field].metadata, FIELDS[field].type
    label, help = LABELS[field], meta["help"]
    if kind == "bool":
        return st.checkbox(label, key=_key(field, settings[field]), help=help)
    if meta["choices"]:
        shown = meta["choice_labels"] or {}
        return st.selectbox(label, meta["choices"], key=_key(field, settings[field]), help=help,
                            format_func=lambda c: shown.get(c, c))
    if meta["slider"]:
        lo, hi = meta["slider"]
        if hi is None:  # up to what the model allows (a slider needs two distinct ends)
            hi = max(rank_limit(SimpleNamespace(**settings)), lo + 1)
        key = _key(field, settings[field] if kind == "int" else float(settings[field]))
        value = st.session_state[key]
        if kind == "int":
            st.session_state[key] = min(max(value, int(lo)), int(hi))
            return st.slider(label, int(lo), int(hi), key=key, help=help)
        return st.slider(label, min(lo, value), max(hi, value), step=meta["step"], key=key, help=help)
    if kind == "int":
        return st.number_input(label, min_value=int(meta["lo"]), max_value=int(meta["hi"]), step=1,
                               key=_key(field, settings[field]), help=help)
    return st.number_input(label, step=meta["step"] or 0.1, format="%g", key=_key(field, settings[field]),
                           help=help)


def _shown(field: str, settings: dict[str, Any]) -> bool:
    """Whether `field` gets a widget: it matters for these settings and no classroom link hid it."""
    return matters(field, settings) and field not in session.current().hidden


def apply_url(extra_keys: tuple[str, ...] = ()) -> None:
    """If the URL is not the one this page last wrote (a shared link, a reload), load settings from it.
    `extra_keys` belong to the page (the Compare page's grid), not to the settings."""
    s = session.current()
    params = {k: st.query_params[k] for k in st.query_params if k not in (*extra_keys, *classroom.CLASSROOM_KEYS)}
    if params == s.url_written:
        return
    if params:
        s.settings, s.url_warnings = parse_params(params)
        _forget_widgets()


def write_url(extra: dict[str, str] | None = None) -> None:
    """The settings (and the page's `extra` parameters) into the URL."""
    s = session.current()
    params = url_params(s.settings)
    wanted = {**params, **(extra or {}), **classroom.params()}
    if wanted != {k: st.query_params[k] for k in st.query_params}:
        st.query_params.from_dict(wanted)
    s.url_written = params


def show_link_warnings() -> None:
    """One warning naming every value of the last link that was ignored, and why."""
    warnings = session.current().url_warnings
    if warnings:
        st.warning("Ignored from the link (the preset's values are used instead):\n"
                   + "\n".join(f"- {plain(w)}" for w in warnings), icon="⚠️")


def sidebar(extra: dict[str, str] | None = None, methods: bool = True) -> ExperimentConfig | None:
    """Draw the Playground's controls, update the settings and the URL (with the page's `extra` parameters);
    the config, or None after an error. `methods=False` leaves out the Method box (the Compare page's grid
    sets the method of each member)."""
    apply_url(tuple(extra or ()))
    s = session.current().settings
    # Widgets hold the newest values; take them all first, because which widgets show depends on other groups'
    # settings (the task decides the sizes shown in the expander, the sizes bound the rank slider above it).
    hidden = session.current().hidden  # a classroom link's values, fixed: no widget may change them
    s.update({field: st.session_state[f"w_{field}"] for field in LABELS
              if f"w_{field}" in st.session_state and field not in hidden})
    top = st.sidebar.container()
    method = (st.sidebar.expander("Method: LoRA, its variants, or full fine-tuning", expanded=True) if methods
              else st.sidebar.empty().container())
    with st.sidebar.expander("Sizes, training and preset"):
        if "preset" not in session.current().hidden:
            s["preset"] = st.selectbox("Preset", list(PRESETS), key=_key("preset", s["preset"]),
                                       format_func=PRESET_LABELS.get, on_change=_on_preset, help=PRESET_HELP)
        for field in LABELS:
            if FIELDS[field].metadata["group"] == "more" and _shown(field, s):
                s[field] = _widget(field, s)
    with top:
        for field in LABELS:
            if FIELDS[field].metadata["group"] == "main" and _shown(field, s):
                s[field] = _widget(field, s)
    with method:
        for field in LABELS:
            if methods and FIELDS[field].metadata["group"] == "method" and _shown(field, s):
                s[field] = _widget(field, s)
                st.caption(FIELDS[field].metadata["maths"])  # one line of maths: what the setting changes
    write_url(extra)
    try:
        return to_config(s)
    except ConfigError as e:
        st.error(f"These settings cannot run: {plain(str(e), 400)}")
        return None


def prefer(settings: dict[str, Any]) -> bool:
    """Start this page from `settings` when the session still has the default preset's settings and the URL
    names none (a page whose question needs them: Compare's ranks matter only on a shift of some rank).
    True if it did."""
    s = session.current()
    if any(k not in classroom.CLASSROOM_KEYS for k in st.query_params) or s.settings != preset_settings("default"):
        return False
    if any(f in s.hidden for f in settings):
        return False
    s.settings = {**s.settings, **settings}
    for field, value in settings.items():
        st.session_state[f"w_{field}"] = value
    return True


def share_panel() -> None:
    """The Playground's "Share this setup" panel over the session's settings and the controls it shows."""
    s = session.current().settings
    classroom.share_panel(url_params(s), [f for f in LABELS if _shown(f, s)], tuple(PAGES))


def config_error(**changes: Any) -> str | None:
    """Why the session's settings with `changes` cannot run, or None when they can."""
    try:
        to_config(session.current().settings, **changes)
    except ConfigError as e:
        return str(e)
    return None
