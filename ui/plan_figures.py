"""What a grid will train, before it runs: each member's trainable parameters against full fine-tuning's. No
Streamlit.

The Compare page draws it while a person chooses the grid, which also loads the chart library in their tab:
without a chart on the page before Run, Chromium spent 1.9 s loading it between the sweep's result and its
first chart (0.2-0.7 s with it loaded), more than the 25-member sweep itself.
"""

from __future__ import annotations

from functools import lru_cache

import plotly.graph_objects as go

from lora_core.measure.analysis import config_param_counts
from lora_core.settings.variants import METHOD_SET_LABELS
from lora_core.sweep import SweepRequest, members

from .figures import _layout

TITLE = "What each member trains: adapter parameters against full fine-tuning"
FULL = "full fine-tuning"


def planned_counts(req: SweepRequest) -> tuple[dict[str, dict[int, int]], int]:
    """({line name: {rank: trainable parameters}}, full fine-tuning's): methods (and placements) that train the
    same numbers at every rank share one line, named after all of them; α and seeds change no count."""
    by_method: dict[str, dict[int, int]] = {}
    full = 0
    for method, config in members(req):
        counts = config_param_counts(config)
        full = counts.full_trainable
        if method != "full":
            placement = f" on {config.targets}" if req.targets else ""
            by_method.setdefault(f"{METHOD_SET_LABELS[method]}{placement}", {})[config.rank] = counts.lora_trainable
    lines: dict[tuple, list[str]] = {}
    for name, points in by_method.items():
        lines.setdefault(tuple(sorted(points.items())), []).append(name)
    return {", ".join(names): dict(points) for points, names in lines.items()}, full


@lru_cache(maxsize=64)  # a request is hashable; the page asks again on every rerun while the grid stays
def planned_parameters(req: SweepRequest) -> go.Figure:
    """The grid's members' trainable parameters against r (log-log), full fine-tuning's as a level line."""
    lines, full = planned_counts(req)
    ranks = sorted({r for points in lines.values() for r in points}) or list(req.ranks)
    fig = go.Figure()
    for name, points in lines.items():
        shares = [f"{100 * n / full:.3g} %" for n in points.values()]
        fig.add_trace(go.Scatter(x=list(points), y=list(points.values()), mode="lines+markers", name=name,
                                 customdata=shares, hovertemplate="r = %{x}: %{y:,} parameters (%{customdata} of "
                                                                  "full fine-tuning)<extra></extra>"))
    fig.add_trace(go.Scatter(x=[min(ranks), max(ranks)], y=[full, full], mode="lines", name=f"{FULL}: {full:,}",
                             line={"dash": "dash", "color": "black"}, hovertemplate=f"{full:,} parameters<extra>"
                                                                                    f"</extra>"))
    if req.budget:  # placements compared at equal cost: each at the largest rank whose adapters fit it
        fig.add_trace(go.Scatter(x=[min(ranks), max(ranks)], y=[req.budget] * 2, mode="lines",
                                 name=f"budget: {req.budget:,}", line={"dash": "dot", "color": "gray"}))
    _layout(fig, TITLE, "rank r (log scale)", "trainable parameters (log scale)", log_y=True, log_x=True)
    fig.update_xaxes(tickvals=ranks, ticktext=[str(r) for r in ranks])
    return fig.update_layout(height=340, hovermode="closest")
