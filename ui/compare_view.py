"""The Compare page: the grid's widgets and Run, then the sweep's figures, table and downloads."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import streamlit as st

from lora_core.measure.analysis import INTRUDER_EPSILON, INTRUDER_K
from lora_core.settings.budget import duration
from lora_core.settings.config import TARGET_SET_LABELS, ConfigError, matters, rank_limit
from lora_core.settings.variants import METHOD_SET_LABELS
from lora_core.sweep import answers, member_name, members, request
from lora_core.tasks.registry import TASK_KINDS

from . import compare_figures as cf
from . import figures, live, session
from . import grid as g
from .plan_figures import planned_parameters
from .sidebar import prefer, sidebar
from .text import plain

LONG_S = 60  # a grid estimated to take longer than this says so before it starts
# Where rank matters: on the default constant shift (rank 1) every rank does the same, so Compare starts here.
START = {"shift": "low_rank", "shift_rank": 4}


def show() -> None:
    """The Compare page below its navigation."""
    started_on_a_rank_shift = prefer(START)
    state = session.current()
    params = {k: st.query_params[k] for k in st.query_params if k in g.GRID_KEYS}
    if params and params != state.grid_written:  # a shared link or a reload: the grid from the URL
        chosen, state.grid_warnings = g.parse_grid(params)
        for key in g.GRID_KEYS:
            st.session_state[f"w_grid_{key}"] = chosen[key]
    for key in g.GRID_KEYS:
        st.session_state.setdefault(f"w_grid_{key}", g.DEFAULT_GRID[key])
    grid = {key: st.session_state[f"w_grid_{key}"] for key in g.GRID_KEYS}
    state.grid_written = g.grid_params(grid)
    config = sidebar(extra=state.grid_written, methods=False)

    st.title("Compare")
    st.markdown("Fine-tune a grid of methods × ranks × α × seeds from one pretrained base per seed (the sidebar's "
                "settings), on the same batches, and see which choices matter: final loss against r beside the best "
                "any adapter of that rank could do, α/r against α/√r, forgetting, intruder dimensions and how "
                "alike the learned subspaces are.")
    if started_on_a_rank_shift:
        st.caption("Compare starts on a shift of rank 4, where the rank matters (on the default constant shift, rank "
                   "1 is enough and every rank does the same); change it in the sidebar.")
    if state.grid_warnings:
        st.warning("Ignored from the link:\n" + "\n".join(f"- {plain(w)}" for w in state.grid_warnings), icon="⚠️")
    top = rank_limit(SimpleNamespace(**state.settings))
    left, right = st.columns(2)
    left.multiselect(g.LABELS["methods"], g.CHOICES["methods"], key="w_grid_methods", help=g.HELP["methods"],
                     format_func=METHOD_SET_LABELS.get)
    left.multiselect(g.LABELS["ranks"], [r for r in g.CHOICES["ranks"] if r <= top or r in grid["ranks"]],
                     key="w_grid_ranks", help=g.HELP["ranks"])
    right.multiselect(g.LABELS["alphas"], g.CHOICES["alphas"], key="w_grid_alphas", help=g.HELP["alphas"],
                      format_func=lambda a: f"{a:g}")
    right.multiselect(g.LABELS["seeds"], g.CHOICES["seeds"], key="w_grid_seeds", help=g.HELP["seeds"])
    placed = matters("targets", {**state.settings, "method": "lora"})  # the text task places its adapters
    if placed:
        left.multiselect(g.LABELS["placements"], g.CHOICES["placements"], key="w_grid_placements",
                         help=g.HELP["placements"], format_func=lambda t: TARGET_SET_LABELS.get(t, t))
        right.number_input(g.LABELS["budget"], 0, g.BUDGET_MAX, step=1024, key="w_grid_budget", help=g.HELP["budget"])

    req, problem = None, None
    if config is not None:
        try:
            axes = {"targets": grid["placements"], "budget": grid["budget"]} if placed else {}
            req = request(config, grid["ranks"], grid["methods"], grid["alphas"], grid["seeds"], **axes)
            cost = live.admit_sweep(req)
        except ConfigError as e:
            problem = str(e)
    if problem:
        st.error(f"This grid cannot run: {plain(problem, 400)}")
    elif req is not None:
        n = len(members(req))
        st.caption(f"{n} members; estimated {cost.macs:.2g} multiply-adds, about {duration(cost.seconds)} here.")
        if cost.seconds > LONG_S:
            st.warning(f"This grid is about {cost.seconds / 60:.1f} minutes of work on this server; fewer ranks, "
                       "methods, α or seeds, or smaller settings, would be quicker.")
    clicked = st.button("Run", type="primary", disabled=req is None or problem is not None)
    status = st.empty()
    if clicked and req is not None:
        try:
            result, _ = live.sweep(req, status)
        except Exception as e:  # the page's edge: a plain message here, the traceback in the server's log
            logging.getLogger(__name__).exception("sweep failed")
            st.error(f"The sweep failed: {plain(f'{type(e).__name__}: {e}', 400)}")
        else:
            if result is not None:
                state.sweep = result

    result = state.sweep
    if req is not None and (result is None or not answers(result, req)):  # what this grid would train
        st.plotly_chart(planned_parameters(req), key="plan")
    if result is None:
        st.info("No sweep yet: choose the grid and press **Run**.")
        st.stop()
    if req is not None and not answers(result, req):
        st.info("These results are from a different grid or settings. Press **Run** to sweep this one.")

    show_result(result)


def drawn(result, key: Any, build: Callable[[], Any]) -> Any:
    """`build()` once per sweep result and `key` (what the figure shows, widget values included): a rerun
    that only moves "Members to overlay" rebuilds the two figures that depend on it, nothing else."""
    memo = session.current().compare_drawn
    if memo.get("result") is not result:
        memo.clear()
        memo["result"] = result
    if key not in memo:
        memo[key] = build()
    return memo[key]


def show_result(result) -> None:
    """What the page shows of a finished result; every figure and the table built once per result (drawn)."""
    floor_note = (f" The floor: {figures.FLOOR_NOTE}; DoRA has none." if TASK_KINDS[result.config["task"]].linear_model
                  else f" The {result.config['task']} task has no floor: its network is not linear.")
    st.caption(f"{len(result.members)} members in {result.timings['total_s']:.1f} s"
               f"{figures.estimate_note(result.estimate)}.{floor_note} Losses are held-out "
               f"{cf.loss_name(result)}.")
    if any(run.accuracies for run in result.members):
        st.plotly_chart(drawn(result, "accuracy", lambda: cf.accuracy_by_rank(result)), key="accuracy-by-rank")
    if result.grid.get("budget"):  # placements at equal cost: the question this grid asks, first
        st.plotly_chart(drawn(result, "budget", lambda: cf.budget_figure(result)), key="budget")
        st.caption(cf.budget_caption(result))
    st.plotly_chart(drawn(result, "by-rank", lambda: cf.loss_by_rank(result)), key="by-rank")
    names = drawn(result, "names", lambda: [member_name(m, r.config) for m, r in
                                            zip(result.methods, result.members, strict=True)])
    picked = st.multiselect("Members to overlay", names, default=names[:4], key="w_compare_curves")
    st.plotly_chart(drawn(result, ("curves", *picked), lambda: cf.member_curves(result, picked)), key="curves")
    directions = len(next((r.history["finetune"].modes_learned[0] for r in result.members
                           if r.history["finetune"].modes_learned), []))
    if directions:  # the linear task: how each member learned the shift's directions, epoch by epoch
        which = st.selectbox("Shift direction to follow", range(directions), format_func=lambda i: f"direction "
                             f"{i + 1} (σ = {result.members[0].shift_spectrum[i]:.3g})", key="w_compare_direction")
        growth = drawn(result, ("directions", which, *picked), lambda: cf.direction_growth(result, picked, which))
        if growth is None:
            st.caption("Pick members to overlay above to see how each learned this direction.")
        else:
            st.plotly_chart(growth, key="directions")
    if {"lora", "rslora"} & set(result.methods) and len(result.grid["alphas"]) > 1:
        st.plotly_chart(drawn(result, "heatmaps", lambda: cf.scaling_heatmaps(result)), key="heatmaps")
        st.caption("Each cell is a member's final loss (log10, averaged over seeds). rsLoRA scales B A by α/√r "
                   "instead of α/r, so that the update does not shrink as r grows: compare where the best α lies at "
                   "each rank in the two panels.")
    st.plotly_chart(drawn(result, "forgetting", lambda: cf.forgetting_figure(result)), key="forgetting")
    st.plotly_chart(drawn(result, "intruders", lambda: cf.intruders_figure(result)), key="intruders")
    st.caption(f"Intruder dimensions (Shuttleworth et al. 2024): of the top {INTRUDER_K} left singular vectors of "
               f"each fine-tuned weight, those whose |cosine| with every singular vector of the pretrained weight "
               f"stays below {INTRUDER_EPSILON}.")
    shown = result.similarity[0]["layer"] if result.similarity else None  # the first adapted layer's, for room
    for i, entry in enumerate(e for e in result.similarity if e["layer"] == shown):
        st.plotly_chart(drawn(result, ("phi", i), lambda entry=entry: cf.similarity_heatmap(entry)), key=f"phi-{i}")
    if not result.similarity:
        st.caption("Subspace similarity φ needs two adapters of one method: two ranks or two seeds.")
    table = drawn(result, "table", lambda: cf.members_table(result))
    st.dataframe(table, hide_index=True)
    down = st.columns(2)
    down[0].download_button("Download the table (CSV)", drawn(result, "csv", lambda: table.to_csv(index=False)),
                            "sweep.csv", "text/csv")
    # the whole sweep as JSON is made when the button is pressed, not on every rerun of the page
    down[1].download_button("Download the sweep (JSON)", lambda: json.dumps(result.to_dict(), indent=2),
                            "sweep.json", "application/json")
