"""The pages, declared once, and what every page does first."""

from __future__ import annotations

import streamlit as st

from . import live, session

PAGES = {  # the sidebar's navigation (Streamlit's own would call the home page "app")
    "app.py": ("Home", ":material/home:"),
    "pages/1_Playground.py": ("Playground", ":material/tune:"),
    "pages/2_Parameters.py": ("Parameters", ":material/functions:"),
    "pages/3_Spectrum.py": ("Spectrum", ":material/stacked_line_chart:"),
    "pages/4_Runs.py": ("Runs", ":material/table_chart:"),
    "pages/5_Compare.py": ("Compare", ":material/compare_arrows:"),
    "pages/6_Inspector.py": ("Inspector", ":material/search:"),
}
PLAYGROUND = "pages/1_Playground.py"


def page(title: str) -> None:
    """Every page starts here: wide layout, the tab's title, the navigation."""
    st.set_page_config(page_title=f"{title} · LoRA Explorer", page_icon="🧮", layout="wide")
    session.current().active_run = None  # any new script run of this session stops a run an older one started
    live.warm_up()
    for path, (label, icon) in PAGES.items():
        st.sidebar.page_link(path, label=label, icon=icon)
    st.sidebar.divider()


def need_run(what: str) -> None:
    """The message a page shows before any run exists."""
    st.info(f"No run yet in this session. Train one on the Playground to see {what}.")
    label, icon = PAGES[PLAYGROUND]
    st.page_link(PLAYGROUND, label=f"Go to the {label}", icon=icon)
