"""The pages, declared once, and what every page does first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from . import live, session


@dataclass(frozen=True)
class Page:
    path: str  # the script, from the app's folder (Streamlit's multipage convention: pages/N_Name.py)
    label: str  # the sidebar's name, also the page's URL path and tab title
    icon: str


# The sidebar's navigation, in order (Streamlit's own would call the home page "app"). Every link in the app
# names a page by its label here; tests/test_app_pages.py checks this table against the files in pages/.
PAGES = {p.label: p for p in (
    Page("app.py", "Home", ":material/home:"),
    Page("pages/0_Lessons.py", "Lessons", ":material/school:"),
    Page("pages/1_Playground.py", "Playground", ":material/tune:"),
    Page("pages/2_Parameters.py", "Parameters", ":material/functions:"),
    Page("pages/3_Spectrum.py", "Spectrum", ":material/stacked_line_chart:"),
    Page("pages/4_Runs.py", "Runs", ":material/table_chart:"),
    Page("pages/5_Compare.py", "Compare", ":material/compare_arrows:"),
    Page("pages/6_Inspector.py", "Inspector", ":material/search:"),
)}


def page(title: str) -> None:
    """Every page starts here: wide layout, the tab's title, the navigation."""
    st.set_page_config(page_title=f"{title} · LoRA Explorer", page_icon="🧮", layout="wide")
    session.current().active_run = None  # any new script run of this session stops a run an older one started
    live.warm_up()
    for p in PAGES.values():
        st.sidebar.page_link(p.path, label=p.label, icon=p.icon)
    st.sidebar.divider()


def need_run(what: str) -> None:
    """The message a page shows before any run exists."""
    st.info(f"No run yet in this session. Train one on the Playground to see {what}.")
    link("Playground", "Go to the Playground")


def link(name: str, label: str, **options: Any) -> None:
    """A link to page `name` (a label in PAGES) with that page's icon unless `options` give another."""
    target = PAGES[name]
    st.page_link(target.path, label=label, **{"icon": target.icon, **options})
