"""Classroom links: a link can hide Playground controls (`hide=alpha,shift,method`, the CLI's names) and pages
(`pages=Lessons,Playground`), as TensorFlow Playground's `<name>_hide=true` does. The link's values stay fixed
for the hidden controls; the session keeps both, so they hold on every page it visits, and they travel back
into the URL so a reload or a copied address keeps them. The Playground's "Share this setup" panel writes one."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import streamlit as st

from lora_core.settings.config import LABELS, cli_name, field_name

from . import session
from .text import plain

CLASSROOM_KEYS = ("hide", "pages")
HIDEABLE = ("preset", *LABELS)  # the preset selector and every Playground setting


def parse(params: dict[str, str], pages: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """(hidden fields, pages shown (empty: all), warnings naming every value that was ignored)."""
    warnings, hidden, shown = [], [], []
    for raw in _items(params.get("hide", "")):
        name = field_name(raw)
        if name in HIDEABLE:
            hidden.append(name)
        else:
            warnings.append(f"hide={raw}: not a Playground setting; allowed: "
                            + ", ".join(cli_name(k) for k in HIDEABLE))
    by_name = {p.lower(): p for p in pages}
    for raw in _items(params.get("pages", "")):
        if raw.lower() in by_name:
            shown.append(by_name[raw.lower()])
        else:
            warnings.append(f"pages={raw}: not a page; allowed: {', '.join(pages)}")
    return tuple(dict.fromkeys(hidden)), tuple(dict.fromkeys(shown)), warnings


def _items(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",")[:100] if item.strip()]  # bounded: a link is typed by people


def apply(pages: tuple[str, ...]) -> None:
    """A link's `hide` and `pages`, if it has any and they are new, into the session."""
    params = {k: st.query_params[k] for k in CLASSROOM_KEYS if k in st.query_params}
    s = session.current()
    if params and params != s.classroom_written:
        s.hidden, s.pages, s.classroom_warnings = parse(params, pages)
        s.classroom_written = params


def link_params(hide: list[str] | tuple[str, ...], pages: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`hide` (fields, written with the CLI's names) and `pages` as a link's query parameters; none when empty."""
    out = {"hide": ",".join(cli_name(f) for f in hide)} if hide else {}
    return out | ({"pages": ",".join(pages)} if pages else {})


def params() -> dict[str, str]:
    """The session's classroom parameters, for the URL."""
    s = session.current()
    return link_params(s.hidden, s.pages)


def allowed(label: str) -> bool:
    pages = session.current().pages
    return not pages or label in pages


def show_warnings() -> None:
    warnings = session.current().classroom_warnings
    if warnings:
        st.warning("Ignored from the link:\n" + "\n".join(f"- {plain(w)}" for w in warnings), icon="⚠️")


def share_link(settings_params: dict[str, str], hide: list[str], pages: list[str], base: str = "") -> str:
    """The Playground's address with these settings, controls hidden and pages shown."""
    query = {**settings_params, **link_params(hide, pages)}
    return f"{base}/Playground" + (f"?{urlencode(query, safe=',')}" if query else "")


def share_panel(settings_params: dict[str, Any], shown_fields: list[str], pages: tuple[str, ...]) -> None:
    """'Share this setup': checkboxes for the controls to hide and the pages to show, and the link they make."""
    with st.sidebar.expander("Share this setup"):
        st.caption("A link with these settings. Hidden controls keep their values for whoever opens it.")
        hide = [f for f in ("preset", *shown_fields)
                if st.checkbox(f"Hide {LABELS.get(f, 'Preset')}", key=f"w_share_hide_{f}")]
        pages = st.multiselect("Pages to show (none: all)", pages, key="w_share_pages")
        base = st.context.url.split("?")[0].rsplit("/", 1)[0] if st.context.url else ""
        st.code(share_link(settings_params, hide, pages, base), language=None, wrap_lines=True)
