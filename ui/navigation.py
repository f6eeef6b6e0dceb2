"""The pages, declared once, and what every page does first."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import streamlit as st

from lora_core.lessons import LESSONS

from . import classroom, gate, live, session


@dataclass(frozen=True)
class Page:
    path: str  # the script, from the app's folder (Streamlit's multipage convention: pages/N_Name.py)
    label: str  # the sidebar's name, also the page's URL path and tab title
    icon: str
    about: str  # one line on what the page is for (Home lists every page with it)


# The sidebar's navigation, in order (Streamlit's own would call the home page "app"). Every link in the app
# names a page by its label here; tests/test_app_pages.py checks this table against the files in pages/.
PAGES = {p.label: p for p in (
    Page("app.py", "Home", ":material/home:", "what the app is for, and where to start"),
    Page("pages/0_Lessons.py", "Lessons", ":material/school:",
         f"{len(LESSONS)} questions about LoRA: predict, run, and see what happened and why"),
    Page("pages/1_Playground.py", "Playground", ":material/tune:",
         "every setting: train a base, shift its task, fine-tune with LoRA and watch the loss live"),
    Page("pages/2_Parameters.py", "Parameters", ":material/functions:",
         "what an adapter trains, (d + k)·r against d·k, layer by layer"),
    Page("pages/3_Spectrum.py", "Spectrum", ":material/stacked_line_chart:",
         "the singular values of ΔW and of the weights before and after merging"),
    Page("pages/4_Runs.py", "Runs", ":material/table_chart:", "every run of this session, overlaid and downloadable"),
    Page("pages/5_Compare.py", "Compare", ":material/compare_arrows:",
         "a grid of ranks, α, methods and seeds against the best any adapter of a rank could do"),
    Page("pages/6_Inspector.py", "Inspector", ":material/search:",
         "any PEFT adapter's modules, ranks and spectra, from its files alone"),
    Page("pages/7_Room.py", "Room", ":material/groups:",
         "everyone's runs on this server on one live board, for a workshop"),
)}


@contextlib.contextmanager
def page(title: str) -> Iterator[None]:
    """Every page runs inside this: wide layout, the tab's title, the navigation, then the page's body, as one of
    the few builds the server runs at once (ui/gate.py)."""
    with gate.building():
        _start(title)
        yield


def _start(title: str) -> None:
    st.set_page_config(page_title=f"{title} · LoRA Explorer", page_icon="🧮", layout="wide")
    session.current().active_run = None  # any new script run of this session stops a run an older one started
    live.warm_up()
    live.prewarm()
    classroom.apply(tuple(PAGES))
    shown = [p for p in PAGES.values() if classroom.allowed(p.label)]
    for p in shown:
        st.sidebar.page_link(p.path, label=p.label, icon=p.icon, query_params=classroom.params())
    st.sidebar.divider()
    classroom.show_warnings()
    if not classroom.allowed(title):  # a workshop's link shows only some pages
        st.info(f"This workshop's link opens only: {', '.join(p.label for p in shown)}.")
        for p in shown:
            st.page_link(p.path, label=p.label, icon=p.icon, query_params=classroom.params())
        st.stop()


def need_run(what: str) -> None:
    """The message a page shows before any run exists."""
    st.info(f"No run yet in this session. Train one on the Playground to see {what}.")
    link("Playground", "Go to the Playground")


def link(name: str, label: str, **options: Any) -> None:
    """A link to page `name` (a label in PAGES) with that page's icon unless `options` give another."""
    target = PAGES[name]
    st.page_link(target.path, label=label, **{"icon": target.icon, **options})
