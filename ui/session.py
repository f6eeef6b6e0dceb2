"""All of one browser session's state in one dataclass, under one key of `st.session_state`.

Widgets keep their own keys (`w_<field>`, see sidebar.py); everything else a page reads or writes is here,
so it survives page switches (which discard widget state) and is listed in one place.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from lora_core.settings.config import make_config
from lora_core.settings.results import ExperimentResult
from lora_core.settings.task_specs import spec
from lora_core.sweep import SweepResult

from .settings import preset_settings

KEY = "lora_explorer"


@dataclass
class Session:
    settings: dict[str, Any] = field(default_factory=lambda: preset_settings("default"))  # see settings.py
    url_written: dict[str, str] | None = None  # the query parameters this session last wrote
    url_warnings: list[str] = field(default_factory=list)  # what the last link had that was ignored, and why
    runs: dict[str, ExperimentResult] = field(default_factory=dict)  # every run of this session, by label
    last_run: str | None = None  # the label of the run the pages show
    from_cache: bool = False  # the last run came from the shared cache
    active_run: str | None = None  # the run this session's newest script run started; an older one stops
    sweep: SweepResult | None = None  # the Compare page's last sweep
    grid_written: dict[str, str] | None = None  # the Compare page's grid parameters it last wrote
    grid_warnings: list[str] = field(default_factory=list)  # what the last link's grid had that was ignored
    hidden: tuple[str, ...] = ()  # the Playground settings a classroom link hid (classroom.py)
    pages: tuple[str, ...] = ()  # the pages a classroom link shows; empty: all
    classroom_written: dict[str, str] | None = None  # the link's hide/pages last applied
    classroom_warnings: list[str] = field(default_factory=list)
    board_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])  # how the Room's board knows this session
    nickname: str = ""  # shown beside this session's runs on the Room's board, if chosen (plain text, ≤ 24)
    room_drawn: tuple | None = None  # (the shared board figure, this session's copy, its table): redrawn on change
    compare_drawn: dict[Any, Any] = field(default_factory=dict)  # the last sweep's figures and table, by what they show
    facilitator: bool = False  # entered the facilitator's token on the Room page
    lessons: dict[str, tuple[str, SweepResult]] = field(default_factory=dict)  # lesson id -> (prediction, runs)

    def record(self, result: ExperimentResult) -> None:
        """Make `result` the last run and add it to the runs (once per distinct config)."""
        label = next((k for k, r in self.runs.items() if r.config == result.config), None)
        if label is None:
            c = make_config(**result.config)
            label = f"#{len(self.runs) + 1} r={c.rank} α={c.alpha:g} {spec(c).shift_label(c)}"
            self.runs[label] = result
        self.last_run = label

    def last(self) -> ExperimentResult | None:
        return self.runs.get(self.last_run) if self.last_run else None


def current() -> Session:
    """This browser session's state (made on first use)."""
    if KEY not in st.session_state:
        st.session_state[KEY] = Session()
    return st.session_state[KEY]
