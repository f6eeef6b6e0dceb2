"""Training from a page: the live progress bar and loss chart, and the finished results all sessions share."""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict

import streamlit as st

from lora_core.config import ExperimentConfig
from lora_core.experiment import run_experiment
from lora_core.results import PHASES, ExperimentResult, PhaseHistory, Progress
from lora_core.training import warm_up as warm_up_torch

from . import figures, session

CACHE_SIZE = 64  # finished results kept for all sessions
DRAW_INTERVAL_S = 0.25  # redraw the live chart at most this often (and at the end of each phase)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Torch's first optimizer step in a process costs about a second of lazy imports, Plotly's first figure a
    few tenths: pay both in the background when the first page opens, not when someone presses Train."""
    def tiny_run() -> None:
        warm_up_torch()
        figures.empty_loss_figure(1, 1).to_json()  # Plotly's validators load lazily too

    thread = threading.Thread(target=tiny_run, name="lora-explorer-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource
def _results() -> OrderedDict:
    """Finished results keyed by config, shared by every session of this server."""
    return OrderedDict()


def cached(config: ExperimentConfig) -> ExperimentResult | None:
    store = _results()
    if config in store:
        store.move_to_end(config)
        return store[config]
    return None


def train(config: ExperimentConfig, status, chart) -> tuple[ExperimentResult, bool]:
    """Run (or fetch) `config`, drawing progress into `status` and the growing loss chart into `chart`.

    Returns (result, came from the cache). A newer script run of this session stops this one: the callback
    returns False as soon as the session's `active_run` names another run.
    """
    hit = cached(config)
    if hit is not None:
        return hit, True
    state = session.current()
    run_id = uuid.uuid4().hex
    state.active_run = run_id
    history = {p: PhaseHistory() for p in PHASES}
    planned = (config.pretrain_epochs, config.epochs)
    bar = status.progress(0.0, text="starting…")
    drawn = {"at": 0.0, "n": 0}

    def on_progress(p: Progress) -> bool:
        if state.active_run != run_id:
            return False
        history[p.phase].train_loss.append(p.train_loss)
        history[p.phase].eval_loss.append(p.eval_loss)
        done = sum(len(h.train_loss) for h in history.values())
        bar.progress(min(done / sum(planned), 1.0), text=f"{figures.PHASE_LABELS[p.phase]}: epoch {p.epoch} of "
                     f"{p.epochs}, held-out loss {p.eval_loss:.4g}")
        now = time.perf_counter()
        if now - drawn["at"] >= DRAW_INTERVAL_S or p.epoch == p.epochs:
            drawn["n"] += 1
            chart.plotly_chart(figures.loss_figure(history, planned), key=f"live-{run_id}-{drawn['n']}")
            drawn["at"] = time.perf_counter()
        return True

    result = run_experiment(config, on_progress)
    if state.active_run == run_id:
        state.active_run = None
    status.empty()
    if result.status != "cancelled":
        store = _results()
        store[config] = result
        while len(store) > CACHE_SIZE:
            store.popitem(last=False)
    return result, False
